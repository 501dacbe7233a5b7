"""DynOPool on a GPU: the op against MaxPool2d, and FCN-HRNetV2-W48 training steps.

One process, everything measured side by side (interleaved repetitions, CUDA events,
medians), ratios printed next to the times:

(a) DynOPool forward+backward (alpha trainable, so the positional gradient is computed)
    against ``nn.MaxPool2d(2)`` forward+backward, at every input shape DynOPool HRNet-W48
    sees at 480x480 with batch 4 (recorded from one forward of the model), in float32
    and under bfloat16 autocast (bf16 features), at r = 0.5 (initialisation) and at a
    trained-like (0.45, 0.55). Target: <= 1.5x at every shape.
(b) One training step (mmengine ``train_step``: data preprocessor, forward, losses,
    backward, SGD step, plus the config's custom hooks, i.e. the GMACs loss) of
    FCN-HRNetV2-W48, batch 4 at 480x480, from the configs in ``configs/dynopool_hrnet``:
    the human model, DynOPool at initialisation (r = 0.5) and DynOPool at Table 5.4's
    learned sizes (stem 367x349, streams 134x130, 52x50, 22x21, 10x9). Time, images/s and
    peak memory, and their ratios to the human model. Targets: <= 1.05x at
    initialisation, faster than human at Table 5.4's sizes, peak memory <= 1.1x.
    (SyncBN becomes BN: one process. alpha's learning rate is 0 so the sizes stay put
    while timing; its gradient, the step's guard and the size refresh still run.)

    python tools/benchmark/bench_gpu.py [--repeats 50] [--steps 20] [--skip-op|--skip-model]

Needs a CUDA device and exits with an error message without one. ``--device cpu`` runs
the same code on the CPU as a smoke test of the script (numbers meaningless; use with
``--size 64 --batch 1``).
"""
import argparse
import os.path as osp
import statistics
import sys
from collections import Counter
from typing import Callable, Dict, List, Sequence, Tuple

import torch
from torch import nn

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(osp.dirname(HERE))
HUMAN_CFG = osp.join(REPO, 'configs', 'dynopool_hrnet',
                     'fcn_hr48_4xb4-40k_voc12aug-480x480.py')
DYNOPOOL_CFG = osp.join(REPO, 'configs', 'dynopool_hrnet',
                        'fcn_dynopool-s-hr48_4xb4-40k_voc12aug-480x480.py')
# Table 5.4 (480x480 input): feature-map size of each level; human: 240, 120, 60, 30, 15.
TABLE_5_4 = [(367, 349), (134, 130), (52, 50), (22, 21), (10, 9)]
LEVELS = ('stem', 'stream1', 'stream2', 'stream3', 'stream4')


def table_5_4_ratios(size: int = 480) -> List[Tuple[float, float]]:
    """Per-level ``(r_h, r_w)`` whose chained, rounded sizes are Table 5.4's at 480x480."""
    ratios, prev = [], (size, size)
    for h, w in TABLE_5_4:
        ratios.append((h / prev[0], w / prev[1]))
        prev = (h, w)
    return ratios


class Timer:
    """Times callables with CUDA events (or perf_counter on CPU), interleaved."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == 'cuda'

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()

    def medians(self, fns: Sequence[Callable[[], None]], repeats: int,
                warmup: int = 3) -> List[float]:
        """Median seconds of each of ``fns``, run alternately ``repeats`` times."""
        import time
        for _ in range(warmup):
            for fn in fns:
                fn()
        self.sync()
        times: List[List[float]] = [[] for _ in fns]
        for _ in range(repeats):
            for k, fn in enumerate(fns):
                if self.cuda:
                    start = torch.cuda.Event(enable_timing=True)
                    end = torch.cuda.Event(enable_timing=True)
                    start.record()
                    fn()
                    end.record()
                    end.synchronize()
                    times[k].append(start.elapsed_time(end) / 1e3)
                else:
                    t0 = time.perf_counter()
                    fn()
                    times[k].append(time.perf_counter() - t0)
        return [statistics.median(t) for t in times]


# ------------------------------------------------------------------------ (a) the op


def hrnet_pool_shapes(device: torch.device, batch: int, size: int) -> Counter:
    """Input shapes (with call counts) of DynOPool HRNet-W48's pools at ``size``."""
    from mmseg_dynopool import resizing_layers
    from mmseg_dynopool.models.backbones import DynOPoolHRNet
    sys.path.insert(0, HERE)
    from bench_hrnet import W48
    model = DynOPoolHRNet(W48).to(device).train()
    shapes: Counter = Counter()
    handles = [m.register_forward_pre_hook(
        lambda mod, args: shapes.update([tuple(args[0].shape)]))
        for _, m in resizing_layers(model)]
    with torch.no_grad():
        model(torch.zeros(batch, 3, size, size, device=device))
    for h in handles:
        h.remove()
    del model
    return shapes


def bench_op(device: torch.device, batch: int, size: int, repeats: int) -> None:
    from mmseg_dynopool import DynOPool
    from mmseg_dynopool.ops.functional import select_backend
    timer = Timer(device)
    shapes = hrnet_pool_shapes(device, batch, size)
    print(f'(a) DynOPool forward+backward vs nn.MaxPool2d(2), the {sum(shapes.values())} '
          f'pool calls of DynOPool HRNet-W48 at {batch}x3x{size}x{size} '
          f'({len(shapes)} distinct shapes), medians of {repeats}')
    print(f"{'shape (N,C,H,W)':<22}{'calls':>6}{'dtype':>7}{'ratio':>13}{'backend':>9}"
          f"{'maxpool ms':>12}{'dynopool ms':>13}{'x maxpool':>11}")
    worst = 0.0
    for shape, calls in sorted(shapes.items(), key=lambda kv: -kv[0][2]):
        for dtype in (torch.float32, torch.bfloat16):
            x = torch.randn(*shape, device=device).to(dtype).requires_grad_()
            maxpool = nn.MaxPool2d(2)
            for ratio in (0.5, (0.45, 0.55)):
                pool = DynOPool(ratio).to(device)
                with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16,
                                                     enabled=dtype == torch.bfloat16):
                    g_pool = torch.randn_like(pool(x))
                    g_max = torch.randn_like(maxpool(x))

                def run(module, grad):
                    def step():
                        with torch.autocast(device.type, dtype=torch.bfloat16,
                                            enabled=dtype == torch.bfloat16):
                            y = module(x)
                        y.backward(grad)
                    return step

                t_max, t_pool = timer.medians([run(maxpool, g_max), run(pool, g_pool)],
                                              repeats)
                worst = max(worst, t_pool / t_max)
                name = 'fp32' if dtype == torch.float32 else 'bf16'
                r = f'{ratio}' if isinstance(ratio, float) else f'{ratio[0]}/{ratio[1]}'
                print(f'{str(shape):<22}{calls:>6}{name:>7}{r:>13}'
                      f'{select_backend(x):>9}{t_max * 1e3:>12.3f}{t_pool * 1e3:>13.3f}'
                      f'{t_pool / t_max:>11.2f}')
            del x
    print(f'worst ratio: {worst:.2f} (target <= 1.5)\n')


# --------------------------------------------------------------- (b) training steps


def bench_model(device: torch.device, batch: int, size: int, steps: int) -> None:
    sys.path.insert(0, HERE)
    from bench_train_iter import build, synthetic_batch
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    data = synthetic_batch(batch, size, 21)
    size_opts = {'model.data_preprocessor.size': (size, size)}
    # alpha keeps its gradient, and the step still guards it (one refresh per step as in
    # training), but a zero learning rate keeps the sizes fixed while timing.
    dp_opts = {**size_opts, 'optim_wrapper.paramwise_cfg.custom_keys':
               {'.alpha': dict(lr_mult=0.0, decay_mult=0.0)}}
    learned = {**dp_opts, 'model.backbone.init_ratios': table_5_4_ratios()}
    variants = [('human HRNet-W48', HUMAN_CFG, size_opts),
                ('DynOPool, initialisation', DYNOPOOL_CFG, dp_opts),
                ("DynOPool, Table 5.4's sizes", DYNOPOOL_CFG, learned)]
    total = steps + 3
    runs = []
    for name, cfg, opts in variants:
        step, model = build(cfg, data, total, device=str(device), cfg_options=opts)
        runs.append((name, step, model))
    timer = Timer(device)
    times: Dict[str, List[float]] = {name: [] for name, _, _ in runs}
    peaks: Dict[str, int] = {name: 0 for name, _, _ in runs}
    import time
    for i in range(total):
        for name, step, _ in runs:
            if timer.cuda:
                torch.cuda.reset_peak_memory_stats(device)
            timer.sync()
            t0 = time.perf_counter()
            step(i)
            timer.sync()
            if i >= 3:
                times[name].append(time.perf_counter() - t0)
            if timer.cuda:
                peaks[name] = max(peaks[name], torch.cuda.max_memory_allocated(device))
    sizes = runs[2][2].backbone.feature_sizes()
    if size == 480 and [sizes[level] for level in LEVELS] != TABLE_5_4:
        raise RuntimeError(f"Table 5.4's sizes were not reproduced: {sizes}")
    print(f'(b) one training step of FCN-HRNetV2-W48, batch {batch}x3x{size}x{size}, '
          f'medians of {steps} steps after 3 warm-up (SyncBN -> BN, one process)')
    print(f"{'model':<30}{'ms/step':>10}{'images/s':>10}{'peak MiB':>10}"
          f"{'time x':>9}{'img/s x':>9}{'memory x':>10}")
    ref_t = statistics.median(times[runs[0][0]])
    ref_m = peaks[runs[0][0]] or 1
    for name, _, _ in runs:
        t = statistics.median(times[name])
        print(f'{name:<30}{t * 1e3:>10.1f}{batch / t:>10.2f}{peaks[name] / 2**20:>10.0f}'
              f'{t / ref_t:>9.3f}{ref_t / t:>9.3f}{peaks[name] / ref_m:>10.3f}')
    print('targets: DynOPool at initialisation <= 1.05x time; at Table 5.4 sizes < 1x; '
          'peak memory <= 1.1x')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeats', type=int, default=50, help='repetitions per op timing')
    parser.add_argument('--steps', type=int, default=20, help='timed training steps')
    parser.add_argument('--batch', type=int, default=4)
    parser.add_argument('--size', type=int, default=480)
    parser.add_argument('--skip-op', action='store_true', help='skip part (a)')
    parser.add_argument('--skip-model', action='store_true', help='skip part (b)')
    parser.add_argument('--device', default='cuda',
                        help="'cuda' (default); 'cpu' only smoke-tests this script")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == 'cuda' and not torch.cuda.is_available():
        sys.exit('bench_gpu.py: no CUDA device is available (torch.cuda.is_available() is '
                 'False). Run it on a machine with an NVIDIA GPU; on CPU use '
                 'tools/benchmark/bench_dynopool.py and bench_train_iter.py.')
    sys.path.insert(0, REPO)
    import mmseg_dynopool  # noqa: F401
    if device.type == 'cuda':
        print(f'device: {torch.cuda.get_device_name(device)}, torch {torch.__version__}')
    else:
        print('device: cpu - SMOKE TEST of the script, the numbers mean nothing')
    if not args.skip_op:
        bench_op(device, args.batch, args.size, args.repeats)
    if not args.skip_model:
        bench_model(device, args.batch, args.size, args.steps)


if __name__ == '__main__':
    main()
