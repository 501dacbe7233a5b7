"""Table 5.4/5.5-style reports of a (DynOPool) segmentation or classification model.

:func:`model_report` measures one model at one input size: every DynOPool's output size
and ratio, the feature-map size of each HRNet resolution level, the total GMACs and the
DynOPools' share of them (Table 5.5), the parameter count. :func:`dynopool_report` does
the same for a config (+ checkpoint) and insists that the model has DynOPool layers;
:func:`format_report` renders it as text. ``tools/analysis/dynopool_report.py`` is the
command-line front end.

GMACs accounting is the cost model's (:mod:`mmseg_dynopool.models.cost`):
``mmengine.analysis.FlopAnalyzer`` (one multiply-add = one flop) for every other layer;
whatever it attributes to a resizing layer (DynOPool, ShapeAdaptor, DiffStride) is removed
and every call of such a layer is counted by the one rule,
:func:`~mmseg_dynopool.models.cost.resize_call_gmacs` - the same rule the GMACs hook's
Eq. 4.7 estimate uses.
"""
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from ..models.build import (CheckpointMismatchError,  # noqa: F401
                            build_model_from_config)
from ..models.cost import calls_gmacs, dynopool_call_gmacs, probe_and_count
from ..layers import DynOPool
from ..layers import resizing_layers


class NoDynOPoolError(ValueError):
    """The model has no learnable resizing layer (nothing to report or freeze)."""


def dynopool_gmacs(pool: DynOPool, channels: int) -> float:
    """GMACs of one call of ``pool`` at its last output size (see
    :func:`~mmseg_dynopool.models.cost.dynopool_call_gmacs`); 0 if it has not run."""
    if pool.last_size is None:
        return 0.0
    return dynopool_call_gmacs(channels, pool.last_size)


def _stream_hooks(model: nn.Module, sizes: List[Tuple[int, int]]) -> list:
    """Hooks recording the feature-map size per resolution level of an HRNet backbone
    (mmseg's HRNet or DynOPoolHRNet): the stem (``conv1``'s output) and the streams."""
    backbone = getattr(model, 'backbone', model)
    if not (hasattr(backbone, 'conv1') and hasattr(backbone, 'stage4')):
        return []

    def grab(_m, _a, out):
        sizes.append((int(out.shape[-2]), int(out.shape[-1])))

    def grab_list(_m, _a, out):
        sizes.extend((int(o.shape[-2]), int(o.shape[-1])) for o in out)

    return [backbone.conv1.register_forward_hook(grab),
            backbone.stage4.register_forward_hook(grab_list)]


def model_report(model: nn.Module, shape: Tuple[int, int], in_channels: int = 3
                 ) -> Dict:
    """Sizes, ratios, GMACs and parameter count of ``model`` for one image of ``shape``.

    ``model`` is called as ``model(x)`` (the tensor mode of mmseg segmentors and
    mmpretrain classifiers); it may have no DynOPool at all (a human-designed baseline).

    Returns a dict with

    * ``gmacs``: per-image GMACs = ``counted_gmacs + dynopool_gmacs``;
    * ``counted_gmacs``: what ``mmengine.analysis`` counts for everything but the
      DynOPools (``mmengine_total_gmacs`` is its raw total);
    * ``dynopool_gmacs``: the DynOPools' cost, every call counted analytically;
    * ``dynopool_share``: ``dynopool_gmacs / gmacs`` (Table 5.5);
    * ``params``: number of parameters;
    * ``levels``: ``[h, w]`` of the stem and each stream for HRNet backbones, else ``[]``;
    * ``layers``: one entry per DynOPool, in :func:`~mmseg_dynopool.resizing_layers`
      order: ``name``, ``size`` (output ``[h, w]`` of its last call, = ``last_size``),
      ``input_size``, ``ratio`` (``[r_h, r_w]``), ``alpha``, ``calls`` (how often it
      ran in one forward: HRNet shares one pool per level), ``gmacs`` (all its calls).
    """
    pools = resizing_layers(model)
    levels: List[Tuple[int, int]] = []
    calls, total_flops, by_module = probe_and_count(
        model, shape, in_channels, install=lambda: _stream_hooks(model, levels))

    layers = []
    pool_gmacs = 0.0
    seen_by_mmengine = 0.0
    for name, pool in pools:
        own = calls[id(pool)]
        g = calls_gmacs(pool, own)
        pool_gmacs += g
        seen_by_mmengine += by_module.get(name, 0) / 1e9
        layers.append(dict(
            name=name,
            size=[int(v) for v in (pool.last_size or ())],
            input_size=[int(v) for v in (pool.last_input_size or ())],
            ratio=[round(v, 6) for v in pool.ratio.tolist()],
            calls=len(own),
            gmacs=g, type=type(pool).__name__))
        # The raw parameter: DynOPool's and ShapeAdaptor's alpha, DiffStride's stride.
        for param in ('alpha', 'stride'):
            value = getattr(pool, param, None)
            if isinstance(value, torch.Tensor):
                layers[-1][param] = [round(v, 6) for v in value.detach().tolist()]
    counted = total_flops / 1e9 - seen_by_mmengine
    total = counted + pool_gmacs
    return dict(input_shape=[int(shape[0]), int(shape[1])], gmacs=total,
                counted_gmacs=counted, mmengine_total_gmacs=total_flops / 1e9,
                dynopool_gmacs=pool_gmacs,
                dynopool_share=pool_gmacs / total if total else 0.0,
                params=sum(p.numel() for p in model.parameters()),
                levels=[list(s) for s in levels], layers=layers)


def dynopool_report(config: Union[str, Any], shape: Tuple[int, int],
                    checkpoint: Optional[str] = None,
                    cfg_options: Optional[dict] = None, in_channels: int = 3) -> Dict:
    """:func:`model_report` of a config's model (initial state without ``checkpoint``).

    Raises :class:`NoDynOPoolError` if the model has no DynOPool layer and
    :class:`CheckpointMismatchError` if the checkpoint does not fit the model.
    """
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f'shape must be (H, W) with positive sizes, got {shape!r}')
    model = build_model_from_config(config, checkpoint, cfg_options)
    if not resizing_layers(model):
        name = config if isinstance(config, str) else 'the config'
        raise NoDynOPoolError(
            f'the model of {name} has no DynOPool layer: nothing to report. Use a config '
            'with a DynOPool backbone (e.g. DynOPoolHRNet) or model_report() for plain '
            'models.')
    report = model_report(model, tuple(shape), in_channels)
    report.update(config=config if isinstance(config, str) else None,
                  checkpoint=checkpoint, state='checkpoint' if checkpoint else 'initial')
    return report


def _fmt_size(size: Sequence[int]) -> str:
    return 'x'.join(str(v) for v in size) if size else '-'


def format_report(report: Dict) -> str:
    """Render a :func:`model_report` / :func:`dynopool_report` dict as a text table."""
    h, w = report.get('input_shape', ('?', '?'))
    source = report.get('checkpoint') or 'initial state (no checkpoint)'
    lines = [f'DynOPool report at {h}x{w} per image; weights: {source}']
    if report.get('config'):
        lines.append(f'config: {report["config"]}')
    name_w = max([len('DynOPool')] + [len(layer['name']) for layer in report['layers']])
    lines.append(f"{'DynOPool':<{name_w}}  {'input':>9}  {'output':>9}  {'r_h':>7}  "
                 f"{'r_w':>7}  {'calls':>5}  {'GMACs':>9}")
    for layer in report['layers']:
        r_h, r_w = layer['ratio']
        lines.append(f"{layer['name']:<{name_w}}  {_fmt_size(layer['input_size']):>9}  "
                     f"{_fmt_size(layer['size']):>9}  {r_h:>7.4f}  {r_w:>7.4f}  "
                     f"{layer['calls']:>5}  {layer['gmacs']:>9.6f}")
    if report.get('levels'):
        lines.append('feature-map sizes (stem, streams): '
                     + ' '.join(f'[{s[0]},{s[1]}]' for s in report['levels']))
    share = report['dynopool_share'] * 100
    lines.append(f"GMACs: {report['gmacs']:.4f} = {report['counted_gmacs']:.4f} "
                 f"(mmengine.analysis, other layers) + {report['dynopool_gmacs']:.6f} "
                 f"(DynOPool, {share:.2f} %)")
    params = report['params']
    lines.append(f'parameters: {params:,} ({params / 1e6:.3f} M)')
    return '\n'.join(lines)


def training_input_shape(cfg: Any) -> Optional[Tuple[int, int]]:
    """The training input size ``(H, W)`` of a config, or None if it does not say.

    Looked up in ``model.data_preprocessor.size`` (what the network is fed), the
    top-level ``crop_size``, then a crop step of the training pipeline.
    """
    def pair(value) -> Optional[Tuple[int, int]]:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return int(value), int(value)
        if isinstance(value, (tuple, list)) and len(value) == 2 and all(
                isinstance(v, (int, float)) for v in value):
            return int(value[0]), int(value[1])
        return None

    preproc = cfg.get('model', {}).get('data_preprocessor') or {}
    for candidate in (preproc.get('size'), cfg.get('crop_size')):
        found = pair(candidate)
        if found:
            return found
    pipeline = cfg.get('train_pipeline') or \
        cfg.get('train_dataloader', {}).get('dataset', {}).get('pipeline') or []
    for step in pipeline:
        kind = str(step.get('type', ''))
        if 'Crop' in kind:
            for key in ('crop_size', 'scale', 'size'):
                found = pair(step.get(key))
                if found:
                    # mmpretrain's scale is (W, H) for non-square crops; crops are square
                    # in practice, and mmseg's crop_size is (H, W).
                    return found
    return None

