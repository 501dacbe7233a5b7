"""Frozen against live DynOPool model in PyTorch, many rounds, for issue 22's "the frozen
model at least as fast as the live one".

``bench_deploy.py`` times three models (human, live, frozen) a few rounds each; at
whole-model scale single rounds vary by up to ±10 % here, enough to rank frozen and
live either way. This times only the live model, the frozen one and a second deep copy
of the live model (the spread between two identical models), in a rotating order,
and prints the medians and the median of the per-round frozen / live ratios.

    python tools/benchmark/bench_frozen_live.py --model deeplab --threads 2 --batch 1 \
        --rounds 20
"""
import argparse
import copy
import statistics
import sys

import torch

from bench_deploy import deeplab_pair, hrnet48_pair, interleaved_times


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--model', choices=['hrnet48', 'deeplab'], default='deeplab')
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--rounds', type=int, default=20)
    args = parser.parse_args(argv)
    if min(args.threads, args.batch, args.rounds) < 1:
        parser.error('--threads, --batch and --rounds must be positive')
    import mmseg_dynopool  # noqa: F401  (registers the modules)
    from mmseg.utils import register_all_modules

    from mmseg_dynopool.deploy import freeze_dynopool
    from mmseg_dynopool.deploy.onnx import TensorForward
    register_all_modules(init_default_scope=True)
    torch.set_num_threads(args.threads)
    size = 480 if args.model == 'hrnet48' else 512
    _, dp, note = hrnet48_pair(size) if args.model == 'hrnet48' else deeplab_pair(size,
                                                                                 0.84)
    models = {'live': TensorForward(dp).eval(),
              'frozen': TensorForward(freeze_dynopool(copy.deepcopy(dp),
                                                      (size, size))).eval(),
              'live copy': TensorForward(copy.deepcopy(dp)).eval()}
    x = torch.randn(args.batch, 3, size, size)
    with torch.no_grad():
        times = interleaved_times({k: (lambda m=m: m(x)) for k, m in models.items()},
                                  args.rounds)
    med = {k: statistics.median(v) for k, v in times.items()}
    paired = sorted(f / l for f, l in zip(times['frozen'], times['live']))
    print(f'{args.model} {size}x{size} ({note}), batch {args.batch}, {args.threads} '
          f'thread(s), {args.rounds} rounds')
    print('  median ms: ' + ', '.join(f'{k} {v * 1e3:.1f}' for k, v in med.items()))
    print(f"  frozen / live {med['frozen'] / med['live']:.3f}, live copy / live "
          f"{med['live copy'] / med['live']:.3f}; per-round frozen / live: median "
          f'{statistics.median(paired):.3f}, quartiles {paired[len(paired) // 4]:.3f} '
          f'- {paired[3 * len(paired) // 4]:.3f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
