"""Table 5.4/5.5-style reports of a (DynOPool) segmentation or classification model."""
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from ..ops import DynOPool, dynopool_layers
from .gmacs import count_gmacs


def dynopool_gmacs(pool: DynOPool, channels: int) -> float:
    """Per-image GMACs of one DynOPool call, counted like mmengine counts bilinear resizes:
    4 multiply-adds per bilinear sample, 4 samples per output cell (Eq. 4.2); the max over
    the samples is a comparison, not a MAC."""
    h, w = pool.last_size
    return 4.0 * channels * (2 * h) * (2 * w) / 1e9


def _stream_sizes(model: nn.Module, x: torch.Tensor) -> List[Tuple[int, int]]:
    """Feature-map sizes per resolution level of an mmseg HRNet backbone (stem, streams)."""
    backbone = getattr(model, 'backbone', model)
    sizes: List[Tuple[int, int]] = []
    handles = []
    if hasattr(backbone, 'conv1') and hasattr(backbone, 'stage4'):
        def grab(_m, _a, out):
            sizes.append(tuple(out.shape[-2:]))

        def grab_list(_m, _a, out):
            sizes.extend(tuple(o.shape[-2:]) for o in out)

        handles.append(backbone.conv1.register_forward_hook(grab))
        handles.append(backbone.stage4.register_forward_hook(grab_list))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return [(int(h), int(w)) for h, w in sizes]


def model_report(model: nn.Module, shape: Tuple[int, int], in_channels: int = 3
                 ) -> Dict:
    """Sizes, ratios, GMACs and parameter count of ``model`` for one image of ``shape``.

    Returns ``{"gmacs", "dynopool_gmacs", "dynopool_share", "params", "levels",
    "layers": [{"name", "size", "ratio", "input_size", "gmacs"}]}``. ``gmacs`` is what
    ``mmengine.analysis`` counts (DynOPool's own ops are not among them); the DynOPools'
    cost is added analytically by :func:`dynopool_gmacs` and ``dynopool_share`` is their
    part of the sum (Table 5.5).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    x = torch.zeros(1, in_channels, *shape, device=device)
    pools = dynopool_layers(model)
    channels: Dict[int, int] = {}

    def record(module, args):
        channels[id(module)] = int(args[0].shape[1])

    handles = [m.register_forward_pre_hook(record) for _, m in pools]
    try:
        levels = _stream_sizes(model, x)
    finally:
        for h in handles:
            h.remove()
    gmacs = count_gmacs(model, shape, in_channels)
    layers = []
    pool_gmacs = 0.0
    for name, pool in pools:
        g = dynopool_gmacs(pool, channels[id(pool)]) if pool.last_size else 0.0
        pool_gmacs += g
        layers.append(dict(name=name, size=list(pool.last_size or ()),
                           input_size=list(pool.last_input_size or ()),
                           ratio=[round(v, 6) for v in pool.ratio.tolist()], gmacs=g))
    model.train(was_training)
    total = gmacs + pool_gmacs
    return dict(gmacs=total, counted_gmacs=gmacs, dynopool_gmacs=pool_gmacs,
                dynopool_share=pool_gmacs / total if total else 0.0,
                params=sum(p.numel() for p in model.parameters()),
                levels=[list(s) for s in levels], layers=layers)


def build_model_from_config(config: str, checkpoint: Optional[str] = None,
                            cfg_options: Optional[dict] = None) -> nn.Module:
    """Build the model of an mm config (mmseg or mmpretrain) and load a checkpoint."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope, init_default_scope
    from mmengine.runner import load_checkpoint

    cfg = Config.fromfile(config)
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
    model_cfg.pop('pretrained', None) if checkpoint else None
    model = MODELS.build(model_cfg)
    _to_plain_bn(model)
    if checkpoint:
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True)
    model.eval()
    return model


def _to_plain_bn(model: nn.Module) -> None:
    """SyncBN cannot run outside a process group; report on a CPU with plain BN."""
    from mmengine.model import revert_sync_batchnorm
    revert_sync_batchnorm(model)
