"""Which receptive-field shape does DynOPool learn, on square and non-square crops?

The controlled study of issue 23 (docs/information_asymmetry.md): the main job's tiny
DynOPool HRNet at the human model's cost (budget ``target_ratio=1.0``, alpha at 0.1x
the learning rate) on crops {1:1 64x64, 1:2 46x92, 1:3 38x114} x data {stretched 3x
along the crop's long axis, along its short axis, not stretched} x seeds, with the
thesis-exact alpha gradient and/or ``axis_grad='per_query'``, plus the human HRNet on
the same cells. Runs one training at a time, in this process, on ``--threads`` CPU
threads; finished runs (``OUT/results.json``) are not repeated. Prints and writes
``OUT/results.md`` (r_h / r_w per level, mean ± std over seeds, mIoU vs human).

    python tools/analysis/shape_study.py --out work_dirs/shape_study \\
        --seeds 0 1 2 --iters 200 --axis-grad exact per_query --human-seeds 0 1 2
"""
import argparse
import os.path as osp
import sys

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, REPO)


def main(argv=None) -> int:
    from mmseg_dynopool.analysis import shape_study as study
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', default=osp.join(REPO, 'work_dirs', 'shape_study'),
                        help='work dir of the runs, results.json and results.md')
    parser.add_argument('--data-root', default=None,
                        help="the main job's synthetic data, written there if missing "
                             '(120 train, 30 val, seed 0). Default: OUT/data/VOC2012')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--human-seeds', type=int, nargs='*', default=None,
                        help='seeds of the human runs (default: --seeds; none: skip)')
    parser.add_argument('--iters', type=int, default=200)
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--crops', nargs='+', default=list(study.CROPS),
                        help=f'named crops {sorted(study.CROPS)} (H x W: '
                        f'{list(study.CROPS.values())}) or HxW, e.g. 56x168')
    parser.add_argument('--data', nargs='+', default=list(study.DATA),
                        choices=list(study.DATA))
    parser.add_argument('--axis-grad', nargs='*', default=['exact'],
                        choices=list(study.AXIS_GRADS),
                        help="DynOPool alpha-gradient settings to run (none: no "
                             "DynOPool runs)")
    parser.add_argument('--base', type=float, default=1.3,
                        help='isotropic enlargement of every image before the stretch')
    parser.add_argument('--threads', type=int, default=1,
                        help='torch threads (1: on a shared 2-core machine two threads ran ~10x slower per iteration)')
    parser.add_argument('--report-only', action='store_true',
                        help='print the table of the runs in OUT, run nothing')
    args = parser.parse_args(argv)
    if args.iters < 1 or args.batch_size < 1 or args.threads < 1:
        parser.error('--iters, --batch-size and --threads must be >= 1')
    if args.base <= 0:
        parser.error('--base must be positive')
    for crop in args.crops:
        try:
            study.crop_size(crop)
        except ValueError as err:
            parser.error(str(err))
    data_root = args.data_root or osp.join(args.out, 'data', 'VOC2012')
    human_seeds = args.seeds if args.human_seeds is None else args.human_seeds

    import mmseg_dynopool  # noqa: F401  (registers the modules)
    if args.report_only:
        runs = study.load_results(osp.join(args.out, 'results.json'))
        if not runs:
            parser.error(f'no results.json with runs in {args.out}')
        print(study.markdown(study.summarise(runs)))
        return 0
    study.ensure_data(data_root)
    rows = study.run_study(args.out, data_root, args.seeds, args.iters,
                           args.batch_size, args.crops, args.data, args.axis_grad,
                           human_seeds=human_seeds, threads=args.threads,
                           base=args.base, log=lambda m: print(m, flush=True))
    print(study.markdown(rows))
    print(f"written: {osp.join(args.out, 'results.json')}, "
          f"{osp.join(args.out, 'results.md')}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
