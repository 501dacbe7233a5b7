"""Scaling a config for the trade-off sweep: input sizes, the GMACs budget, its unit.

The thesis (Figure 5.2) compares the human-designed model at several input scales with
DynOPool at several costs. This module prepares those configs:

* :func:`scale_pipelines` multiplies every spatial size of the train pipeline
  (``RandomResize``/``Resize`` ``scale``, ``RandomCrop``/``CenterCrop`` ``crop_size``,
  ``Pad`` ``size``, ``RandomResizedCrop``/``ResizeEdge`` ``scale``) and of the data
  preprocessor, and resizes evaluation images by the scale (mmseg: a ``Resize`` with
  ``scale_factor`` before ``LoadAnnotations``, so labels stay at full resolution and
  predictions are scored at the original size; mmpretrain: the test pipeline's sizes);
* :func:`eval_shape`: the input size the model sees at evaluation;
* :func:`set_budget`: the GMACs budget of a config's ``DynOPoolGMACsHook``
  (``target_gmacs``, Eq. 4.8's budget mode);
* :func:`human_gmacs`: the budgets' unit, the human model's GMACs per image;
* :func:`resizing_method`: the curve name of a config's resizing layers.

The sweep itself is :mod:`mmseg_dynopool.analysis.tradeoff`.
"""
import copy
import threading
from typing import Any, List, Sequence

#: Model building, FlopAnalyzer and config dumping run one thread at a time (the sweep
#: drives several training subprocesses from threads).
BUILD_LOCK = threading.Lock()

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


def scale_pipelines(cfg: Any, scale: float) -> Any:
    """A copy of ``cfg`` (an ``mmengine.Config``) whose inputs are ``scale`` times as
    large (see the module doc); ``cfg`` itself is not changed."""
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


def eval_shape(cfg: Any) -> List[int]:
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


def set_budget(cfg: Any, target_gmacs: float) -> Any:
    """A copy of ``cfg`` whose ``DynOPoolGMACsHook`` holds the model to
    ``target_gmacs`` GMACs per image (budget mode, replacing any ``target_ratio``).

    Raises ValueError when the config has no such hook in ``custom_hooks``."""
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
    from ..models.build import build_model_from_config
    return build_model_from_config(cfg)


def human_gmacs(cfg: Any, shape: Sequence[int]) -> float:
    """GMACs per image of the human model of ``cfg`` at ``shape`` (the budgets' unit)."""
    from ..models.cost import count_gmacs
    with BUILD_LOCK:
        return count_gmacs(_build(cfg), tuple(shape))


def resizing_method(cfg: Any) -> str:
    """Curve name of a config with learnable resizing layers: their type, lower case
    (``dynopool``, ``shapeadaptor``, ``diffstride``).

    Raises ValueError for a model without resizing layers or with several types."""
    from ..layers import resizing_layers
    with BUILD_LOCK:
        layers = resizing_layers(_build(cfg))
    if not layers:
        raise ValueError(f'{cfg.filename}: the model has no learnable resizing layer '
                         '(DynOPool, ShapeAdaptor or DiffStride)')
    kinds = {type(m).__name__ for _, m in layers}
    if len(kinds) > 1:
        raise ValueError(f'{cfg.filename}: resizing layers of several types {kinds}')
    return kinds.pop().lower()


__all__ = ['BUILD_LOCK', 'eval_shape', 'human_gmacs', 'resizing_method',
           'scale_pipelines', 'set_budget']
