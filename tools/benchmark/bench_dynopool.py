"""Forward+backward time of DynOPool against nn.MaxPool2d(2) on the same inputs.

Prints, per shape, the median time of each and their ratio, measured side by side in one
run (interleaved repetitions, so machine load affects both alike): the ratio of the
medians, the median of the per-repetition ratios (each DynOPool run against the MaxPool2d
run just before it) and the ratio of median process CPU times (CPU only; less sensitive
to other processes on a shared machine). Two DynOPool states are timed: at
initialisation (r = 0.5, the human-designed size) and at a trained-like ratio (r = 0.45,
fractional sampling positions). alpha is trainable, so the positional gradient is
computed too.

    python tools/benchmark/bench_dynopool.py [--repeats 20] [--threads N] [--device cpu]
"""
import argparse
import statistics
import time
from typing import Tuple

import torch
from torch import nn

from mmseg_dynopool import DynOPool

SHAPES = [(8, 64, 128, 128), (16, 96, 64, 64), (2, 48, 240, 240), (8, 384, 16, 16)]


def _step(module: nn.Module, x: torch.Tensor) -> None:
    module(x).sum().backward()


def _time(fn, sync) -> Tuple[float, float]:
    """Wall-clock and process CPU seconds of one call."""
    sync()
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    sync()
    return time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeats', type=int, default=20)
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument('--device', default='cpu')
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
    print(f'device={device} threads={torch.get_num_threads()} torch={torch.__version__}')
    print(f"{'shape (N,C,H,W)':<22}{'ratio':>6}{'maxpool ms':>12}{'dynopool ms':>13}"
          f"{'x maxpool':>11}{'paired':>8}{'cpu-time':>10}")
    for shape in SHAPES:
        x = torch.randn(*shape, device=device, requires_grad=True)
        maxpool = nn.MaxPool2d(2).to(device)
        for ratio in (0.5, 0.45):
            pool = DynOPool(ratio).to(device)
            for _ in range(3):  # warm-up
                _step(maxpool, x)
                _step(pool, x)
            ref, dyn = [], []
            for _ in range(args.repeats):
                ref.append(_time(lambda: _step(maxpool, x), sync))
                dyn.append(_time(lambda: _step(pool, x), sync))
            wall_ref = statistics.median(t[0] for t in ref)
            wall_dyn = statistics.median(t[0] for t in dyn)
            paired = statistics.median(d[0] / r[0] for r, d in zip(ref, dyn))
            cpu = (statistics.median(t[1] for t in dyn) /
                   max(statistics.median(t[1] for t in ref), 1e-9))
            print(f'{str(shape):<22}{ratio:>6}{wall_ref * 1e3:>12.2f}{wall_dyn * 1e3:>13.2f}'
                  f'{wall_dyn / wall_ref:>11.2f}{paired:>8.2f}'
                  f'{cpu if device.type == "cpu" else float("nan"):>10.2f}')


if __name__ == '__main__':
    main()
