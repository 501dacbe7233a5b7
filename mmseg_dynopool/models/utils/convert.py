"""Deprecated module path: the converter is :mod:`mmseg_dynopool.models.converter`
(the entry point :mod:`mmseg_dynopool.models.converter.convert`)."""
import warnings

from ..converter.checks import check_level_sizes
from ..converter.convert import convert_to_dynopool
from ..converter.match_utils import POOLING_TYPES, to_pair
from ..converter.placement import PLACEMENTS
from ..converter.records import (CONVERSION_ATTR, Conversion, ConvertedPool,
                                 converted_pools, get_conversion)

__all__ = ['PLACEMENTS', 'POOLING_TYPES', 'CONVERSION_ATTR', 'to_pair', 'ConvertedPool',
           'Conversion', 'convert_to_dynopool', 'get_conversion', 'converted_pools',
           'check_level_sizes']
warnings.warn('mmseg_dynopool.models.utils.convert is deprecated: import from '
              'mmseg_dynopool.models.converter', DeprecationWarning, stacklevel=2)
