"""Per-class IoU of a baseline vs. a DropClass checkpoint against class frequency.

    python tools/analysis/per_class_report.py CONFIG BASELINE_CKPT DROPCLASS_CKPT \
        [--out-dir DIR] [--baseline-config CFG] [--dropclass-config CFG] \
        [--max-freq-images N] [--cfg-options k=v ...]

CONFIG gives the data: the training set (pixel frequency of each class, from the
stored label maps) and the test set / evaluator (per-class IoU). Each checkpoint is
evaluated with the model of --baseline-config / --dropclass-config when given, else the
model saved in the checkpoint by mmengine's Runner, else CONFIG's model. Prints the
table (class, frequency, IoU baseline, IoU DropClass, gain) and writes
per_class_report.txt / .json and gain_vs_frequency.png under --out-dir.
"""
import argparse
import os.path as osp
import sys

from mmengine.config import Config, DictAction


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='config giving the train/test data')
    parser.add_argument('baseline_checkpoint', help='checkpoint of the plain model')
    parser.add_argument('dropclass_checkpoint', help='checkpoint of the DropClass model')
    parser.add_argument('--out-dir', default='work_dirs/per_class_report',
                        help='where the table, json and PNG are written')
    parser.add_argument('--baseline-config', default=None,
                        help="config whose model matches the baseline checkpoint")
    parser.add_argument('--dropclass-config', default=None,
                        help="config whose model matches the DropClass checkpoint")
    parser.add_argument('--max-freq-images', type=int, default=None,
                        help='estimate the frequencies on this many training images')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of CONFIG (key=value)')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    """Run the report; returns the exit status."""
    args = parse_args(argv)
    import mmseg_dynopool  # noqa: F401  (registers DropClass, the metric, ...)
    from mmseg_dynopool.dropclass.report import per_class_report
    from mmseg_dynopool.models.build import CheckpointMismatchError
    from mmseg_dynopool.utils import CheckpointReadError, UnsafeCheckpointError
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)

    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    # The evaluation Runners only log the config text: skip its yapf formatting
    # (seconds per Runner; Config.fromfile ignores format_python_code in mmengine 0.10).
    cfg = Config(cfg.to_dict(), filename=cfg.filename, format_python_code=False)
    models = {}
    for tag, path in (('baseline', args.baseline_config),
                      ('dropclass', args.dropclass_config)):
        models[tag] = Config.fromfile(path).model if path else None
    try:
        report = per_class_report(cfg, args.baseline_checkpoint,
                                  args.dropclass_checkpoint, args.out_dir,
                                  baseline_model=models['baseline'],
                                  dropclass_model=models['dropclass'],
                                  max_freq_images=args.max_freq_images)
    except (ValueError, CheckpointMismatchError, CheckpointReadError,
            UnsafeCheckpointError, FileNotFoundError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    print(report['table'])
    print(f'wrote {osp.join(args.out_dir, "per_class_report.txt")}, '
          f'{osp.join(args.out_dir, "per_class_report.json")} and {report["png"]}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
