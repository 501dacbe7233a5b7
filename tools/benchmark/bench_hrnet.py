"""Training-step time of DynOPool HRNet-W48 (at initialisation) vs mmseg's HRNet-W48.

Forward + backward of the backbone on the same random input, repeated with the two models
interleaved so machine load affects both alike; prints the medians and their ratio.

    python tools/benchmark/bench_hrnet.py [--size 256] [--batch 2] [--repeats 5]
"""
import argparse
import statistics
import time

import torch
from mmseg.models.backbones import HRNet

from mmseg_dynopool.models.backbones import DynOPoolHRNet

W48 = dict(
    stage1=dict(num_modules=1, num_branches=1, block='BOTTLENECK', num_blocks=(4, ),
                num_channels=(64, )),
    stage2=dict(num_modules=1, num_branches=2, block='BASIC', num_blocks=(4, 4),
                num_channels=(48, 96)),
    stage3=dict(num_modules=4, num_branches=3, block='BASIC', num_blocks=(4, 4, 4),
                num_channels=(48, 96, 192)),
    stage4=dict(num_modules=3, num_branches=4, block='BASIC', num_blocks=(4, 4, 4, 4),
                num_channels=(48, 96, 192, 384)))


def step(model, x) -> float:
    t0 = time.perf_counter()
    outs = model(x)
    sum(o.float().mean() for o in outs).backward()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--size', type=int, default=256)
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--repeats', type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    human, dyn = HRNet(W48), DynOPoolHRNet(W48)
    human.train()  # mmseg's HRNet.train returns None, so not chained
    dyn.train()
    x = torch.randn(args.batch, 3, args.size, args.size)
    for m in (human, dyn):  # warm-up
        step(m, x)
    t_h, t_d = [], []
    for _ in range(args.repeats):
        t_h.append(step(human, x))
        t_d.append(step(dyn, x))
    h, d = statistics.median(t_h), statistics.median(t_d)
    print(f'input {args.batch}x3x{args.size}x{args.size}, threads={torch.get_num_threads()}')
    print(f'mmseg HRNet-W48     {h * 1e3:9.1f} ms / step')
    print(f'DynOPool HRNet-W48  {d * 1e3:9.1f} ms / step')
    print(f'ratio DynOPool / mmseg: {d / h:.3f}')


if __name__ == '__main__':
    main()
