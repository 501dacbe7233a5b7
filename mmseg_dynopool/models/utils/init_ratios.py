"""Deprecated module path: moved to :mod:`mmseg_dynopool.models.converter.init_ratios`."""
import warnings

from ..converter.init_ratios import (InitRatios, Ratio, RatioLike, as_ratio, is_ratio,
                                     resolve_init_ratios)

__all__ = ['InitRatios', 'Ratio', 'RatioLike', 'as_ratio', 'is_ratio',
           'resolve_init_ratios']
warnings.warn('mmseg_dynopool.models.utils.init_ratios is deprecated: import from '
              'mmseg_dynopool.models.converter.init_ratios', DeprecationWarning,
              stacklevel=2)
