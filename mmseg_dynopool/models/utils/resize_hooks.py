"""Deprecated module path: moved to :mod:`mmseg_dynopool.models.converter.hooks`."""
import warnings

from ..converter.hooks import ClearPoolCaches, PoolAfter, PoolBefore, _PoolHook

__all__ = ['ClearPoolCaches', 'PoolAfter', 'PoolBefore', '_PoolHook']
warnings.warn('mmseg_dynopool.models.utils.resize_hooks is deprecated: import from '
              'mmseg_dynopool.models.converter.hooks', DeprecationWarning, stacklevel=2)
