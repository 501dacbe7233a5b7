"""The DynOPool sampling op (Eqs. 4.2-4.6): the front (:mod:`.functional`), the
registered operators (:mod:`.library`), the query geometry, the plain-autograd
reference, and one kernel folder per backend (``cpu/``, ``triton/``, ``native.py``).

The layers that use it live in :mod:`mmseg_dynopool.layers`; ``ops`` imports nothing
else of the package. The layer names once exported here (``DynOPool``, ``ShapeAdaptor``,
``DiffStride``, ``dynopool_layers``, ...) still resolve, with a ``DeprecationWarning``.
"""
import importlib
import warnings

from .functional import (dynopool_sample, dynopool_sample_reference, output_size,
                         query_positions, ste_round)

__all__ = ['dynopool_sample', 'dynopool_sample_reference', 'output_size',
           'query_positions', 'ste_round']

# Names that moved to mmseg_dynopool.layers (resolved lazily: ops must not import the
# layers at import time, they import ops).
_MOVED = ('DynOPool', 'ShapeAdaptor', 'DiffStride', 'RESIZING_LAYERS', 'dynopool_layers',
          'is_resizing_layer', 'ratio_parameter', 'scale_ratio', 'spectral_output_sizes',
          'spectral_pool', 'shape_adaptor_size_limit')


def __getattr__(name: str):
    if name in _MOVED:
        warnings.warn(f'mmseg_dynopool.ops.{name} moved to mmseg_dynopool.layers.{name}',
                      DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module('mmseg_dynopool.layers'), name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
