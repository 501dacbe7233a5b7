"""Model-building utilities: the converter that turns a model's resizing ops into
learnable resizing layers, its probe, hooks and ``init_ratios`` rule."""
from .convert import (PLACEMENTS, Conversion, ConvertedPool, check_level_sizes,
                      convert_to_dynopool, converted_pools, get_conversion, to_pair)
from .init_ratios import as_ratio, resolve_init_ratios
from .resize_hooks import ClearPoolCaches, PoolAfter, PoolBefore

__all__ = ['PLACEMENTS', 'Conversion', 'ConvertedPool', 'check_level_sizes',
           'convert_to_dynopool', 'converted_pools', 'get_conversion', 'to_pair',
           'as_ratio', 'resolve_init_ratios', 'ClearPoolCaches', 'PoolAfter',
           'PoolBefore']
