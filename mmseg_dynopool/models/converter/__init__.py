"""The converter: a model's resizing ops -> learnable resizing layers, as passes.

:func:`convert_to_dynopool` (:mod:`.convert`) runs the passes in order, one per module:
:mod:`.trace` (one traced forward, levels of the feature maps), :mod:`.find_ops`
(strided convs and poolings), :mod:`.levels` (one pool per level, which levels convert),
:mod:`.size_rules` (faithful sizes, Eqs. 5.1-5.3), :mod:`.merge` (optional: two ops in a
row, one pool), :mod:`.naming` (pool paths), :mod:`.init_ratios` (initial ratios),
:mod:`.pool_cfg` (building the layers), :mod:`.placement` and :mod:`.attach` (where the
pools go, hooks from :mod:`.hooks`), :mod:`.fuse_upsampling`, :mod:`.frozen_stages`,
:mod:`.records` (the :class:`Conversion`) and :mod:`.checks` (arguments, the runtime
level-size check). ``docs/converter.md`` describes the rules.
"""
from .checks import check_level_sizes
from .convert import convert_to_dynopool
from .hooks import ClearPoolCaches, PoolAfter, PoolBefore
from .init_ratios import InitRatios, Ratio, as_ratio, resolve_init_ratios
from .match_utils import to_pair
from .placement import PLACEMENTS
from .records import (CONVERSION_ATTR, Conversion, ConvertedPool, converted_pools,
                      get_conversion)
from .trace import Trace, trace_forward

__all__ = ['convert_to_dynopool', 'check_level_sizes', 'Conversion', 'ConvertedPool',
           'get_conversion', 'converted_pools', 'CONVERSION_ATTR', 'PLACEMENTS',
           'ClearPoolCaches', 'PoolAfter', 'PoolBefore', 'InitRatios', 'Ratio',
           'as_ratio', 'resolve_init_ratios', 'to_pair', 'Trace', 'trace_forward']
