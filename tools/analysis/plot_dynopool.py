"""Plots of a DynOPool training run.

    python tools/analysis/plot_dynopool.py WORK_DIR [--baseline BASELINE_WORK_DIR] \
        [--out DIR] [--shape H W]

Writes to DIR (default WORK_DIR/plots):

* dynopool_training.png - r_h and r_w of every DynOPool (labelled by module name) and
  the GMACs estimate over the training iterations, logged by DynOPoolGMACsHook: every
  WORK_DIR/<timestamp>/vis_data/scalars.json that has them, stitched in time order (a
  resumed run continues the curve; a later run overrides the iterations it logged
  again); the last point of a budget run is the projected, saved model;
* feature_maps.png (+ feature_maps.json) - the learned feature-map sizes drawn to scale
  next to the human model's (thesis Figure 5.1): the DynOPool model is WORK_DIR's last
  checkpoint with the config mmengine dumped in WORK_DIR, the human model the same from
  BASELINE_WORK_DIR, or, without --baseline, the DynOPool model's initial state; all at
  the training crop size of the config unless --shape is given.
"""
import argparse
import sys
from typing import List, Optional

from mmseg_dynopool.utils.cli import positive_int


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('work_dir', help='work dir of a DynOPool training run')
    parser.add_argument('--baseline', default=None, metavar='BASELINE_WORK_DIR',
                        help='work dir of the human-designed model')
    parser.add_argument('--out', default=None, metavar='DIR',
                        help='output folder (default: WORK_DIR/plots)')
    parser.add_argument('--shape', type=positive_int, nargs=2, metavar=('H', 'W'),
                        default=None,
                        help='input size (default: the training crop size)')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    """Write the plots; returns the exit status."""
    args = parse_args(argv)
    import mmseg_dynopool  # noqa: F401  (registers DynOPool, checkpoint loading)
    from mmseg_dynopool.analysis.plots import plot_work_dir
    try:
        written = plot_work_dir(args.work_dir, args.baseline, args.out, args.shape)
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    for path in written:
        print(f'wrote {path}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
