"""The entry point: :func:`convert_to_dynopool` runs the converter's passes in order.

It is the one mechanism behind every DynOPool backbone of this package
(``DynOPoolBackbone``, ``DynOPoolHRNet``, the classification backbones); the passes,
one per module of this package, are listed in ``docs/converter.md``.
"""
from typing import Optional, Sequence

from torch import nn

from .attach import attach_pools
from .checks import check_arguments, warn_if_nothing_converted
from .find_ops import find_ops
from .frozen_stages import freeze_with_stages
from .fuse_upsampling import fuse_fixed_upsampling
from .init_ratios import InitRatios, resolve_init_ratios
from .levels import group_levels, resolve_levels
from .merge import merge_consecutive_levels
from .naming import PoolNames, name_levels
from .pool_cfg import build_pool
from .records import CONVERSION_ATTR, Conversion, record_conversion
from .trace import Size, infer_in_channels, trace_forward


def convert_to_dynopool(module: nn.Module,
                        placement: str = 'before',
                        init_ratios: InitRatios = None,
                        pool_cfg: Optional[dict] = None,
                        skip: Sequence[str] = (),
                        merge_consecutive: bool = False,
                        exact_sizes: bool = True,
                        pool_names: PoolNames = None,
                        fuse_upsampling: bool = True,
                        probe_size: Size = (256, 256),
                        in_channels: Optional[int] = None) -> Conversion:
    """Replace the resizing ops of ``module`` (in place) by learnable resizing layers.

    Trace one forward; find the strided convs and poolings; group them by resolution
    level (one pool per level) and keep the levels whose pools reproduce the ops' output
    sizes (Eqs. 5.1-5.3); optionally merge two consecutive levels; name the pools; build
    them at their initial ratios; attach them (a replaced pooling op, hooks on stride-1
    convs or on their activations); drop fixed-factor upsamplings into learned levels;
    freeze the pools of frozen stages; record what was done on ``module``.

    Args:
        module: the model (a backbone, or any module called as ``module(x)``).
        placement: ``'before'`` (Eq. 5.3: pool, then the stride-1 conv; the original's
            GMACs at the initial ratios) or ``'after'`` (Eq. 5.2: the stride-1 conv and
            its norm/activation, then the pool). Pooling ops are replaced in both.
        init_ratios: initial ratios; see :mod:`.init_ratios` (None: ``1 / stride``).
        pool_cfg: config of the resizing layer, built from mmengine's root ``MODELS``
            with ``init_ratio`` added. Default: ``dict(type='DynOPool')``. A level whose
            ops are all ``nn.AvgPool2d`` gets ``aggregation='avg'`` unless set.
        skip: module-name patterns (``fnmatch``; a pattern matching a parent module
            skips everything inside it) of resizing ops to leave alone. Skipping one op
            leaves its whole level alone.
        merge_consecutive: one pool (ratio = product) for two resizing ops in a row with
            only norm/activation modules between them (:mod:`.merge`). Off by default.
        exact_sizes: convert only ops whose output size the pool reproduces at its
            initial ratio for every input size (:mod:`.size_rules`). False converts
            every op whose stride-1 copy keeps the size; sizes at init then follow the
            pool's rule (DynOPool: equal on multiples of the stride).
        pool_names: where each pool is registered: a dict ``{op name: pool path}`` (any
            op of the level may be named) or a callable ``ops -> path or None``
            (:mod:`.naming`). Default: a replaced pooling op's own path, else
            ``<deepest common parent module>.dynopool``.
        fuse_upsampling: replace a fixed-factor upsampling into an explicit resize by
            ``nn.Identity`` when its input lies in a converted level
            (:mod:`.fuse_upsampling`; HRNet's fuse layers).
        probe_size: ``(H, W)`` of the traced forward (on the meta device if possible).
        in_channels: channels of the traced forward; default: the first conv's.

    Returns:
        Conversion: the pools and what was left alone; also stored on ``module`` (see
        :func:`~.records.get_conversion`).

    Raises:
        ValueError: a bad argument (:func:`~.checks.check_arguments`, a bad pool name,
            bad ``init_ratios``); the model is then unchanged.
        RuntimeError: the traced forward fails on a ``1 x in_channels x probe_size``
            input.

    Example:
        >>> import torch
        >>> from mmseg.models.backbones import ResNetV1c
        >>> from mmseg_dynopool.models.converter import check_level_sizes
        >>> model = ResNetV1c(depth=18)
        >>> conversion = convert_to_dynopool(model, placement='before')
        >>> conversion.pool_names[:3]   # stem conv, stem max-pool, layer2's level
        ['dynopool', 'maxpool', 'layer2.0.dynopool']
        >>> sizes = check_level_sizes(model, torch.randn(1, 3, 67, 93))  # one per level
        >>> max(sizes.values())   # the stem conv's pool: as its stride 2, ceil(H / 2)
        (34, 47)
    """
    skip, cfg = check_arguments(module, placement, pool_cfg, skip)
    if in_channels is None:
        in_channels = infer_in_channels(module)
    trace = trace_forward(module, tuple(probe_size), in_channels)
    ops = find_ops(module, trace, skip)
    groups, left_alone = resolve_levels(trace, ops, group_levels(trace, ops),
                                        exact_sizes, cfg)
    if merge_consecutive:
        groups = merge_consecutive_levels(trace, groups, exact_sizes, cfg)
    name_levels(module, groups, placement, pool_names)
    ratios = resolve_init_ratios(init_ratios, [g.human_ratio for g in groups],
                                 [g.name for g in groups])
    pools = [build_pool(cfg, r, [op.module for op in g.members])
             for g, r in zip(groups, ratios)]
    pre_pool = attach_pools(module, trace, groups, pools, placement,
                            {op.name for op in ops if op.kind == 'pool'})
    fused = fuse_fixed_upsampling(module, trace, groups) if fuse_upsampling else []
    frozen = freeze_with_stages(module, trace, groups, pools)
    conversion = record_conversion(trace, groups, ratios, frozen, placement, probe_size,
                                   left_alone, fused, pre_pool)
    warn_if_nothing_converted(conversion)
    setattr(module, CONVERSION_ATTR, conversion)
    return conversion
