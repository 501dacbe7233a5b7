"""The common interface of the learnable resizing layers: DynOPool, ShapeAdaptor and
DiffStride.

Every tool that takes a DynOPool model (the GMACs hook, the cost model, the report, the
plot and freeze tools) finds the layers with :func:`dynopool_layers` and uses only what
all three expose:

* ``init_ratio``, ``ratio`` (detached ``(r_h, r_w)``), ``last_size``,
  ``last_input_size``;
* ``continuous_size(in_size, in_values=None)``: the straight-through output size,
  differentiable w.r.t. the layer's parameter (Eq. 4.7's estimate); ``in_values`` are
  the integer input sizes when the host knows them (no device read);
* ``reset_parameters_to_initial()``;
* the raw learnable parameter, :func:`ratio_parameter` (DynOPool's and ShapeAdaptor's
  ``alpha``, DiffStride's ``stride``), and :func:`scale_ratio`, which sets it so that
  the ratio is a given multiple of the ratio at a saved parameter value (the budget
  projection of the GMACs hook);
* the own cost rule, in :func:`mmseg_dynopool.models.cost.resize_call_gmacs`.
"""
import math
from typing import List, Optional, Tuple

import torch
from torch import Tensor, nn

from .diffstride import DiffStride
from .dynopool import DynOPool
from .shape_adaptor import ShapeAdaptor

#: The learnable resizing layer types the tools accept.
RESIZING_LAYERS: Tuple[type, ...] = (DynOPool, ShapeAdaptor, DiffStride)
#: Their registered names, the ``type`` of a layer config.
RESIZING_LAYER_TYPES: Tuple[str, ...] = tuple(t.__name__ for t in RESIZING_LAYERS)


def resizing_layer_type(layer_type) -> str:
    """The registered name of a learnable resizing layer type, given by name or class
    (one of :data:`RESIZING_LAYER_TYPES`); anything else is a ``ValueError``."""
    if isinstance(layer_type, type) and layer_type in RESIZING_LAYERS:
        return layer_type.__name__
    if isinstance(layer_type, str) and layer_type in RESIZING_LAYER_TYPES:
        return layer_type
    raise ValueError(f'unknown resizing layer type {layer_type!r}: the type must be one '
                     f'of {", ".join(RESIZING_LAYER_TYPES)}')


def resizing_layer_cfg(cfg: Optional[dict], arg: str = 'dynopool_cfg') -> dict:
    """A backbone's layer config ``cfg`` (argument ``arg``) checked and completed: a copy
    with ``type`` validated by :func:`resizing_layer_type` (default ``'DynOPool'``).
    ``init_ratio`` is refused: the backbones set it through ``init_ratios``."""
    cfg = dict(cfg or {})
    if 'init_ratio' in cfg:
        raise ValueError(f'{arg} must not set init_ratio; use init_ratios')
    cfg['type'] = resizing_layer_type(cfg.get('type', 'DynOPool'))
    return cfg


def is_resizing_layer(module) -> bool:
    """Whether ``module`` is a learnable resizing layer (see :data:`RESIZING_LAYERS`)."""
    return isinstance(module, RESIZING_LAYERS)


def dynopool_layers(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """The distinct learnable resizing layers of ``model`` as ``(name, module)`` pairs.

    Despite the name (kept for compatibility) this finds every layer type of
    :data:`RESIZING_LAYERS`: DynOPool, ShapeAdaptor and DiffStride. Order is that of
    ``model.named_modules()`` (registration order), stable across runs; a shared
    instance appears once, under the first name it is reachable by.
    """
    return [(name, m) for name, m in model.named_modules() if is_resizing_layer(m)]


def ratio_parameter(layer: nn.Module) -> Tensor:
    """The layer's learnable parameter that sets its ratio (``alpha`` or ``stride``)."""
    if isinstance(layer, DiffStride):
        return layer.stride
    if isinstance(layer, (DynOPool, ShapeAdaptor)):
        return layer.alpha
    raise TypeError(f'{type(layer).__name__} is not a learnable resizing layer '
                    '(DynOPool, ShapeAdaptor or DiffStride)')


@torch.no_grad()
def scale_ratio(layer: nn.Module, start: Tensor, factor: Tensor) -> None:
    """Set ``layer``'s parameter so that its ratio is ``factor`` (``(f_h, f_w)``) times
    the ratio at parameter value ``start``, clamped to the layer's allowed range.

    DynOPool: ``alpha = start / factor`` clamped to ``[1 / max_ratio, 1 / min_ratio]``.
    DiffStride: ``stride = start / factor`` clamped to its stride bounds (one shared
    stride: divided by ``sqrt(f_h f_w)``). ShapeAdaptor (one scale for both axes): the
    scale ``s(start) * sqrt(f_h f_w)`` clamped to ``[min(r1, r2), max(r1, r2)]``.
    """
    factor = factor.to(start)
    if isinstance(layer, DynOPool):
        layer.alpha.copy_((start / factor).clamp(1.0 / layer.max_ratio,
                                                 1.0 / layer.min_ratio))
        layer.guard_alpha()
    elif isinstance(layer, DiffStride):
        f = factor if start.numel() == 2 else factor.prod().sqrt().view(1)
        layer.stride.copy_((start / f).clamp(layer.lower_limit_stride,
                                             layer.upper_limit_stride))
        layer.guard_stride()
    elif isinstance(layer, ShapeAdaptor):
        w = torch.sigmoid(start.double())
        s0 = float(w * layer.r1 + (1 - w) * layer.r2)
        s = s0 * math.sqrt(float(factor[0]) * float(factor[-1]))
        s = min(max(s, min(layer.r1, layer.r2)), max(layer.r1, layer.r2))
        layer.alpha.fill_(ShapeAdaptor.alpha_for_ratio(s, layer.r1, layer.r2, 1e-6))
    else:
        raise TypeError(f'{type(layer).__name__} is not a learnable resizing layer')
