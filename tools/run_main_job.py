"""The main job: train and evaluate a DynOPool HRNet and its human-designed baseline.

    python tools/run_main_job.py [--work-dir work_dirs/main] [--iters N] [--gpus N]

* Without a real dataset it writes the built-in synthetic PascalVOC-format data
  (``data/synthetic_voc/VOC2012``) and runs the small synthetic configs
  (``configs/synthetic/``): a few minutes on 2 CPU cores.
* With ``data/VOCdevkit/VOC2012`` present (VOC 2012 + SBD aug converted as mmseg
  documents, i.e. with ``SegmentationClassAug/`` and ``ImageSets/Segmentation/aug.txt``)
  it runs the paper's configs instead (``configs/dynopool_hrnet/``: FCN-HRNet-W48 at
  480x480, human baseline and DynOPool-S). ``--gpus N`` launches ``torchrun`` with N
  processes (mmseg's ``dist_train.sh`` does the same).

Both models go through mmseg's own ``tools/train.py`` and ``tools/test.py`` (shipped
inside the installed mmseg). At the end it prints one table: mIoU, GMACs and the
feature-map size of every resolution level, for both models, and writes it as JSON,
plus the plots of ``tools/analysis/plot_dynopool.py`` when that tool is present.
"""
import argparse
import glob
import json
import os
import os.path as osp
import re
import subprocess
import sys
from typing import Dict, List, Optional

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
REAL_ROOT = osp.join(REPO, 'data', 'VOCdevkit', 'VOC2012')
SYNTH_ROOT = osp.join(REPO, 'data', 'synthetic_voc', 'VOC2012')

SYNTHETIC = dict(
    human=osp.join(REPO, 'configs/synthetic/fcn_hr18tiny_1xb8-600it_synthvoc-96x96.py'),
    dynopool=osp.join(REPO,
                      'configs/synthetic/fcn_dynopool-hr18tiny_1xb8-600it_synthvoc-96x96.py'),
    shape=(96, 96))
PAPER = dict(
    human=osp.join(REPO, 'configs/dynopool_hrnet/fcn_hr48_4xb4-40k_voc12aug-480x480.py'),
    dynopool=osp.join(REPO,
                      'configs/dynopool_hrnet/fcn_dynopool-s-hr48_4xb4-40k_voc12aug-480x480.py'),
    shape=(480, 480))


def mmseg_tool(name: str) -> str:
    import mmseg
    path = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools', name)
    if not osp.isfile(path):
        raise FileNotFoundError(f'mmseg tool {path} not found; is mmsegmentation '
                                'installed from its wheel?')
    return path


def has_real_voc(root: str = REAL_ROOT) -> bool:
    return osp.isfile(osp.join(root, 'ImageSets', 'Segmentation', 'aug.txt')) and \
        osp.isdir(osp.join(root, 'SegmentationClassAug'))


def run(cmd: List[str], log_path: str) -> str:
    """Run a command, stream its output to a log file, fail loudly with the log's tail."""
    print('$', ' '.join(cmd), flush=True)
    with open(log_path, 'w') as log:
        proc = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    with open(log_path) as f:
        text = f.read()
    if proc.returncode != 0:
        sys.stderr.write(text[-4000:])
        raise SystemExit(f'command failed ({proc.returncode}); full log: {log_path}')
    return text


def launcher(gpus: int, tool: str) -> List[str]:
    if gpus > 1:
        return [sys.executable, '-m', 'torch.distributed.run', f'--nproc_per_node={gpus}',
                tool, '--launcher', 'pytorch']
    return [sys.executable, tool]


def parse_miou(text: str) -> float:
    found = re.findall(r'mIoU:\s*([0-9.]+)', text)
    if not found:
        raise ValueError('no mIoU found in the test output')
    return float(found[-1])


def latest_checkpoint(work_dir: str) -> str:
    last = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(last):
        with open(last) as f:
            path = f.read().strip()
        if osp.isfile(path):
            return path
    found = sorted(glob.glob(osp.join(work_dir, 'iter_*.pth')),
                   key=lambda p: int(re.findall(r'iter_(\d+)', p)[0]))
    if not found:
        raise FileNotFoundError(f'no checkpoint in {work_dir}')
    return found[-1]


def train_and_test(name: str, config: str, work_root: str, args, extra: List[str]
                   ) -> Dict:
    work_dir = osp.join(work_root, name)
    os.makedirs(work_dir, exist_ok=True)
    opts = list(extra)
    if args.iters:
        opts += [f'train_cfg.max_iters={args.iters}', f'train_cfg.val_interval={args.iters}',
                 f'param_scheduler.0.end={args.iters}',
                 f'default_hooks.checkpoint.interval={args.iters}']
    cmd = launcher(args.gpus, mmseg_tool('train.py')) + [config, '--work-dir', work_dir]
    if opts:
        cmd += ['--cfg-options', *opts]
    run(cmd, osp.join(work_dir, 'main_job_train.log'))
    ckpt = latest_checkpoint(work_dir)
    test_dir = osp.join(work_dir, 'test')
    cmd = launcher(args.gpus, mmseg_tool('test.py')) + [config, ckpt, '--work-dir', test_dir]
    if extra:
        cmd += ['--cfg-options', *extra]
    text = run(cmd, osp.join(work_dir, 'main_job_test.log'))
    return dict(name=name, config=config, checkpoint=ckpt, work_dir=work_dir,
                miou=parse_miou(text))


def describe(result: Dict, shape, extra_opts: Dict) -> Dict:
    """Add GMACs and per-level sizes of the trained model (at the training input size)."""
    from mmseg_dynopool.analysis.report import build_model_from_config, model_report
    model = build_model_from_config(result['config'], result['checkpoint'], extra_opts)
    result.update(model_report(model, shape))
    return result


def print_table(results: List[Dict], shape) -> str:
    names = ['stem', 'stream1', 'stream2', 'stream3', 'stream4']
    lines = [f'Main job results (GMACs and sizes per image at {shape[0]}x{shape[1]})',
             f"{'model':<10}{'mIoU':>7}{'GMACs':>9}  " + ''.join(f'{n:>10}' for n in names)]
    for r in results:
        sizes = ''.join(f"{'x'.join(map(str, s)):>10}" for s in r['levels'])
        lines.append(f"{r['name']:<10}{r['miou']:>7.2f}{r['gmacs']:>9.3f}  {sizes}")
    table = '\n'.join(lines)
    print(table, flush=True)
    return table


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dir', default=osp.join(REPO, 'work_dirs', 'main'))
    parser.add_argument('--iters', type=int, default=None,
                        help='override the number of training iterations')
    parser.add_argument('--gpus', type=int, default=1)
    parser.add_argument('--synthetic', action='store_true',
                        help='use the synthetic data even if real VOC is present')
    parser.add_argument('--num-train', type=int, default=120)
    parser.add_argument('--num-val', type=int, default=30)
    parser.add_argument('--data-root', default=SYNTH_ROOT,
                        help='where the synthetic dataset lives / is written')
    args = parser.parse_args(argv)

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
    results = []
    for name in ('human', 'dynopool'):
        result = train_and_test(name, setup[name], args.work_dir, args, extra)
        results.append(describe(result, setup['shape'], extra_dict))
    table = print_table(results, setup['shape'])
    with open(osp.join(args.work_dir, 'results.json'), 'w') as f:
        json.dump(dict(results=results, table=table), f, indent=2)
    plot_tool = osp.join(REPO, 'tools', 'analysis', 'plot_dynopool.py')
    if osp.isfile(plot_tool):
        run([sys.executable, plot_tool, osp.join(args.work_dir, 'dynopool'),
             '--baseline', osp.join(args.work_dir, 'human')],
            osp.join(args.work_dir, 'plots.log'))
    print(f'results: {osp.join(args.work_dir, "results.json")}')


if __name__ == '__main__':
    main()
