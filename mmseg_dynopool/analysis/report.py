"""Table 5.4/5.5-style reports of a (DynOPool) segmentation or classification model.

:func:`model_report` measures one model at one input size: every DynOPool's output size
and ratio, the feature-map size of each HRNet resolution level, the total GMACs and the
DynOPools' share of them (Table 5.5), the parameter count. :func:`dynopool_report` does
the same for a config (+ checkpoint) and insists that the model has DynOPool layers;
:func:`format_report` renders it as text. ``tools/analysis/dynopool_report.py`` is the
command-line front end.

GMACs accounting: ``mmengine.analysis.FlopAnalyzer`` counts one multiply-add as one flop.
It does not see the ``'max'`` DynOPool's sampling (a custom autograd function) but would
count the ``'avg'`` one's ``F.interpolate``; so whatever it attributes to DynOPool modules
is removed from its total and every DynOPool *call* is added analytically instead, counted
the way mmengine counts a bilinear resize (:func:`dynopool_call_gmacs`).
"""
import copy
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from ..ops import DynOPool, dynopool_layers


class NoDynOPoolError(ValueError):
    """The model has no DynOPool layer (nothing to report or freeze)."""


class CheckpointMismatchError(RuntimeError):
    """A checkpoint does not fit the model built from a config."""


def dynopool_call_gmacs(channels: int, out_size: Sequence[int]) -> float:
    """GMACs of one DynOPool call on one image producing ``out_size = (h, w)``.

    Counted like mmengine counts bilinear resizes (4 multiply-adds per bilinear sample),
    with 4 samples per output cell (Eq. 4.2), i.e. ``4 * C * 2h * 2w``; the max/mean over
    the four samples is not a MAC (mmengine does not count pooling either).
    """
    h, w = out_size
    return 4.0 * channels * (2 * h) * (2 * w) / 1e9


def dynopool_gmacs(pool: DynOPool, channels: int) -> float:
    """GMACs of one call of ``pool`` at its last output size (see
    :func:`dynopool_call_gmacs`); 0 if the pool has not run yet."""
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


def _count_flops(model: nn.Module, x: torch.Tensor) -> Tuple[float, Dict[str, int]]:
    """Total and per-module flops (= MACs) as ``mmengine.analysis`` counts them."""
    from mmengine.analysis import FlopAnalyzer
    analyzer = FlopAnalyzer(model, (x, ))
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    return float(analyzer.total()), dict(analyzer.by_module())


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
    * ``layers``: one entry per DynOPool, in :func:`~mmseg_dynopool.dynopool_layers`
      order: ``name``, ``size`` (output ``[h, w]`` of its last call, = ``last_size``),
      ``input_size``, ``ratio`` (``[r_h, r_w]``), ``alpha``, ``calls`` (how often it
      ran in one forward: HRNet shares one pool per level), ``gmacs`` (all its calls).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    x = torch.zeros(1, in_channels, *shape, device=device)
    pools = dynopool_layers(model)
    calls: Dict[int, List[Tuple[int, Tuple[int, int], Tuple[int, int]]]] = {
        id(m): [] for _, m in pools}

    def record(module, args, out):
        calls[id(module)].append((int(args[0].shape[1]), tuple(args[0].shape[-2:]),
                                  tuple(out.shape[-2:])))

    levels: List[Tuple[int, int]] = []
    handles = [m.register_forward_hook(record) for _, m in pools]
    handles += _stream_hooks(model, levels)
    try:
        with torch.no_grad():
            model(x)
        for h in handles:
            h.remove()
        handles = []
        with torch.no_grad():
            total_flops, by_module = _count_flops(model, x)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)

    layers = []
    pool_gmacs = 0.0
    seen_by_mmengine = 0.0
    for name, pool in pools:
        own = calls[id(pool)]
        g = sum(dynopool_call_gmacs(c, out) for c, _, out in own)
        pool_gmacs += g
        seen_by_mmengine += by_module.get(name, 0) / 1e9
        layers.append(dict(
            name=name,
            size=[int(v) for v in (pool.last_size or ())],
            input_size=[int(v) for v in (pool.last_input_size or ())],
            ratio=[round(v, 6) for v in pool.ratio.tolist()],
            alpha=[round(v, 6) for v in pool.alpha.detach().tolist()],
            calls=len(own),
            gmacs=g))
    counted = total_flops / 1e9 - seen_by_mmengine
    total = counted + pool_gmacs
    return dict(input_shape=[int(shape[0]), int(shape[1])], gmacs=total,
                counted_gmacs=counted, mmengine_total_gmacs=total_flops / 1e9,
                dynopool_gmacs=pool_gmacs,
                dynopool_share=pool_gmacs / total if total else 0.0,
                params=sum(p.numel() for p in model.parameters()),
                levels=[list(s) for s in levels], layers=layers)


def build_model_from_config(config: Union[str, Any], checkpoint: Optional[str] = None,
                            cfg_options: Optional[dict] = None) -> nn.Module:
    """Build the model of an mm config (mmseg or mmpretrain) and load a checkpoint.

    ``config`` is a path or an ``mmengine.Config``. SyncBN is turned into plain BN (no
    process group here) and the model is returned in eval mode. A checkpoint must fit
    the model exactly (strict loading); otherwise :class:`CheckpointMismatchError` says
    which keys differ.
    """
    from mmengine.config import Config
    from mmengine.registry import DefaultScope, init_default_scope
    from mmengine.runner import load_checkpoint

    # A deep copy: building pops keys from the model dict.
    cfg = Config.fromfile(config) if isinstance(config, str) else copy.deepcopy(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    scope = cfg.get('default_scope', 'mmseg')
    if DefaultScope.get_current_instance() is None or \
            DefaultScope.get_current_instance().scope_name != scope:
        init_default_scope(scope)
    if scope == 'mmpretrain':
        from mmpretrain.registry import MODELS
    else:
        from mmseg.registry import MODELS
    model_cfg = cfg.model
    if checkpoint:
        # The checkpoint replaces the pretrained weights (which may be a URL).
        model_cfg.pop('pretrained', None)
    model = MODELS.build(model_cfg)
    _to_plain_bn(model)
    if checkpoint:
        try:
            load_checkpoint(model, checkpoint, map_location='cpu', strict=True,
                            logger='silent')
        except RuntimeError as err:
            name = config if isinstance(config, str) else 'the config'
            raise CheckpointMismatchError(
                f'checkpoint {checkpoint} does not match the model of {name}: '
                f'{str(err).strip()}') from err
    model.eval()
    return model


def _to_plain_bn(model: nn.Module) -> None:
    """SyncBN cannot run outside a process group; report on a CPU with plain BN."""
    from mmengine.model import revert_sync_batchnorm
    revert_sync_batchnorm(model)


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
    if not dynopool_layers(model):
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

