"""Deprecated: the converter moved to :mod:`mmseg_dynopool.models.converter`.

The names once exported here still import (with a ``DeprecationWarning``); the old
modules ``convert``, ``probe``, ``resize_hooks`` and ``init_ratios`` are shims too.
"""
import warnings

from ..converter import (PLACEMENTS, ClearPoolCaches, Conversion, ConvertedPool,
                         PoolAfter, PoolBefore, as_ratio, check_level_sizes,
                         convert_to_dynopool, converted_pools, get_conversion,
                         resolve_init_ratios, to_pair)

__all__ = ['PLACEMENTS', 'Conversion', 'ConvertedPool', 'check_level_sizes',
           'convert_to_dynopool', 'converted_pools', 'get_conversion', 'to_pair',
           'as_ratio', 'resolve_init_ratios', 'ClearPoolCaches', 'PoolAfter',
           'PoolBefore']
warnings.warn('mmseg_dynopool.models.utils is deprecated: import from '
              'mmseg_dynopool.models.converter', DeprecationWarning, stacklevel=2)
