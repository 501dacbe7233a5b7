"""Freeze a trained DynOPool model to fixed sizes and export it to ONNX.

    python tools/deployment/freeze_dynopool.py CONFIG CKPT --shape H W --out OUT_DIR \
        [--opset 17] [--no-onnx] [--cfg-options k=v ...]

Every DynOPool is replaced by a fixed resize (bilinear to 2h x 2w + 2x2 pooling, exactly
DynOPool's forward) with the output size it has for a network input of H x W; the
frozen model is checked against the trained one (max abs diff <= 1e-5), exported with
torch.onnx.export (tensor forward: normalised image in, decode-head logits out) and the
ONNX model checked in onnxruntime (<= 1e-4). OUT_DIR receives config.py,
frozen_model.pth, frozen_sizes.json, model.onnx and freeze_report.json (the sizes and the
measured differences); mmseg_dynopool.deploy.load_frozen(OUT_DIR) rebuilds the frozen
PyTorch model. See docs/deployment.md.
"""
import argparse
import json
import os.path as osp
import sys
from typing import List, Optional

from mmengine.config import Config, DictAction

from mmseg_dynopool.utils.cli import positive_int

FROZEN_TOL = 1e-5
ONNX_TOL = 1e-4


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='config of the trained DynOPool model')
    parser.add_argument('checkpoint', help='trained weights')
    parser.add_argument('--shape', type=positive_int, nargs=2, metavar=('H', 'W'),
                        required=True,
                        help='network input size the sizes are frozen for')
    parser.add_argument('--out', required=True, metavar='OUT_DIR', help='output folder')
    parser.add_argument('--opset', type=int, default=17, help='ONNX opset version')
    parser.add_argument('--no-onnx', action='store_true', help='skip the ONNX export')
    parser.add_argument('--in-channels', type=int, default=3)
    parser.add_argument('--seed', type=int, default=0, help='seed of the check input')
    parser.add_argument('--frozen-tol', type=float, default=FROZEN_TOL,
                        help='max abs diff allowed, frozen vs trained (default 1e-5)')
    parser.add_argument('--onnx-tol', type=float, default=ONNX_TOL,
                        help='max abs diff allowed, ONNX vs trained (default 1e-4)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of CONFIG (key=value)')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    """Freeze, save, export and check; returns the exit status."""
    args = parse_args(argv)
    import torch

    import mmseg_dynopool  # noqa: F401  (registers DynOPool, checkpoint loading)
    from mmseg_dynopool.deploy import (ONNX_FILE, UnsupportedExportError,
                                       compare_outputs, export_onnx, freeze_dynopool,
                                       frozen_sizes, save_frozen)
    from mmseg_dynopool.models.build import (CheckpointMismatchError,
                                             build_model_from_config)
    from mmseg_dynopool.utils import CheckpointReadError, UnsafeCheckpointError

    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    try:
        model = build_model_from_config(cfg, args.checkpoint)
        frozen = freeze_dynopool(model, args.shape, args.in_channels)
    except (CheckpointMismatchError, CheckpointReadError, UnsafeCheckpointError,
            FileNotFoundError, ValueError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    paths = save_frozen(frozen, args.out, cfg, args.shape,
                        meta=dict(config=osp.abspath(args.config),
                                  checkpoint=osp.abspath(args.checkpoint)))
    onnx_path = None
    if not args.no_onnx:
        try:
            onnx_path = export_onnx(frozen, args.shape, osp.join(args.out, ONNX_FILE),
                                    args.in_channels, args.opset)
        except UnsupportedExportError as err:
            print(f'error: {err}; rerun with --no-onnx to freeze without exporting',
                  file=sys.stderr)
            return 1
        paths['onnx'] = onnx_path
    x = torch.randn(1, args.in_channels, *args.shape,
                    generator=torch.Generator().manual_seed(args.seed))
    diffs = compare_outputs(model, frozen, x, onnx_path)
    ok = diffs['frozen_vs_trained'] <= args.frozen_tol and (
        onnx_path is None or diffs['onnx_vs_trained'] <= args.onnx_tol)
    report = dict(input_shape=list(args.shape), pools=frozen_sizes(frozen),
                  max_abs_diff=diffs,
                  tolerances=dict(frozen=args.frozen_tol, onnx=args.onnx_tol),
                  passed=ok, files=paths)
    with open(osp.join(args.out, 'freeze_report.json'), 'w') as f:
        json.dump(report, f, indent=2)
    for name, entry in report['pools'].items():
        sizes = ', '.join(f"{s['input'][0]}x{s['input'][1]} -> "
                          f"{s['output'][0]}x{s['output'][1]}" for s in entry['sizes'])
        kind = entry.get('aggregation', entry.get('type', ''))
        print(f'{name}: {sizes} ({kind})')
    for key, value in diffs.items():
        print(f'{key}: {value:.3g}')
    for key, path in paths.items():
        print(f'{key}: {path}')
    if not ok:
        print('error: the frozen/exported model does not reproduce the trained one '
              f'(tolerance {args.frozen_tol} frozen, {args.onnx_tol} ONNX)',
              file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
