"""Accuracy vs GMACs trade-off (thesis Figure 5.2) of a human config and a DynOPool config.

    python tools/analysis/tradeoff.py HUMAN_CONFIG DYNOPOOL_CONFIG --work-dir DIR \
        [--baselines SHAPEADAPTOR_CONFIG DIFFSTRIDE_CONFIG] \
        [--scales 0.75 0.875 1 1.125 1.25] [--targets 0.6 0.8 1.0 1.25] [--seeds 3] \
        [--gpus N] [--cfg-options key=value ...]

Trains the human model at each input scale and the DynOPool model - and each
``--baselines`` config (the same backbone with Shape Adaptor or DiffStride layers) - at
each GMACs budget (``--targets`` x the human model's GMACs at scale 1, set as
``DynOPoolGMACsHook.target_gmacs``), each ``--seeds`` times with mmseg's / mmpretrain's
``tools/train.py`` (``--gpus N`` runs it under torchrun), and writes
``DIR/tradeoff.json`` (``{"human": [{"scale", "gmacs", "metric", ...}], "dynopool":
[{"target", "gmacs", "metric", "sizes", ...}], "shapeadaptor": [...], ...}``, means and
standard deviations over seeds) and ``DIR/tradeoff.png`` (all curves on one plot).
Points already trained (``result.json`` in their work dir) are skipped, so re-running
after an interruption continues.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('human_config')
    parser.add_argument('dynopool_config')
    parser.add_argument('--work-dir', required=True)
    parser.add_argument('--baselines', nargs='+', default=[],
                        help='configs of the same backbone with ShapeAdaptor / DiffStride '
                        'layers, trained at the same budgets (one curve each)')
    parser.add_argument('--scales', type=float, nargs='+',
                        default=[0.75, 0.875, 1.0, 1.125, 1.25],
                        help='input scales of the human model (x the crop size)')
    parser.add_argument('--targets', type=float, nargs='+', default=[0.6, 0.8, 1.0, 1.25],
                        help='GMACs budgets of the resizing models (x the human GMACs)')
    parser.add_argument('--seeds', type=int, default=1, help='runs per point')
    parser.add_argument('--gpus', type=int, default=1)
    parser.add_argument('--jobs', type=int, default=None,
                        help='runs at once (default: 2 on a CPU-only machine, 1 with GPUs)')
    parser.add_argument('--cfg-options', nargs='+', default=[],
                        help='key=value overrides applied to both configs')
    parser.add_argument('--quiet', action='store_true', help='no progress lines')
    args = parser.parse_args(argv)
    for path in (args.human_config, args.dynopool_config, *args.baselines):
        if not osp.isfile(path):
            parser.error(f'config not found: {path}')
    if args.seeds < 1:
        parser.error('--seeds must be >= 1')

    import mmseg_dynopool  # noqa: F401  (registers the modules)
    from mmseg_dynopool.analysis.plots import CURVES
    from mmseg_dynopool.analysis.tradeoff import tradeoff
    data = tradeoff(osp.abspath(args.human_config), osp.abspath(args.dynopool_config),
                    osp.abspath(args.work_dir), scales=args.scales, targets=args.targets,
                    seeds=args.seeds, gpus=args.gpus, cfg_options=args.cfg_options,
                    jobs=args.jobs, quiet=args.quiet,
                    baselines=[osp.abspath(p) for p in args.baselines])
    key = data['human'][0]['metric_key']
    print(f"{'curve':<13}{'point':>8}{'GMACs':>10}{key:>16}   sizes")
    for curve, *_, tag in CURVES:
        for p in data.get(curve, []):
            sizes = ' '.join('x'.join(map(str, s)) for s in p['sizes'])
            print(f"{curve:<13}{p[tag]:>8g}{p['gmacs']:>10.4f}"
                  f"{p['metric']:>10.2f} ± {p['metric_std']:<5.2f}  {sizes}")
    print(f"wrote {osp.join(args.work_dir, 'tradeoff.json')} and tradeoff.png")


if __name__ == '__main__':
    main()
