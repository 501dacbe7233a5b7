"""Registers, spills, shared memory and theoretical occupancy of every Triton kernel
specialisation, compiled ahead of time for NVIDIA targets (no GPU needed).

    python tools/analysis/triton_resources.py                 # sm_80, sm_90 (+ newer)
    python tools/analysis/triton_resources.py --targets 90 --markdown

Prints one row per kernel / aggregation / dtype / layout / indexing (/ column tile) and
target; exits non-zero on a compile error or a register spill.
"""
import argparse
import sys

from mmseg_dynopool.ops.triton import aot


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--targets', type=int, nargs='+', default=None,
                        help='compute capabilities (default: 80 90 and the newer ones the '
                             'bundled ptxas supports)')
    parser.add_argument('--markdown', action='store_true', help='print a markdown table')
    args = parser.parse_args(argv)
    targets = ([(f'sm_{cc}', cc) for cc in args.targets] if args.targets
               else aot.available_targets())
    bad = 0
    if args.markdown:
        print('| kernel | target | registers | spill B | shared B | occupancy |')
        print('| --- | --- | --- | --- | --- | --- |')
    for name, cc in targets:
        for spec in aot.specialisations():
            try:
                res, occ = aot.report(spec, cc)
            except Exception as err:  # noqa: BLE001 - report every failing specialisation
                bad += 1
                print(f'{spec.label()} {name}: COMPILE ERROR {type(err).__name__}: {err}')
                continue
            bad += res.spill_bytes > 0
            if args.markdown:
                print(f'| {spec.label()} | {name} | {res.registers} | {res.spill_bytes} | '
                      f'{res.shared_bytes} | {occ:.0%} |')
            else:
                print(f'{spec.label():44s} {name:7s} regs {res.registers:4d}  spill '
                      f'{res.spill_bytes:4d} B  shared {res.shared_bytes:5d} B  '
                      f'occupancy {occ:4.0%}')
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
