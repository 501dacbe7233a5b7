"""Accuracy vs GMACs trade-off curves (thesis Figure 5.2) for any model.

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

Scaling a config (:func:`scale_pipelines`) multiplies every spatial size of the train
pipeline (``RandomResize``/``Resize`` ``scale``, ``RandomCrop``/``CenterCrop``
``crop_size``, ``Pad`` ``size``, ``RandomResizedCrop``/``ResizeEdge`` ``scale``) and of
the data preprocessor, and resizes evaluation images by the scale (mmseg: a ``Resize``
with ``scale_factor`` before ``LoadAnnotations``, so labels stay at full resolution
and predictions are scored at the original size; mmpretrain: the test pipeline's sizes).
"""
import copy
import json
import os
import os.path as osp
import threading
from typing import Dict, List, Optional, Sequence

from .runs import mean_std, train_run

# Config dumping, model building and FlopAnalyzer run one thread at a time.
_DESCRIBE_LOCK = threading.Lock()

_SIZE_KEYS = {
    'RandomResize': 'scale', 'Resize': 'scale', 'RandomCrop': 'crop_size',
    'CenterCrop': 'crop_size', 'Pad': 'size', 'RandomResizedCrop': 'scale',
    'ResizeEdge': 'scale',
}


def _scaled(value, scale: float):
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(round(value * scale))
    if isinstance(value, (list, tuple)):
        return type(value)(int(round(v * scale)) for v in value)
    return value


def _scale_pipeline(pipeline: List[dict], scale: float) -> None:
    for step in pipeline:
        key = _SIZE_KEYS.get(step.get('type'))
        if key and step.get(key) is not None:
            step[key] = _scaled(step[key], scale)
        if step.get('type') == 'RandomChoiceResize' and step.get('scales'):
            step['scales'] = [_scaled(s, scale) for s in step['scales']]


def _dataloaders(cfg) -> List[dict]:
    out = []
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(key)
        if not loader:
            continue
        datasets = [loader['dataset']]
        while datasets:
            ds = datasets.pop()
            if ds.get('datasets'):
                datasets.extend(ds['datasets'])
            elif ds.get('dataset'):
                datasets.append(ds['dataset'])
            else:
                out.append((key, ds))
    return out


def scale_pipelines(cfg, scale: float):
    """A copy of ``cfg`` whose inputs are ``scale`` times as large (see module doc)."""
    cfg = copy.deepcopy(cfg)
    if scale == 1.0:
        return cfg
    scope = cfg.get('default_scope', 'mmseg')
    for key, ds in _dataloaders(cfg):
        pipeline = ds.get('pipeline')
        if pipeline is None:
            continue
        if key == 'train_dataloader' or scope != 'mmseg':
            _scale_pipeline(pipeline, scale)
        else:
            # Resize the image only; annotations are loaded after it at full size.
            has_resize = any(s.get('type') == 'Resize' for s in pipeline)
            if has_resize:
                for step in pipeline:
                    if step.get('type') == 'Resize':
                        step['scale'] = _scaled(step['scale'], scale)
            else:
                load = next(i for i, s in enumerate(pipeline)
                            if s.get('type') == 'LoadImageFromFile')
                pipeline.insert(load + 1, dict(type='Resize', scale_factor=scale,
                                               keep_ratio=True))
                ann = [i for i, s in enumerate(pipeline) if s.get('type') ==
                       'LoadAnnotations']
                if ann and ann[0] < load + 1:
                    raise ValueError('LoadAnnotations before LoadImageFromFile: cannot '
                                     'scale the evaluation images only')
    pre = cfg.model.get('data_preprocessor')
    if pre is not None and pre.get('size') is not None:
        pre['size'] = _scaled(pre['size'], scale)
    if cfg.get('crop_size') is not None:
        cfg.crop_size = _scaled(cfg.crop_size, scale)
    return cfg


def eval_shape(cfg) -> List[int]:
    """The (H, W) the model sees at evaluation: the crop / preprocessor size."""
    pre = cfg.model.get('data_preprocessor') or {}
    size = cfg.get('crop_size') or pre.get('size')
    if size is None:
        for step in cfg.get('test_dataloader', {}).get('dataset', {}).get('pipeline', []):
            if step.get('type') in ('CenterCrop', ):
                size = step['crop_size']
    if size is None:
        raise ValueError('cannot tell the evaluation input size: set crop_size or '
                         'model.data_preprocessor.size in the config')
    size = [size, size] if isinstance(size, int) else list(size)
    return [int(size[0]), int(size[1])]


def _set_budget(cfg, target_gmacs: float):
    cfg = copy.deepcopy(cfg)
    hooks = [h for h in cfg.get('custom_hooks', []) if h.get('type') ==
             'DynOPoolGMACsHook']
    if not hooks:
        raise ValueError(f'{cfg.filename}: the config has no DynOPoolGMACsHook in '
                         'custom_hooks')
    hooks[0].pop('target_ratio', None)
    hooks[0]['target_gmacs'] = float(target_gmacs)
    return cfg


def _build(cfg):
    from .report import build_model_from_config
    return build_model_from_config(cfg)


def human_gmacs(cfg, shape: Sequence[int]) -> float:
    """GMACs per image of the human model of ``cfg`` at ``shape`` (the budgets' unit)."""
    from ..models.cost import count_gmacs
    with _DESCRIBE_LOCK:
        return count_gmacs(_build(cfg), tuple(shape))


def resizing_method(cfg) -> str:
    """Curve name of a config with learnable resizing layers: their type, lower case
    (``dynopool``, ``shapeadaptor``, ``diffstride``)."""
    from ..ops import dynopool_layers
    with _DESCRIBE_LOCK:
        layers = dynopool_layers(_build(cfg))
    if not layers:
        raise ValueError(f'{cfg.filename}: the model has no learnable resizing layer '
                         '(DynOPool, ShapeAdaptor or DiffStride)')
    kinds = {type(m).__name__ for _, m in layers}
    if len(kinds) > 1:
        raise ValueError(f'{cfg.filename}: resizing layers of several types {kinds}')
    return kinds.pop().lower()


def _describe(result: Dict, shape: Sequence[int]) -> Dict:
    from .report import build_model_from_config, model_report
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
        with _DESCRIBE_LOCK:
            cfg.dump(config)
    result = train_run(config, work_dir, [f'randomness.seed={seed}'], gpus=gpus,
                       label=f'{name} seed {seed}', quiet=quiet)
    if 'gmacs' not in result:
        with _DESCRIBE_LOCK:  # model building / FlopAnalyzer: one at a time
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
                           _set_budget(cfg, target * unit), eval_shape(cfg)))
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


# (key in tradeoff.json, legend, marker, what the point annotation shows)
CURVES = (('human', 'human-designed (input scale)', 'o', 'scale'),
          ('dynopool', 'DynOPool (GMACs budget)', 's', 'target'),
          ('shapeadaptor', 'Shape Adaptor (GMACs budget)', '^', 'target'),
          ('diffstride', 'DiffStride (GMACs budget)', 'D', 'target'))


def plot_tradeoff(data: Dict, path: str, title: Optional[str] = None) -> str:
    """Metric vs GMACs, every curve, error bars = standard deviation over seeds."""
    from .plots import _pyplot
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for key, label, marker, tag in CURVES:
        points = sorted(data.get(key, []), key=lambda p: p['gmacs'])
        if not points:
            continue
        ax.errorbar([p['gmacs'] for p in points], [p['metric'] for p in points],
                    yerr=[p['metric_std'] for p in points],
                    xerr=[p.get('gmacs_std', 0.0) for p in points], marker=marker,
                    capsize=3, label=label)
        for p in points:
            ax.annotate(f"{p[tag]:g}", (p['gmacs'], p['metric']), fontsize=7,
                        textcoords='offset points', xytext=(3, 3))
    metric_key = next((p['metric_key'] for k, *_ in CURVES for p in data.get(k, [])),
                      'metric')
    ax.set_xlabel('GMACs per image')
    ax.set_ylabel(metric_key)
    ax.set_title(title or 'Accuracy vs GMACs (Figure 5.2)')
    ax.grid(alpha=0.3)
    ax.legend()
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches='tight')
    plt.close(fig)
    return path
