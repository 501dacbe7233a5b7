"""Table 5.4/5.5-style report of a model with DynOPool layers.

    python tools/analysis/dynopool_report.py CONFIG [--checkpoint CKPT] [--shape H W] \
        [--json OUT] [--cfg-options k=v ...]

For one image of H x W (default: the config's training crop size) it prints, per DynOPool,
its input and output size and ratio (r_h, r_w), then the total GMACs (mmengine.analysis
for every other layer + DynOPool's own cost, counted analytically), the DynOPools' share
of it (Table 5.5), the feature-map size of each HRNet level (Table 5.4) and the
parameter count. Without --checkpoint it reports the initial state. --json writes
{"gmacs", "dynopool_share", "layers": [{"name", "size", "ratio", ...}], ...}.
Works for mmseg segmentors and mmpretrain classifiers.
"""
import argparse
import json
import os
import os.path as osp
import sys
from typing import List, Optional

from mmengine.config import Config, DictAction

from mmseg_dynopool.utils.cli import positive_int


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='mmseg / mmpretrain config with DynOPool layers')
    parser.add_argument('--checkpoint', default=None,
                        help='trained weights; without it: the initial state')
    parser.add_argument('--shape', type=positive_int, nargs=2, metavar=('H', 'W'),
                        default=None,
                        help='input size (default: the training crop size of CONFIG)')
    parser.add_argument('--json', default=None, metavar='OUT',
                        help='also write the report as JSON to this file')
    parser.add_argument('--in-channels', type=int, default=3)
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of CONFIG (key=value)')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    """Print (and optionally save) the report; returns the exit status."""
    args = parse_args(argv)
    import mmseg_dynopool  # noqa: F401  (registers DynOPool, checkpoint loading)
    from mmseg_dynopool.analysis.report import (CheckpointMismatchError, NoDynOPoolError,
                                                dynopool_report, format_report,
                                                training_input_shape)
    from mmseg_dynopool.utils import CheckpointReadError, UnsafeCheckpointError
    shape = tuple(args.shape) if args.shape else None
    if shape is None:
        cfg = Config.fromfile(args.config)
        if args.cfg_options:
            cfg.merge_from_dict(args.cfg_options)
        shape = training_input_shape(cfg)
        if shape is None:
            print(f'error: {args.config} does not give a training input size; pass '
                  '--shape H W', file=sys.stderr)
            return 2
    try:
        report = dynopool_report(args.config, shape, args.checkpoint, args.cfg_options,
                                 args.in_channels)
    except (NoDynOPoolError, CheckpointMismatchError, CheckpointReadError,
            UnsafeCheckpointError, FileNotFoundError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    print(format_report(report))
    if args.json:
        os.makedirs(osp.dirname(osp.abspath(args.json)), exist_ok=True)
        with open(args.json, 'w') as f:
            json.dump(report, f, indent=2)
        print(f'JSON written to {args.json}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
