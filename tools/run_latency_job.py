"""The main job in time (issue 22): DP-S under a latency budget next to the human model
and the GMACs-budget DP-S, with mIoU, GMACs, and predicted and measured frozen latency.

    python tools/run_latency_job.py [--work-dir work_dirs/main_latency]
        [--main-dir work_dirs/main] [--latency-model work_dirs/latency/cpu.json]
        [--seeds 3] [--repeats 15] [--threads 1 --clock cpu | --threads 2 --clock wall]
        [--max-load 1.5]

1. The latency model of this machine: ``--latency-model`` if it exists, else
   ``tools/analysis/calibrate_cost.py fit`` writes it (batch 1, ``--threads``,
   ``--clock``).
2. The runs, ``--seeds`` each, on the built-in synthetic data at 96x96: ``human`` and
   ``dp-s`` (the main job's: taken from ``--main-dir/<model>/seed<k>`` when finished
   there, else trained into ``--work-dir``) and ``dp-lat``
   (``configs/synthetic/fcn_dynopool-lat-...``: predicted latency <= 0.84x the human
   model's, trained into ``--work-dir`` with ``--latency-model``).
3. Every trained model frozen (``deploy.freeze_dynopool``) and timed, one 96x96 image,
   all models interleaved in one process, in PyTorch eager and in onnxruntime (medians
   of ``--repeats``); the latency model's prediction for each. Default: one thread and
   its CPU time (``--clock cpu``), which other jobs on the machine disturb far less
   than wall time; with ``--clock wall`` it first waits (up to 15 min) for the 1-minute
   load average to fall below ``--max-load``. The load is reported either way.

Prints one table (per model: mIoU mean +- std, GMACs, predicted ms, measured ms in both
runtimes, each also as a ratio to the human model) and writes ``WORK_DIR/results.json``.
"""
import argparse
import json
import os
import os.path as osp
import subprocess
import sys
import tempfile
from typing import Dict, List, Optional

import torch

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, osp.join(REPO, 'tools'))
sys.path.insert(0, osp.join(REPO, 'tools', 'benchmark'))
sys.path.insert(0, osp.join(REPO, 'tools', 'analysis'))

from calibrate_cost import load_1min, wait_for_quiet  # noqa: E402 (tools/analysis)

SYNTH_ROOT = osp.join(REPO, 'data', 'synthetic_voc', 'VOC2012')
CONFIGS = {
    'human': 'configs/synthetic/fcn_hr18tiny_1xb8-600it_synthvoc-96x96.py',
    'dp-s': 'configs/synthetic/fcn_dynopool-s-hr18tiny_1xb8-600it_synthvoc-96x96.py',
    'dp-lat': 'configs/synthetic/fcn_dynopool-lat-hr18tiny_1xb8-600it_synthvoc-96x96.py'}
SHAPE = (96, 96)


def find_or_train(name: str, seed: int, args, extra: List[str]) -> Dict:
    from run_main_job import train_one
    done = osp.join(args.main_dir, name, f'seed{seed}', 'result.json')
    if name != 'dp-lat' and osp.isfile(done):
        with open(done) as f:
            result = json.load(f)
        print(f'[{name} seed {seed}] from {done}: mIoU {result["metric"]:.2f}', flush=True)
        return result
    opts = list(extra)
    if name == 'dp-lat':
        opts.append(f'custom_hooks.0.latency_model={osp.abspath(args.latency_model)}')
    return train_one(name, seed, CONFIGS[name], args.work_dir, args, opts)


def time_models(models: Dict[str, torch.nn.Module], repeats: int, onnx: bool,
                clock: str) -> Dict[str, Dict[str, float]]:
    """Median ms of one forward of every model, interleaved: PyTorch eager and (with
    ``onnx``) onnxruntime, one image, the current number of threads, ``clock``
    (calibrate_cost.py's: wall, or with one thread the thread's CPU time)."""
    from calibrate_cost import median_times
    from mmseg_dynopool.deploy.onnx import TensorForward, export_onnx
    x = torch.randn(1, 3, *SHAPE)
    wrapped = {k: TensorForward(m).eval() for k, m in models.items()}
    with torch.no_grad():
        torch_ms = median_times({k: (lambda m=m: m(x)) for k, m in wrapped.items()},
                                repeats, clock, warmup=2)
    out = {k: dict(torch_ms=v * 1e3) for k, v in torch_ms.items()}
    if onnx:
        import onnxruntime as ort
        tmp = tempfile.mkdtemp(prefix='latency_job_')
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.log_severity_level = 3
        sessions = {}
        for k, m in models.items():
            path = export_onnx(m, SHAPE, osp.join(tmp, f'{k}.onnx'))
            sessions[k] = ort.InferenceSession(path, options,
                                               providers=['CPUExecutionProvider'])
        arr = x.numpy()
        ort_ms = median_times({k: (lambda s=s: s.run(None, {'input': arr}))
                               for k, s in sessions.items()}, repeats, clock, warmup=2)
        for k, v in ort_ms.items():
            out[k]['ort_ms'] = v * 1e3
    return out


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--work-dir', default=osp.join(REPO, 'work_dirs', 'main_latency'))
    parser.add_argument('--main-dir', default=osp.join(REPO, 'work_dirs', 'main'))
    parser.add_argument('--latency-model',
                        default=osp.join(REPO, 'work_dirs', 'latency', 'cpu.json'))
    parser.add_argument('--ort-latency-model', default=None,
                        help='a latency model fitted in onnxruntime (calibrate_cost.py fit '
                        '--runtime onnxruntime): adds its prediction for onnxruntime')
    parser.add_argument('--seeds', type=int, default=3)
    parser.add_argument('--iters', type=int, default=None)
    parser.add_argument('--repeats', type=int, default=15)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--clock', choices=['wall', 'cpu'], default='cpu',
                        help='cpu (default, needs --threads 1): the thread CPU time, '
                        'which holds on a machine shared with other jobs')
    parser.add_argument('--max-load', type=float, default=1.5)
    parser.add_argument('--no-onnx', action='store_true')
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.repeats < 1:
        parser.error('--seeds and --repeats must be >= 1')
    if args.clock == 'cpu' and args.threads != 1:
        parser.error('--clock cpu measures the calling thread: use it with --threads 1')
    args.gpus = 1  # train_one's launcher: a plain process

    if not osp.isfile(args.latency_model):
        load = wait_for_quiet(args.max_load)
        print(f'no latency model at {args.latency_model}: fitting one (load {load:.2f})',
              flush=True)
        subprocess.run([sys.executable, osp.join(REPO, 'tools', 'analysis',
                                                 'calibrate_cost.py'), 'fit',
                        '--out', args.latency_model, '--threads', str(args.threads),
                        '--clock', args.clock,
                        '--samples-out', args.latency_model + '.samples.json'],
                       cwd=REPO, check=True)

    from mmseg_dynopool.datasets import write_synthetic_voc
    if not osp.isdir(osp.join(SYNTH_ROOT, 'JPEGImages')):
        write_synthetic_voc(SYNTH_ROOT, 120, 30, seed=0)
    extra = [f'{loader}.dataset.data_root={SYNTH_ROOT}'
             for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    os.makedirs(args.work_dir, exist_ok=True)
    runs: Dict[str, List[Dict]] = {name: [] for name in CONFIGS}
    for seed in range(args.seeds):  # one training at a time, seed by seed
        for name in ('dp-lat', 'human', 'dp-s'):
            runs[name].append(find_or_train(name, seed, args, extra))

    import mmseg_dynopool  # noqa: F401
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    from mmseg_dynopool import resizing_layers
    from mmseg_dynopool.analysis.runs import mean_std
    from mmseg_dynopool.deploy import freeze_dynopool
    from mmseg_dynopool.models.build import build_model_from_config
    from mmseg_dynopool.models.latency import LatencyModel, count_ops
    latency = LatencyModel.load(args.latency_model)
    ort_latency = (LatencyModel.load(args.ort_latency_model) if args.ort_latency_model
                   else None)
    data_opts = {o.split('=')[0]: o.split('=', 1)[1] for o in extra}
    models, rows = {}, {}
    for name, seeds in runs.items():
        for seed, run in enumerate(seeds):
            model = build_model_from_config(osp.join(REPO, CONFIGS[name]),
                                            run['checkpoint'], data_opts)
            counts = count_ops(model, SHAPE)
            key = f'{name}/{seed}'
            rows[key] = dict(model=name, seed=seed, miou=run['metric'], gmacs=counts.gmacs,
                             pred_ms=latency.predict_counts(counts),
                             checkpoint=run['checkpoint'])
            if ort_latency is not None:
                rows[key]['pred_ort_ms'] = ort_latency.predict_counts(counts)
            models[key] = (freeze_dynopool(model, SHAPE) if resizing_layers(model)
                           else model)
    torch.set_num_threads(args.threads)
    load_before = wait_for_quiet(args.max_load if args.clock == 'wall' else None)
    print(f'timing {len(models)} models ({args.repeats} rounds, {args.threads} threads, '
          f'{args.clock} clock), load average {load_before:.2f}', flush=True)
    times = time_models(models, args.repeats, not args.no_onnx, args.clock)
    load_after = load_1min()
    for key, t in times.items():
        rows[key].update(t)

    def mean(name: str, field: str) -> float:
        return mean_std([r[field] for r in rows.values() if r['model'] == name])['mean']
    human = {f: mean('human', f) for f in ('gmacs', 'pred_ms', 'torch_ms', 'pred_ort_ms',
                                           'ort_ms')
             if all(f in r for r in rows.values())}
    table = []
    for name in CONFIGS:
        miou = mean_std([r['miou'] for r in rows.values() if r['model'] == name])
        entry = dict(model=name, miou=miou['mean'], miou_std=miou['std'],
                     mious=[r['miou'] for r in rows.values() if r['model'] == name])
        for field in human:
            entry[field] = mean(name, field)
            entry[field + '_x'] = entry[field] / human[field]
        table.append(entry)
    lines = [f'Latency job: {args.seeds} seed(s), 96x96, one image, {args.threads} '
             f'thread(s), {args.clock} clock '
             f'(load average {load_before:.2f} before timing, {load_after:.2f} after); '
             f'time ratios to the human model (means over seeds); latency model '
             f'{args.latency_model}',
             f"{'model':<8}{'mIoU':>15}{'GMACs':>8}{'x':>7}{'pred ms':>9}{'x':>7}"
             f"{'torch ms':>10}{'x':>7}{'pred ort':>9}{'x':>7}{'ort ms':>8}{'x':>7}"]
    for e in table:
        line = (f"{e['model']:<8}{e['miou']:>8.2f} +-{e['miou_std']:>5.2f}{e['gmacs']:>8.4f}"
                f"{e['gmacs_x']:>7.3f}{e['pred_ms']:>9.2f}{e['pred_ms_x']:>7.3f}"
                f"{e['torch_ms']:>10.2f}{e['torch_ms_x']:>7.3f}")
        line += (f"{e['pred_ort_ms']:>9.2f}{e['pred_ort_ms_x']:>7.3f}"
                 if 'pred_ort_ms' in e else f"{'-':>9}{'-':>7}")
        if 'ort_ms' in e:
            line += f"{e['ort_ms']:>8.2f}{e['ort_ms_x']:>7.3f}"
        lines.append(line)
        lines.append(f"{'':<8}  mIoU per seed: " + ', '.join(f'{m:.2f}' for m in e['mious']))
    text = '\n'.join(lines)
    print(text, flush=True)
    with open(osp.join(args.work_dir, 'results.json'), 'w') as f:
        json.dump(dict(table=table, rows=rows, text=text, latency_model=latency.to_dict(),
                       loadavg=[load_before, load_after], repeats=args.repeats,
                       threads=args.threads, clock=args.clock), f, indent=2)
    print(f"results: {osp.join(args.work_dir, 'results.json')}")
    return 0


if __name__ == '__main__':
    sys.exit(main())
