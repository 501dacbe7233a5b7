"""What ``torch.compile`` costs and gives on a DynOPool model whose sizes change.

A DynOPool layer's integer output size follows alpha (Eqs. 4.1, 4.3), and alpha changes
every optimizer step; the compiled code after each layer's host size plan
(``DynOPool._plan``, the one graph break per call) is specialised on the sizes. This
trains the tiny HRNet of the tests (4 DynOPool streams, batch 2, 64x64, alpha at a
learning rate that changes the sizes every few steps) for ``--steps`` steps, eager and
under ``torch.compile`` (default, and ``dynamic=True``), and prints per variant: the
first step (compilation), the median of the steps whose sizes are new (recompilation)
and of those whose sizes were seen before, the number of distinct size sets, Dynamo's
graph count, and the ratio to eager. One process, variants one after another.

    python tools/benchmark/bench_compile.py [--steps 12] [--backend inductor]
"""
import argparse
import copy
import os.path as osp
import statistics
import sys
import time

import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)


def build():
    from mmseg_dynopool.models.backbones import DynOPoolHRNet
    from tests.conftest import tiny_hrnet_extra
    torch.manual_seed(0)
    return DynOPoolHRNet(tiny_hrnet_extra(), init_ratios=0.45)


def loss_fn(model, x):
    return sum((o ** 2).mean() for o in model(x))


def run(model, step_fn, steps: int, alpha_lr: float):
    from mmseg_dynopool import resizing_layers
    alphas = [p for n, p in model.named_parameters() if n.endswith('alpha')]
    others = [p for n, p in model.named_parameters() if not n.endswith('alpha')]
    opt = torch.optim.SGD([dict(params=others), dict(params=alphas, lr=alpha_lr)], lr=0.02)
    seen, rows = set(), []
    for i in range(steps):
        x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(i))
        start = time.perf_counter()
        opt.zero_grad()
        loss = step_fn(model, x)
        loss.backward()
        opt.step()
        elapsed = time.perf_counter() - start
        sizes = tuple(m.last_size for _, m in resizing_layers(model))
        rows.append((elapsed, sizes not in seen))
        seen.add(sizes)
    return rows, len(seen)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--steps', type=int, default=12)
    parser.add_argument('--backend', default='inductor')
    parser.add_argument('--alpha-lr', type=float, default=2e-3)
    parser.add_argument('--threads', type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import mmseg_dynopool  # noqa: F401
    base = build()
    variants = [('eager', None), ('compile', dict(backend=args.backend)),
                ('compile dynamic=True', dict(backend=args.backend, dynamic=True))]
    results = {}
    for name, options in variants:
        torch._dynamo.reset()
        torch._dynamo.utils.counters.clear()
        step_fn = loss_fn if options is None else torch.compile(loss_fn, **options)
        rows, distinct = run(copy.deepcopy(base), step_fn, args.steps, args.alpha_lr)
        graphs = torch._dynamo.utils.counters['stats'].get('unique_graphs', 0)
        first = rows[0][0]
        new = [t for t, is_new in rows[1:] if is_new]
        old = [t for t, is_new in rows[1:] if not is_new]
        results[name] = (first, statistics.median(new) if new else float('nan'),
                         statistics.median(old) if old else float('nan'))
        print(f'{name:22s} first step {first:7.2f} s | new sizes: {len(new):2d} steps, '
              f'median {results[name][1]:6.2f} s | seen sizes: {len(old):2d} steps, '
              f'median {results[name][2]:6.3f} s | {distinct} size sets, {graphs} graphs',
              flush=True)
    eager = results['eager'][2] if results['eager'][2] == results['eager'][2] else \
        results['eager'][1]
    for name, (_, new, old) in results.items():
        print(f'{name:22s} steady step / eager: {old / eager:.2f}x; '
              f'step with new sizes / eager: {new / eager:.1f}x')
    return 0


if __name__ == '__main__':
    sys.exit(main())
