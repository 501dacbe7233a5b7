"""Learnable resizing layers: one base class (:class:`ResizingLayer`), DynOPool, and the
baselines (Shape Adaptor, DiffStride) in ``baselines/``.

They are registered in mmengine's root ``MODELS`` (``type='DynOPool'`` etc. in a
``pool_cfg``), use the sampling op of :mod:`mmseg_dynopool.ops`, and are used by the
models (the converter), the cost model, the budget controller and the tools only
through the :class:`ResizingLayer` interface.
"""
import warnings
from typing import List, Tuple

from torch import Tensor, nn

from .base import (ResizingLayer, is_resizing_layer, pool_cfg_arg, resizing_layer_cfg,
                   resizing_layer_class, resizing_layer_type, resizing_layers)
from .baselines import (DiffStride, ShapeAdaptor, shape_adaptor_size_limit,
                        spectral_output_sizes, spectral_pool)
from .dynopool import DynOPool

#: The learnable resizing layer types shipped with the package (a subclass of
#: :class:`ResizingLayer` registered in ``MODELS`` works with every tool too).
RESIZING_LAYERS: Tuple[type, ...] = (DynOPool, ShapeAdaptor, DiffStride)


def dynopool_layers(model: nn.Module) -> List[Tuple[str, ResizingLayer]]:
    """Deprecated name of :func:`resizing_layers` (it always returned all resizing
    layer types, not only DynOPool)."""
    warnings.warn('dynopool_layers() is deprecated: use resizing_layers(), which it '
                  'calls (it finds every ResizingLayer, not only DynOPool)',
                  DeprecationWarning, stacklevel=2)
    return resizing_layers(model)


def ratio_parameter(layer: ResizingLayer) -> Tensor:
    """``layer.ratio_parameter()``, with a clear error for other modules."""
    if not isinstance(layer, ResizingLayer):
        raise TypeError(f'{type(layer).__name__} is not a learnable resizing layer '
                        '(a ResizingLayer: DynOPool, ShapeAdaptor or DiffStride)')
    return layer.ratio_parameter()


def scale_ratio(layer: ResizingLayer, start: Tensor, factor: Tensor) -> None:
    """``layer.scale_ratio(start, factor)``, with a clear error for other modules."""
    if not isinstance(layer, ResizingLayer):
        raise TypeError(f'{type(layer).__name__} is not a learnable resizing layer')
    layer.scale_ratio(start, factor)


__all__ = ['ResizingLayer', 'DynOPool', 'ShapeAdaptor', 'DiffStride', 'RESIZING_LAYERS',
           'resizing_layers', 'is_resizing_layer', 'resizing_layer_cfg',
           'resizing_layer_type', 'resizing_layer_class', 'pool_cfg_arg',
           'ratio_parameter', 'scale_ratio', 'dynopool_layers',
           'shape_adaptor_size_limit', 'spectral_output_sizes', 'spectral_pool']
