"""Fit the latency model of this device (``mmseg_dynopool.models.latency``) and check it.

    # fit: time a set of models and sizes, fit t = a GMACs + b MB + c calls + e
    # layer_calls + d, write the JSON, print each sample's relative error
    python tools/analysis/calibrate_cost.py fit --out work_dirs/latency/cpu.json \
        [--batch 1] [--threads 1] [--clock cpu|wall] [--repeats 9] [--set default|tiny] \
        [--samples-out samples.json]
    # refit from saved samples (no timing)
    python tools/analysis/calibrate_cost.py fit --from-samples samples.json --out X.json
    # check: predicted vs measured time ratio DynOPool / human
    python tools/analysis/calibrate_cost.py check --model work_dirs/latency/cpu.json \
        [--pairs hrnet48 main deeplab] [--repeats 7] [--main-dir work_dirs/main]

What is timed is what a user deploys: the human model, and every DynOPool model frozen
(``mmseg_dynopool.deploy.freeze_dynopool``), in PyTorch eager, eval mode, ``no_grad``,
``--batch`` random images, ``--threads`` intra-op threads; all models of a run
interleaved, one forward each per round, medians over ``--repeats`` rounds. ``--clock
wall`` is wall time (check ``cat /proc/loadavg`` first: on a busy machine it measures
the other jobs); ``--clock cpu`` (with ``--threads 1``) is the CPU time of the one
thread that does the work, which a machine shared with other jobs disturbs far less
(it still shares caches and memory bandwidth). The counts (GMACs, megabytes written,
operator calls, resizing-layer calls) come from a probe forward of the live model
(``count_ops``). ``check`` uses the model's batch, threads and clock unless told.

The fit samples (``--set default``): the main job's tiny HRNet (human at 64 / 96 / 128,
DynOPool at 96 with all ratios scaled by 0.85-1.1 and at random per-level ratios, at 64
and 128), FCN-HRNetV2-W48 (human at 224 and 288, DynOPool at 224 with Table 5.4's
ratios and at 288 with its ratios x0.95) and DeepLabV3+ R50-D8 (human at 224, DynOPool
with its ratios x0.9 at 224 and x0.95 at 288): none at a size or ratio the check uses.
``--set tiny``: the tiny HRNet samples only.

The check pairs: ``hrnet48`` (HRNet-W48 480x480, Table 5.4's DP-S sizes), ``main`` (the
main job's tiny HRNet at 96x96: the human and DP-S checkpoints of
``--main-dir/<model>/seed0`` if they exist, else the DP-S config at its budget-projected
sizes against the human config) and ``deeplab`` (DeepLabV3+ R50-D8 512x512, pools
scaled to <= 0.84x the human GMACs), built by ``tools/benchmark/bench_deploy.py``.
"""
import argparse
import copy
import json
import os
import os.path as osp
import random
import statistics
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

HERE = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(osp.dirname(HERE))
sys.path.insert(0, osp.join(REPO, 'tools', 'benchmark'))
sys.path.insert(0, REPO)

TINY_HUMAN = osp.join(REPO, 'configs', 'synthetic', 'fcn_hr18tiny_1xb8-600it_synthvoc-96x96.py')
TINY_DP = osp.join(REPO, 'configs', 'synthetic',
                   'fcn_dynopool-hr18tiny_1xb8-600it_synthvoc-96x96.py')
TINY_DP_S = osp.join(REPO, 'configs', 'synthetic',
                     'fcn_dynopool-s-hr18tiny_1xb8-600it_synthvoc-96x96.py')
#: The main job's DP-S budget (configs/synthetic/fcn_dynopool-s-...: absolute GMACs).
MAIN_DP_S_GMACS = 0.09178 * 69.39 / 82.55


# ------------------------------------------------------------------------ models
#: What is timed: PyTorch eager, or the model exported to ONNX in onnxruntime (CPU).
RUNTIMES = ('pytorch-eager', 'onnxruntime')


class Sample:
    """One timed model: its name, input size, counts (per image) and the callable timed
    (the frozen model for DynOPool models; in onnxruntime its ONNX export)."""

    def __init__(self, name: str, model: nn.Module, shape: Tuple[int, int],
                 runtime: str = 'pytorch-eager', threads: int = 1) -> None:
        from mmseg_dynopool import resizing_layers
        from mmseg_dynopool.deploy import freeze_dynopool
        from mmseg_dynopool.deploy.onnx import TensorForward, export_onnx
        from mmseg_dynopool.models.latency import count_ops
        self.name, self.shape, self.runtime = name, tuple(shape), runtime
        self.counts = count_ops(model, shape)
        timed = freeze_dynopool(model, shape) if resizing_layers(model) else model
        if runtime == 'onnxruntime':
            import onnxruntime as ort
            folder = tempfile.mkdtemp(prefix='calibrate_cost_')
            path = export_onnx(timed, shape, osp.join(folder, 'model.onnx'))
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.log_severity_level = 3
            self.session = ort.InferenceSession(path, options,
                                                providers=['CPUExecutionProvider'])
            self.module = None
        else:
            self.module = TensorForward(timed).eval()
        self.time_ms: Optional[float] = None

    def runner(self, x: torch.Tensor) -> Callable[[], object]:
        """A call of one forward on ``x``."""
        if self.module is not None:
            return lambda: self.module(x)
        arr = x.numpy()
        return lambda: self.session.run(None, {'input': arr})

    def record(self) -> Dict:
        from dataclasses import asdict
        return dict(name=self.name, shape=list(self.shape), time_ms=self.time_ms,
                    counts=asdict(self.counts))


def _build(cfg: str, ckpt: Optional[str] = None, options: Optional[dict] = None
           ) -> nn.Module:
    from bench_deploy import _build as build
    return build(cfg, ckpt, options)


def scale_layers(model: nn.Module, factors: Sequence[float]) -> nn.Module:
    """Multiply every resizing layer's ratio by its factor (one per layer; a single
    value for all), from its current value; returns ``model``."""
    from mmseg_dynopool import resizing_layers
    from mmseg_dynopool.layers import ratio_parameter, scale_ratio
    layers = [m for _, m in resizing_layers(model)]
    if len(factors) == 1:
        factors = list(factors) * len(layers)
    with torch.no_grad():
        for layer, f in zip(layers, factors):
            scale_ratio(layer, ratio_parameter(layer).detach().clone(), torch.tensor(f))
    return model


def tiny_samples(rng: random.Random) -> List[Tuple[str, Callable[[], nn.Module], int]]:
    out = [(f'tiny human {s}', lambda: _build(TINY_HUMAN), s) for s in (64, 96, 128)]
    for f in (0.85, 0.93, 1.0, 1.1):
        out.append((f'tiny dp x{f} 96', lambda f=f: scale_layers(_build(TINY_DP), [f]), 96))
    for k in range(2):
        factors = [rng.uniform(0.85, 1.15) for _ in range(5)]
        out.append((f'tiny dp random{k} 96',
                    lambda fs=factors: scale_layers(_build(TINY_DP), fs), 96))
    out += [(f'tiny dp x1.0 {s}', lambda: _build(TINY_DP), s) for s in (64, 128)]
    return out


def large_samples() -> List[Tuple[str, Callable[[], nn.Module], int]]:
    from bench_deploy import DEEPLAB_DP, DEEPLAB_HUMAN, HRNET_DP, HRNET_HUMAN
    from bench_gpu import table_5_4_ratios
    t54 = {'model.backbone.init_ratios': table_5_4_ratios(480)}
    return [
        ('hrnet48 human 224', lambda: _build(HRNET_HUMAN), 224),
        ('hrnet48 human 288', lambda: _build(HRNET_HUMAN), 288),
        ('hrnet48 dp table5.4 224', lambda: _build(HRNET_DP, options=t54), 224),
        ('hrnet48 dp x0.95 288', lambda: scale_layers(_build(HRNET_DP), [0.95]), 288),
        ('deeplab human 224', lambda: _build(DEEPLAB_HUMAN), 224),
        ('deeplab dp x0.9 224', lambda: scale_layers(_build(DEEPLAB_DP), [0.9]), 224),
        ('deeplab dp x0.95 288', lambda: scale_layers(_build(DEEPLAB_DP), [0.95]), 288),
    ]


# ------------------------------------------------------------------------ timing
#: The clocks: wall time, or the CPU time of the calling thread (with one thread all the
#: work runs there; a process sharing the cores with others is not charged for the time
#: it waits, so the measurement holds on a busy machine).
CLOCKS = {'wall': time.perf_counter, 'cpu': time.thread_time}


def median_times(fns: Dict[str, Callable[[], object]], repeats: int, clock: str = 'wall',
                 warmup: int = 1) -> Dict[str, float]:
    """Median seconds of each callable, run alternately ``repeats`` times after
    ``warmup`` rounds (all of them in every round, so a change of load hits all)."""
    tick = CLOCKS[clock]
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = tick()
            fn()
            times[name].append(tick() - t0)
    return {name: statistics.median(v) for name, v in times.items()}


def time_samples(samples: Sequence[Sample], batch: int, repeats: int,
                 clock: str = 'wall') -> None:
    """Median ms of one forward of each sample, all interleaved; sets
    ``sample.time_ms``."""
    fns = {s.name: s.runner(torch.randn(batch, 3, *s.shape)) for s in samples}
    with torch.no_grad():
        medians = median_times(fns, repeats, clock)
    for s in samples:
        s.time_ms = medians[s.name] * 1e3


def check_clock(clock: str, threads: int) -> None:
    if clock == 'cpu' and threads != 1:
        raise SystemExit('--clock cpu measures the calling thread: use it with --threads 1')


def wait_for_quiet(max_load: Optional[float], max_wait_s: float = 900) -> float:
    """Wait (at most ``max_wait_s``) until the 1-minute load average is below
    ``max_load`` (None: do not wait); return the 1-minute load average then."""
    start = time.time()
    load = load_1min()
    while max_load is not None and load > max_load and time.time() - start < max_wait_s:
        print(f'load average {load:.2f} > {max_load}: waiting 60 s', flush=True)
        time.sleep(60)
        load = load_1min()
    return load


def loadavg() -> str:
    """The 1, 5 and 15-minute load averages as text ('unknown' without /proc)."""
    try:
        with open('/proc/loadavg') as f:
            return ' '.join(f.read().split()[:3])
    except OSError:
        return 'unknown'


def load_1min() -> float:
    """The 1-minute load average (nan without /proc)."""
    text = loadavg()
    return float('nan') if text == 'unknown' else float(text.split()[0])


def print_fit(model, records: Sequence[Dict]) -> None:
    print(f'\nfit ({len(records)} samples, {model.runtime}, batch {model.batch}, '
          f'{model.threads} threads, {model.meta.get("clock")} clock, {model.device}):')
    print(f'  a = {model.per_gmac:.4g} ms/GMAC, b = {model.per_mb:.4g} ms/MB, '
          f'c = {model.per_call * 1e3:.4g} us/call, e = {model.per_layer_call * 1e3:.4g} '
          f'us/resizing-layer call, d = {model.fixed:.4g} ms')
    print(f"  {'sample':<26}{'GMACs':>9}{'MB':>9}{'calls':>7}{'layer':>6}"
          f"{'measured ms':>13}{'predicted':>11}{'rel err':>9}")
    for r, err in zip(records, model.meta['rel_errors']):
        c = r['counts']
        print(f"  {r['name']:<26}{c['gmacs'] * model.batch:>9.3f}"
              f"{c['mb'] * model.batch:>9.2f}{c['calls']:>7}{c['layer_calls']:>6}"
              f"{r['time_ms']:>13.2f}{r['time_ms'] * (1 + err):>11.2f}{err:>+9.3f}")
    errs = [abs(e) for e in model.meta['rel_errors']]
    print(f'  |rel err|: mean {sum(errs) / len(errs):.3f}, max {max(errs):.3f}')


def cmd_fit(args) -> int:
    from mmseg_dynopool.models.latency import (OpCounts, device_description,
                                               fit_latency_model)
    if args.from_samples:
        with open(args.from_samples) as f:
            saved = json.load(f)
        records, batch, threads = saved['samples'], saved['batch'], saved['threads']
        device, load = saved['device'], saved.get('loadavg')
        args.clock = saved.get('clock', 'wall')
        args.runtime = saved.get('runtime', 'pytorch-eager')
    else:
        check_clock(args.clock, args.threads)
        torch.set_num_threads(args.threads)
        batch, threads, device = args.batch, args.threads, device_description('cpu')
        rng = random.Random(args.seed)
        specs = tiny_samples(rng) + (large_samples() if args.set == 'default' else [])
        samples = []
        for name, build, size in specs:
            t0 = time.perf_counter()
            samples.append(Sample(name, build(), (size, size), args.runtime, threads))
            print(f'built and counted {name} ({time.perf_counter() - t0:.1f} s)',
                  flush=True)
        wait_for_quiet(args.max_load)
        load = loadavg()
        print(f'timing {len(samples)} models, batch {batch}, {threads} threads, '
              f'{args.repeats} rounds, {args.clock} clock; load average before: {load}',
              flush=True)
        time_samples(samples, batch, args.repeats, args.clock)
        load = f'{load} before, {loadavg()} after'
        records = [s.record() for s in samples]
        if args.samples_out:
            os.makedirs(osp.dirname(osp.abspath(args.samples_out)), exist_ok=True)
            with open(args.samples_out, 'w') as f:
                json.dump(dict(samples=records, batch=batch, threads=threads,
                               device=device, loadavg=load, clock=args.clock,
                               runtime=args.runtime), f, indent=2)
    counts = [OpCounts(**r['counts']) for r in records]
    model = fit_latency_model(
        counts, [r['time_ms'] for r in records], batch, threads, device, args.runtime,
        meta=dict(samples=[r['name'] for r in records], loadavg=load, clock=args.clock,
                  repeats=getattr(args, 'repeats', None),
                  date=time.strftime('%Y-%m-%d %H:%M')))
    print_fit(model, records)
    model.save(args.out)
    print(f'wrote {args.out}')
    return 0


# ------------------------------------------------------------------------- check
def main_pair(main_dir: str) -> Tuple[nn.Module, nn.Module, str]:
    """The main job's human and DP-S models: trained (seed 0) if their checkpoints exist,
    else the configs with DP-S projected onto its budget."""
    from mmseg_dynopool import resizing_layers
    from mmseg_dynopool.engine.budget import project_to_budget
    from mmseg_dynopool.models.cost import profile_gmacs
    ckpts = {}
    for name in ('human', 'dp-s'):
        folder = osp.join(main_dir, name, 'seed0')
        last = osp.join(folder, 'last_checkpoint')
        if osp.isfile(last):
            with open(last) as f:
                ckpts[name] = f.read().strip()
    if len(ckpts) == 2:
        return (_build(TINY_HUMAN, ckpts['human']), _build(TINY_DP_S, ckpts['dp-s']),
                f'trained, seed 0 ({main_dir})')
    human, dp = _build(TINY_HUMAN), _build(TINY_DP_S)
    layers = [m for _, m in resizing_layers(dp)]
    project_to_budget(layers, profile_gmacs(dp, (96, 96)), MAIN_DP_S_GMACS)
    return human, dp, 'untrained, DP-S projected onto its GMACs budget'


def check_pairs(names: Sequence[str], main_dir: str
                ) -> List[Tuple[str, nn.Module, nn.Module, str, int]]:
    from bench_deploy import deeplab_pair, hrnet48_pair
    out = []
    for name in names:
        if name == 'hrnet48':
            human, dp, note = hrnet48_pair(480)
            out.append((name, human, dp, note, 480))
        elif name == 'deeplab':
            human, dp, note = deeplab_pair(512, 0.84)
            out.append((name, human, dp, note, 512))
        elif name == 'main':
            human, dp, note = main_pair(main_dir)
            out.append((name, human, dp, note, 96))
    return out


def cmd_check(args) -> int:
    from mmseg_dynopool.models.latency import LatencyModel
    model = LatencyModel.load(args.model)
    batch = args.batch or model.batch
    threads = args.threads or model.threads
    if (batch, threads) != (model.batch, model.threads):
        print(f'warning: the model was fitted for batch {model.batch}, {model.threads} '
              f'threads; checking at batch {batch}, {threads} threads')
    clock = args.clock or model.meta.get('clock', 'wall')
    runtime = model.runtime
    check_clock(clock, threads)
    torch.set_num_threads(threads)
    rows = []
    for name, human, dp, note, size in check_pairs(args.pairs, args.main_dir):
        pair = [Sample(f'{name} human', human, (size, size), runtime, threads),
                Sample(f'{name} dp', dp, (size, size), runtime, threads)]
        del human, dp
        wait_for_quiet(args.max_load)
        print(f'{name} at {size}x{size} ({note}); load average {loadavg()}', flush=True)
        time_samples(pair, batch, args.repeats, clock)
        scaled = copy.copy(model)
        scaled.batch = batch
        pred = [scaled.predict_counts(s.counts) for s in pair]
        measured = pair[1].time_ms / pair[0].time_ms
        predicted = pred[1] / pred[0]
        rows.append(dict(pair=name, size=size, note=note,
                         gmacs_ratio=pair[1].counts.gmacs / pair[0].counts.gmacs,
                         human_ms=pair[0].time_ms, dp_ms=pair[1].time_ms,
                         human_pred_ms=pred[0], dp_pred_ms=pred[1],
                         measured_ratio=measured, predicted_ratio=predicted,
                         rel_error=predicted / measured - 1, loadavg=loadavg()))
    print(f'\npredicted vs measured time ratio DynOPool (frozen) / human, {runtime}, '
          f'batch {batch}, {threads} threads, {clock} clock ({args.model}):')
    print(f"{'pair':<9}{'GMACs x':>8}{'human ms':>10}{'pred ms':>9}{'DP ms':>9}"
          f"{'pred ms':>9}{'measured x':>11}{'predicted x':>12}{'rel err':>9}")
    for r in rows:
        print(f"{r['pair']:<9}{r['gmacs_ratio']:>8.3f}{r['human_ms']:>10.1f}"
              f"{r['human_pred_ms']:>9.1f}{r['dp_ms']:>9.1f}{r['dp_pred_ms']:>9.1f}"
              f"{r['measured_ratio']:>11.3f}{r['predicted_ratio']:>12.3f}"
              f"{r['rel_error']:>+9.3f}")
    if args.json_out:
        with open(args.json_out, 'w') as f:
            json.dump(dict(rows=rows, model=args.model, batch=batch, threads=threads,
                           clock=clock, runtime=runtime),
                      f, indent=2)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    sub = parser.add_subparsers(dest='command', required=True)
    fit = sub.add_parser('fit', help='time models and fit the latency model')
    fit.add_argument('--out', required=True, help='the JSON file to write')
    fit.add_argument('--batch', type=int, default=1)
    fit.add_argument('--threads', type=int, default=1)
    fit.add_argument('--repeats', type=int, default=9)
    fit.add_argument('--set', choices=['default', 'tiny'], default='default')
    fit.add_argument('--runtime', choices=RUNTIMES, default='pytorch-eager',
                     help='what is timed (onnxruntime: the ONNX export, CPU)')
    fit.add_argument('--seed', type=int, default=0, help='for the random ratios')
    fit.add_argument('--clock', choices=sorted(CLOCKS), default='cpu',
                     help='wall time, or (with --threads 1) the thread CPU time')
    fit.add_argument('--samples-out', help='also write the timed samples (JSON)')
    fit.add_argument('--from-samples', help='refit from a --samples-out file, no timing')
    check = sub.add_parser('check', help='predicted vs measured ratios DP / human')
    check.add_argument('--model', required=True, help='a JSON file of `fit`')
    check.add_argument('--pairs', nargs='+', default=['hrnet48', 'main', 'deeplab'],
                       choices=['hrnet48', 'main', 'deeplab'])
    check.add_argument('--main-dir', default=osp.join(REPO, 'work_dirs', 'main'))
    check.add_argument('--repeats', type=int, default=7)
    check.add_argument('--batch', type=int, default=None)
    check.add_argument('--threads', type=int, default=None)
    check.add_argument('--clock', choices=sorted(CLOCKS), default=None,
                       help="default: the latency model's")
    check.add_argument('--json-out')
    for sub_parser in (fit, check):
        sub_parser.add_argument('--max-load', type=float, default=None,
                                help='before timing, wait (up to 15 min) until the '
                                '1-minute load average is below this')
    args = parser.parse_args(argv)
    for name in ('repeats', 'batch', 'threads'):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            parser.error(f'--{name} must be >= 1')
    import mmseg_dynopool  # noqa: F401
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    return cmd_fit(args) if args.command == 'fit' else cmd_check(args)


if __name__ == '__main__':
    sys.exit(main())
