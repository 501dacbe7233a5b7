"""The main job: train and evaluate the human HRNet, DynOPool-S (a GMACs budget) and DynOPool-B.

    python tools/run_main_job.py [--work-dir work_dirs/main] [--seeds 3] [--iters N]
                                 [--jobs J] [--gpus N]

* Without a real dataset it writes the built-in synthetic PascalVOC-format data
  (``data/synthetic_voc/VOC2012``) and runs the small synthetic configs
  (``configs/synthetic/``): a tiny HRNet, 600 iterations, on 2 CPU cores.
* With ``data/VOCdevkit/VOC2012`` present (VOC 2012 + SBD aug converted as mmseg
  documents, i.e. with ``SegmentationClassAug/`` and ``ImageSets/Segmentation/aug.txt``)
  it runs the paper's configs instead (``configs/dynopool_hrnet/``: FCN-HRNet-W48 at
  480x480). ``--gpus N`` launches ``torchrun`` with N processes.

Models: ``human`` (mmseg's HRNet), ``dp-s`` (DynOPool HRNet with a GMACs budget of
Table 5.4's DP-S / human ratio, 69.39 / 82.55) and ``dp-b`` (DynOPool HRNet,
unconstrained). Each is trained ``--seeds`` times (seeds 0..N-1) with mmseg's own
``tools/train.py`` and evaluated by its final validation (mIoU); progress lines (model,
seed, iteration, loss, GMACs, ETA) are printed as the runs go. At the end it prints one
table - mIoU mean +- standard deviation over seeds, GMACs and the feature-map size of
every resolution level - and the DP-S vs human verdict, and writes them to
``WORK_DIR/results.json``, plus the plots of ``tools/analysis/plot_dynopool.py`` (in
``WORK_DIR/<model>/seed0/plots``). Runs already finished (``result.json`` in their
folder) are not repeated, nor are plots newer than the runs they draw.
"""
import argparse
import json
import os
import os.path as osp
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)
REAL_ROOT = osp.join(REPO, 'data', 'VOCdevkit', 'VOC2012')
SYNTH_ROOT = osp.join(REPO, 'data', 'synthetic_voc', 'VOC2012')
MODELS = ('human', 'dp-s', 'dp-b')
# The learnable-resizing baselines (docs/baselines.md), run with --models: Shape Adaptor
# and DiffStride in the same backbone, unconstrained (-b) and at DP-S's cost (-s).
BASELINES = ('sa-s', 'sa-b', 'ds-s', 'ds-b')

SYNTHETIC = {
    'human': 'configs/synthetic/fcn_hr18tiny_1xb8-600it_synthvoc-96x96.py',
    'dp-s': 'configs/synthetic/fcn_dynopool-s-hr18tiny_1xb8-600it_synthvoc-96x96.py',
    'dp-b': 'configs/synthetic/fcn_dynopool-b-hr18tiny_1xb8-600it_synthvoc-96x96.py',
    'sa-s': 'configs/synthetic/fcn_shapeadaptor-s-hr18tiny_1xb8-600it_synthvoc-96x96.py',
    'sa-b': 'configs/synthetic/fcn_shapeadaptor-b-hr18tiny_1xb8-600it_synthvoc-96x96.py',
    'ds-s': 'configs/synthetic/fcn_diffstride-s-hr18tiny_1xb8-600it_synthvoc-96x96.py',
    'ds-b': 'configs/synthetic/fcn_diffstride-b-hr18tiny_1xb8-600it_synthvoc-96x96.py',
    'shape': (96, 96)}
PAPER = {
    'human': 'configs/dynopool_hrnet/fcn_hr48_4xb4-40k_voc12aug-480x480.py',
    'dp-s': 'configs/dynopool_hrnet/fcn_dynopool-s-hr48_4xb4-40k_voc12aug-480x480.py',
    'dp-b': 'configs/dynopool_hrnet/fcn_dynopool-b-hr48_4xb4-40k_voc12aug-480x480.py',
    'sa-s': 'configs/resizing_baselines/fcn_shapeadaptor-s-hr48_4xb4-40k_voc12aug-480x480.py',
    'sa-b': 'configs/resizing_baselines/fcn_shapeadaptor-hr48_4xb4-40k_voc12aug-480x480.py',
    'ds-s': 'configs/resizing_baselines/fcn_diffstride-s-hr48_4xb4-40k_voc12aug-480x480.py',
    'ds-b': 'configs/resizing_baselines/fcn_diffstride-hr48_4xb4-40k_voc12aug-480x480.py',
    'shape': (480, 480)}
LEVELS = ['stem', 'stream1', 'stream2', 'stream3', 'stream4']


def has_real_voc(root: str = REAL_ROOT) -> bool:
    return osp.isfile(osp.join(root, 'ImageSets', 'Segmentation', 'aug.txt')) and \
        osp.isdir(osp.join(root, 'SegmentationClassAug'))


def train_one(name: str, seed: int, config: str, work_root: str, args,
              extra: List[str]) -> Dict:
    from mmseg_dynopool.analysis.runs import train_run
    opts = list(extra) + [f'randomness.seed={seed}']
    if args.iters:
        opts += [f'train_cfg.max_iters={args.iters}', f'train_cfg.val_interval={args.iters}',
                 f'param_scheduler.0.end={args.iters}',
                 f'default_hooks.checkpoint.interval={args.iters}']
    work_dir = osp.join(work_root, name, f'seed{seed}')
    return train_run(osp.join(REPO, config), work_dir, opts, gpus=args.gpus,
                     label=f'{name} seed {seed}', cwd=REPO)


def describe(result: Dict, shape, extra_opts: Dict) -> Dict:
    """GMACs and per-level sizes of the trained model (at the training input size)."""
    from mmseg_dynopool.analysis.report import build_model_from_config, model_report
    model = build_model_from_config(result['config'], result['checkpoint'], extra_opts)
    report = model_report(model, shape)
    return dict(gmacs=report['gmacs'], levels=report['levels'], layers=report['layers'])


def summarise(name: str, runs: List[Dict]) -> Dict:
    from mmseg_dynopool.analysis.runs import mean_std
    miou = mean_std([r['metric'] for r in runs])
    gmacs = mean_std([r['gmacs'] for r in runs])
    return dict(name=name, config=runs[0]['config'], seeds=len(runs),
                miou=miou['mean'], miou_std=miou['std'],
                mious=[r['metric'] for r in runs], gmacs=gmacs['mean'],
                gmacs_std=gmacs['std'], gmacs_per_seed=[r['gmacs'] for r in runs],
                levels=runs[0]['levels'], levels_per_seed=[r['levels'] for r in runs],
                layers=runs[0]['layers'], runs=runs)


def print_table(results: List[Dict], shape) -> str:
    seeds = results[0]['seeds']
    lines = [f'Main job results: mIoU mean +- std over {seeds} seed(s); GMACs and sizes per '
             f'image at {shape[0]}x{shape[1]} (sizes of seed 0)',
             f"{'model':<7}{'mIoU':>15}{'GMACs':>9}  " + ''.join(f'{n:>9}' for n in LEVELS)]
    for r in results:
        sizes = ''.join(f"{'x'.join(map(str, s)):>9}" for s in r['levels'])
        lines.append(f"{r['name']:<7}{r['miou']:>8.2f} +-{r['miou_std']:>5.2f}"
                     f"{r['gmacs']:>9.4f}  {sizes}")
        lines.append(f"{'':<7}  per seed: " + ', '.join(f'{m:.2f}' for m in r['mious']))
    table = '\n'.join(lines)
    print(table, flush=True)
    return table


def verdict(results: List[Dict], name: str = 'dp-s') -> str:
    """Did model ``name`` (DP-S, or a budgeted baseline) match or beat the human mIoU at
    no more GMACs? (with the spread)"""
    by = {r['name']: r for r in results}
    label = name.upper()
    human, dps = by['human'], by[name]
    diff = dps['miou'] - human['miou']
    # Standard error of the difference of two means over the seeds.
    se = ((dps['miou_std'] ** 2) / dps['seeds'] +
          (human['miou_std'] ** 2) / human['seeds']) ** 0.5
    cost = dps['gmacs'] / human['gmacs']
    cheaper = cost <= 1.0 + 1e-9
    if human['seeds'] < 2:
        matched = 'cannot tell (one seed: no spread; use --seeds 3 or more)'
    elif diff > 2 * se:
        matched = f'yes: {label} beat the human mIoU by more than 2 standard errors'
    elif diff >= -2 * se:
        matched = ('matched within the noise: the difference is within 2 standard errors '
                   '(more seeds would be needed to tell)')
    else:
        matched = f'no: {label} is below the human mIoU by more than 2 standard errors'
    text = (f'{label} vs human: {diff:+.2f} mIoU (standard error of the difference {se:.2f}) '
            f'at {cost:.3f}x the GMACs ({"no more" if cheaper else "MORE"} than the '
            f'human model) -> {matched}')
    print(text, flush=True)
    return text


def _plots_current(run_dir: str, human_dir: str) -> bool:
    """Whether ``run_dir/plots`` holds every plot, newer than both runs' results."""
    from mmseg_dynopool.analysis.plots import FEATURE_MAPS_PNG, TRAINING_PNG
    results = [osp.join(d, 'result.json') for d in (run_dir, human_dir)]
    plots = [osp.join(run_dir, 'plots', f) for f in (TRAINING_PNG, FEATURE_MAPS_PNG)]
    if not all(osp.isfile(f) for f in results + plots):
        return False
    return min(osp.getmtime(f) for f in plots) >= max(osp.getmtime(f) for f in results)


def plot_runs(work_dir: str, names: List[str]) -> None:
    """tools/analysis/plot_dynopool.py's plots of each model's seed-0 run against the
    human model's, in this process (no interpreter start per plot); plots newer than both
    runs' results are kept, so a finished job run again redoes nothing."""
    from mmseg_dynopool.analysis.plots import plot_work_dir
    human_dir = osp.join(work_dir, 'human', 'seed0')
    for name in names:
        run_dir = osp.join(work_dir, name, 'seed0')
        if _plots_current(run_dir, human_dir):
            print(f'[{name}] plots already done ({osp.join(run_dir, "plots")})')
            continue
        try:
            plot_work_dir(run_dir, human_dir)
        except (FileNotFoundError, ValueError, RuntimeError) as err:
            print(f'plot_dynopool failed for {name}: {err}')


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dir', default=osp.join(REPO, 'work_dirs', 'main'))
    parser.add_argument('--iters', type=int, default=None,
                        help='override the number of training iterations')
    parser.add_argument('--seeds', type=int, default=3,
                        help='training runs per model (seeds 0..N-1); default 3')
    parser.add_argument('--models', nargs='+', default=list(MODELS),
                        choices=MODELS + BASELINES,
                        help='default: human dp-s dp-b; add sa-s sa-b ds-s ds-b for the '
                        'Shape Adaptor / DiffStride baselines (docs/baselines.md)')
    parser.add_argument('--jobs', type=int, default=None,
                        help='runs at once (default: 2 on a CPU-only machine with >= 2 '
                        'cores, each with half the threads; 1 with GPUs)')
    parser.add_argument('--gpus', type=int, default=1)
    parser.add_argument('--synthetic', action='store_true',
                        help='use the synthetic data even if real VOC is present')
    parser.add_argument('--num-train', type=int, default=120)
    parser.add_argument('--num-val', type=int, default=30)
    parser.add_argument('--data-root', default=SYNTH_ROOT,
                        help='where the synthetic dataset lives / is written')
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error('--seeds must be >= 1')
    if 'human' not in args.models:
        parser.error('--models must include human (the baseline of the comparison)')

    real = has_real_voc() and not args.synthetic
    setup = PAPER if real else SYNTHETIC
    extra: List[str] = []
    extra_dict: Dict = {}
    if not real:
        from mmseg_dynopool.datasets import write_synthetic_voc
        if not osp.isdir(osp.join(args.data_root, 'JPEGImages')):
            print(f'no real PascalVOC found; writing synthetic data to {args.data_root}')
            write_synthetic_voc(args.data_root, args.num_train, args.num_val, seed=0)
        for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
            extra.append(f'{loader}.dataset.data_root={args.data_root}')
            extra_dict[f'{loader}.dataset.data_root'] = args.data_root
    else:
        print(f'real PascalVOC found at {REAL_ROOT}: running the paper configs')
    os.makedirs(args.work_dir, exist_ok=True)

    import torch
    jobs = args.jobs or (2 if (not torch.cuda.is_available() and
                               (os.cpu_count() or 1) >= 2) else 1)
    if jobs > 1:
        # Small CPU models use 2 threads poorly: two runs with half the threads each
        # finish sooner than two runs one after the other.
        threads = max(1, (os.cpu_count() or 1) // jobs)
        os.environ.setdefault('OMP_NUM_THREADS', str(threads))
    tasks = [(name, seed) for seed in range(args.seeds) for name in args.models]
    print(f'main job: {len(args.models)} models x {args.seeds} seeds = {len(tasks)} '
          f'training runs, {jobs} at a time', flush=True)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {t: pool.submit(train_one, t[0], t[1], setup[t[0]], args.work_dir,
                                  args, extra) for t in tasks}
        done = {t: f.result() for t, f in futures.items()}
    results = []
    for name in args.models:
        runs = []
        for seed in range(args.seeds):
            run = done[(name, seed)]
            if 'gmacs' not in run:
                run.update(describe(run, setup['shape'], extra_dict))
                with open(osp.join(run['work_dir'], 'result.json'), 'w') as f:
                    json.dump(run, f, indent=2)
            runs.append(run)
        results.append(summarise(name, runs))
    table = print_table(results, setup['shape'])
    text = '\n'.join(verdict(results, name) for name in args.models
                      if name.endswith('-s'))
    with open(osp.join(args.work_dir, 'results.json'), 'w') as f:
        json.dump(dict(results=results, table=table, verdict=text, seeds=args.seeds,
                       iters=args.iters, real_voc=real), f, indent=2)
    plot_runs(args.work_dir, [name for name in args.models if name != 'human'])
    print(f'results: {osp.join(args.work_dir, "results.json")}')


if __name__ == '__main__':
    main()
