"""The GPU check in one command (``make gpu-check``), for a bare CUDA machine.

Needs only torch (with triton) on the machine: the sampling op (``mmseg_dynopool.ops``:
geometry, reference, Triton kernels, the registered operator) imports torch alone, so it
is loaded without the package ``__init__`` (which imports the mm stack) when the mm
stack is missing. Nothing is downloaded or installed.

1. Every backend check on CUDA against the float64 reference (values, input gradient,
   positional gradients): max / avg x float32 / bfloat16 / float16 / float64 x NCHW /
   channels_last, several shapes, through ``torch.ops.mmseg_dynopool.sample``.
2. The op against ``nn.MaxPool2d(2)`` at r = 0.5, forward + backward, float32 and
   bfloat16, CUDA events, medians of interleaved repetitions; ratios printed.
3. Where the mm stack is importable (e.g. the repository's ``.venv`` carried along, or
   installed there): the CUDA-parametrised tests of ``tests/test_ops`` and part (b) of
   ``tools/benchmark/bench_gpu.py`` (the HRNet-W48 training step).

    python tools/gpu_check.py [--quick] [--skip-mm]

Exits non-zero on any mismatch; prints "GPU CHECK PASSED" at the end otherwise.
"""
import argparse
import importlib
import os.path as osp
import statistics
import subprocess
import sys
import time
import types

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def load_ops():
    """``(functional, library)`` of ``mmseg_dynopool.ops``, with or without the mm stack."""
    try:
        import mmseg_dynopool  # noqa: F401
    except ImportError as err:  # the mm stack is not here: load the op package alone
        print(f'[gpu-check] mm stack not importable ({err}); loading the op alone')
        sys.modules.pop('mmseg_dynopool', None)
        for name, path in (('mmseg_dynopool', 'mmseg_dynopool'),
                           ('mmseg_dynopool.ops', 'mmseg_dynopool/ops')):
            pkg = types.ModuleType(name)
            pkg.__path__ = [osp.join(REPO, path)]
            sys.modules[name] = pkg
    functional = importlib.import_module('mmseg_dynopool.ops.functional')
    library = importlib.import_module('mmseg_dynopool.ops.library')
    return functional, library


def check_backends(functional, quick: bool) -> int:
    import torch
    from mmseg_dynopool.ops.geometry import axis_geometry
    tol = {torch.float32: 1e-4, torch.float64: 1e-10, torch.float16: 2e-2,
           torch.bfloat16: 1e-1}
    shapes = [((2, 3, 13, 10), (5, 6)), ((1, 4, 64, 64), (32, 32)),
              ((2, 8, 97, 61), (40, 33)), ((1, 2, 7, 9), (12, 15))]
    if quick:
        shapes = shapes[:2]
    failures = 0
    for (shape, out), dtype, agg, cl in ((s, d, a, c) for s in shapes for d in tol
                                         for a in ('max', 'avg') for c in (False, True)):
        g = torch.Generator().manual_seed(0)
        x64 = torch.randn(shape, generator=g, dtype=torch.float64)
        x = x64.to('cuda', dtype)
        if cl:
            x = x.to(memory_format=torch.channels_last)
        x.requires_grad_()
        geoms = [axis_geometry(shape[2], out[0], dtype, 'cuda'),
                 axis_geometry(shape[3], out[1], dtype, 'cuda')]
        pos = [gm.positions.clone().requires_grad_() for gm in geoms]
        y = functional.dynopool_sample(x, *pos, agg, tuple(geoms))
        gy = torch.randn(y.shape, generator=g, dtype=torch.float64)
        y.backward(gy.to('cuda', dtype))
        # The reference in float64 on the CPU, at the same sample points.
        xr = x.detach().double().cpu().requires_grad_()
        pr = [p.detach().cpu().requires_grad_() for p in pos]
        yr = functional.dynopool_sample_reference(xr, *pr, agg)
        yr.backward(gy)
        scale = max(1.0, float(yr.abs().max()))
        errs = {'out': (y.detach().double().cpu() - yr.detach()).abs().max() / scale,
                'grad_x': (x.grad.double().cpu() - xr.grad).abs().max() / scale,
                'grad_pos': max(float((p.grad.cpu() - q.grad).abs().max()
                                      / max(1.0, float(q.grad.abs().max())))
                                for p, q in zip(pos, pr))}
        worst = max(float(v) for v in errs.values())
        ok = worst <= tol[dtype]
        failures += not ok
        print(f'[gpu-check] {"ok  " if ok else "FAIL"} {agg} {str(dtype)[6:]:8s} '
              f'{"nhwc" if cl else "nchw"} {shape}->{out}: max rel err {worst:.2e} '
              f'(tol {tol[dtype]:.0e})')
    return failures


def bench_op(functional, quick: bool) -> None:
    import torch
    from torch import nn

    from mmseg_dynopool.ops.geometry import axis_geometry
    pool = nn.MaxPool2d(2)
    repeats = 10 if quick else 50
    for shape in ((4, 64, 240, 240), (4, 48, 120, 120)):
        for dtype in (torch.float32, torch.bfloat16):
            x = torch.randn(shape, device='cuda', dtype=dtype, requires_grad=True)
            geoms = tuple(axis_geometry(n, n // 2, dtype, 'cuda') for n in shape[2:])
            pos = [gm.positions.clone().requires_grad_() for gm in geoms]

            def ours():
                functional.dynopool_sample(x, *pos, 'max', geoms).sum().backward()

            def ref():
                pool(x).sum().backward()

            times = {'dynopool': [], 'maxpool': []}
            for _ in range(3):
                ours(), ref()
            for _ in range(repeats):
                for name, fn in (('dynopool', ours), ('maxpool', ref)):
                    start = torch.cuda.Event(enable_timing=True)
                    end = torch.cuda.Event(enable_timing=True)
                    start.record()
                    fn()
                    end.record()
                    torch.cuda.synchronize()
                    times[name].append(start.elapsed_time(end))
            a, b = statistics.median(times['dynopool']), statistics.median(times['maxpool'])
            print(f'[gpu-check] op fwd+bwd {shape} {str(dtype)[6:]}: DynOPool {a:.3f} ms, '
                  f'MaxPool2d {b:.3f} ms, ratio {a / b:.2f}x')


def run_mm_checks(quick: bool) -> int:
    """The CUDA tests of tests/test_ops and bench_gpu.py part (b), if the mm stack is
    importable; 0 failures when it is not (reported)."""
    try:
        import mmseg.models  # noqa: F401
        import pytest  # noqa: F401
    except ImportError as err:
        print(f'[gpu-check] skipping the mm-stack checks: {err}')
        return 0
    rc = subprocess.call([sys.executable, '-m', 'pytest', '-q', '-x', '-k', 'cuda',
                          osp.join(REPO, 'tests', 'test_ops')], cwd=REPO)
    failures = int(rc not in (0, 5))  # 5: nothing collected
    args = ['--skip-op', '--steps', '5' if quick else '20']
    rc = subprocess.call([sys.executable, osp.join(REPO, 'tools', 'benchmark',
                                                   'bench_gpu.py'), *args], cwd=REPO)
    return failures + int(rc != 0)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description='DynOPool GPU check (make gpu-check)')
    parser.add_argument('--quick', action='store_true', help='fewer shapes and repeats')
    parser.add_argument('--skip-mm', action='store_true',
                        help='skip the tests and model benchmark that need the mm stack')
    args = parser.parse_args(argv)
    import torch
    if not torch.cuda.is_available():
        print('[gpu-check] no CUDA device: nothing to check (run it on a GPU machine)')
        return 2
    start = time.time()
    print(f'[gpu-check] {torch.cuda.get_device_name()} torch {torch.__version__}')
    functional, _ = load_ops()
    failures = check_backends(functional, args.quick)
    bench_op(functional, args.quick)
    if not args.skip_mm:
        failures += run_mm_checks(args.quick)
    print(f'[gpu-check] {time.time() - start:.0f} s, {failures} failure(s)')
    print('GPU CHECK PASSED' if not failures else 'GPU CHECK FAILED')
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
