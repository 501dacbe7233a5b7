"""The accuracy vs GMACs trade-off sweep (thesis Figure 5.2) for any model.

The human-designed model is trained and evaluated at several input scales (the thesis
varies the input resolution of the human model, as NAS methods do); the DynOPool model
- and, optionally, the same backbone with Shape Adaptor or DiffStride layers
(``baselines``, docs/baselines.md) - at several GMACs budgets, instead of the thesis'
sweep over lambda, which does not say in advance what cost it gives. A budget ``t`` is
``t`` times the human model's GMACs at scale 1 (``DynOPoolGMACsHook(target_gmacs=...)``),
the same absolute cost for every method whatever its initial cost. Every point
is trained ``seeds`` times through the OpenMMLab ``tools/train.py`` (see
:mod:`mmseg_dynopool.analysis.runs`); the JSON and the plot give the mean and the
standard deviation over seeds. Each trained model's GMACs are counted at its evaluation
input size: ``scale x crop`` for the human model, the crop for DynOPool.

The configs of the points are made by :mod:`mmseg_dynopool.analysis.config_scaling`
(input scale, budget, its unit); the plot is
:func:`mmseg_dynopool.analysis.plots.plot_tradeoff`.
"""
import importlib
import json
import os
import os.path as osp
import warnings
from typing import Dict, List, Optional, Sequence

from .config_scaling import (BUILD_LOCK, eval_shape, human_gmacs, resizing_method,
                             scale_pipelines, set_budget)
from .plots import plot_tradeoff
from .runs import mean_std, train_run


def _describe(result: Dict, shape: Sequence[int]) -> Dict:
    from ..models.build import build_model_from_config
    from .report import model_report
    model = build_model_from_config(result['config'], result['checkpoint'])
    report = model_report(model, tuple(shape))
    sizes = report['levels'] or [layer['size'] for layer in report['layers']]
    return dict(gmacs=report['gmacs'], sizes=sizes)


def _run_seed(name: str, cfg, work_root: str, seed: int, gpus: int,
              shape: Sequence[int], quiet: bool) -> Dict:
    work_dir = osp.join(work_root, name, f'seed{seed}')
    os.makedirs(work_dir, exist_ok=True)
    config = osp.join(work_dir, 'config.py')
    if not osp.isfile(osp.join(work_dir, 'result.json')):
        with BUILD_LOCK:
            cfg.dump(config)
    result = train_run(config, work_dir, [f'randomness.seed={seed}'], gpus=gpus,
                       label=f'{name} seed {seed}', quiet=quiet)
    if 'gmacs' not in result:
        with BUILD_LOCK:  # model building / FlopAnalyzer: one at a time
            result.update(_describe(result, shape))
        with open(osp.join(work_dir, 'result.json'), 'w') as f:
            json.dump(result, f, indent=2)
    return result


def _summary(runs: List[Dict], shape: Sequence[int]) -> Dict:
    metric = mean_std([r['metric'] for r in runs])
    gmacs = mean_std([r['gmacs'] for r in runs])
    return dict(metric=metric['mean'], metric_std=metric['std'],
                metrics=[r['metric'] for r in runs], gmacs=gmacs['mean'],
                gmacs_std=gmacs['std'], input_shape=list(shape),
                metric_key=runs[0]['metric_key'], sizes=runs[0]['sizes'],
                sizes_per_seed=[r['sizes'] for r in runs])


def default_jobs() -> int:
    """Runs at once: 2 on a CPU-only machine with >= 2 cores, else 1 (see runs.py)."""
    import torch
    return 2 if not torch.cuda.is_available() and (os.cpu_count() or 1) >= 2 else 1


def tradeoff(human_config: str, dynopool_config: str, work_dir: str,
             scales: Sequence[float] = (0.75, 0.875, 1.0, 1.125, 1.25),
             targets: Sequence[float] = (0.6, 0.8, 1.0, 1.25), seeds: int = 1,
             gpus: int = 1, cfg_options: Sequence[str] = (), jobs: Optional[int] = None,
             quiet: bool = False, baselines: Sequence[str] = ()) -> Dict:
    """Train and evaluate every curve; writes and returns ``tradeoff.json``'s content.

    Curves: ``human`` (one point per scale), ``dynopool`` and one per config in
    ``baselines`` (named by its layer type, e.g. ``shapeadaptor``), one point per
    budget ``target`` x the human GMACs. ``jobs`` runs train at once (threads driving
    subprocesses; default :func:`default_jobs`); with several, each gets
    ``cpu_count // jobs`` threads.
    """
    from concurrent.futures import ThreadPoolExecutor

    from mmengine.config import Config
    if seeds < 1:
        raise ValueError(f'seeds must be >= 1, got {seeds}')
    human = Config.fromfile(human_config)
    options = dict(_parse_options(cfg_options))
    resizing = []  # (curve, cfg)
    for path in (dynopool_config, *baselines):
        cfg = Config.fromfile(path)
        if options:
            cfg.merge_from_dict(options)
        method = resizing_method(cfg)
        if path == dynopool_config and method != 'dynopool':
            raise ValueError(f'{path}: expected DynOPool layers, found {method}; pass '
                             'Shape Adaptor / DiffStride configs as baselines')
        if any(method == m for m, _ in resizing):
            raise ValueError(f'{path}: a second {method} config; one per method')
        resizing.append((method, cfg))
    if options:
        human.merge_from_dict(options)
    unit = human_gmacs(human, eval_shape(human))
    points = []  # (curve, tag value, name, cfg, shape)
    for scale in scales:
        shape = [int(round(v * scale)) for v in eval_shape(human)]
        points.append(('human', float(scale), f'human_scale{scale:g}',
                       scale_pipelines(human, scale), shape))
    for method, cfg in resizing:
        for target in targets:
            points.append((method, float(target), f'{method}_target{target:g}',
                           set_budget(cfg, target * unit), eval_shape(cfg)))
    jobs = jobs or default_jobs()
    if jobs > 1:
        os.environ.setdefault('OMP_NUM_THREADS', str(max(1, (os.cpu_count() or 1) // jobs)))
    os.makedirs(work_dir, exist_ok=True)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [[pool.submit(_run_seed, name, cfg, work_dir, seed, gpus, shape, quiet)
                    for seed in range(seeds)] for _, _, name, cfg, shape in points]
        out: Dict[str, List[Dict]] = {name: [] for name in
                                      ['human'] + [m for m, _ in resizing]}
        for (curve, value, _, _, shape), runs in zip(points, futures):
            tag = 'scale' if curve == 'human' else 'target'
            summary = _summary([f.result() for f in runs], shape)
            if curve != 'human':
                summary['target_gmacs'] = value * unit
            out[curve].append({tag: value, **summary})
            _write(out, work_dir, human_config, dynopool_config, seeds, unit,
                   list(baselines))
    plot_tradeoff(out, osp.join(work_dir, 'tradeoff.png'))
    return out


def _parse_options(options: Sequence[str]):
    """``key=value`` strings as ``tools/train.py --cfg-options`` parses them."""
    from mmengine.config import DictAction
    for item in options:
        if '=' not in item:
            raise ValueError(f'--cfg-options entries must be key=value, got {item!r}')
        key, value = item.split('=', 1)
        yield key, DictAction._parse_iterable(value)


def _write(out: Dict, work_dir: str, human_config: str, dynopool_config: str,
           seeds: int, unit: float, baselines: List[str]) -> None:
    data = dict(out, human_config=human_config, dynopool_config=dynopool_config,
                baseline_configs=baselines, seeds=seeds, human_gmacs=unit)
    with open(osp.join(work_dir, 'tradeoff.json'), 'w') as f:
        json.dump(data, f, indent=2)


# Names that moved with the plot to mmseg_dynopool.analysis.plots.
_MOVED_TO_PLOTS = ('CURVES', )


def __getattr__(name: str):
    if name in _MOVED_TO_PLOTS:
        warnings.warn(f'mmseg_dynopool.analysis.tradeoff.{name} moved to '
                      f'mmseg_dynopool.analysis.plots.{name}', DeprecationWarning,
                      stacklevel=2)
        return getattr(importlib.import_module('mmseg_dynopool.analysis.plots'), name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


__all__ = ['default_jobs', 'tradeoff']
