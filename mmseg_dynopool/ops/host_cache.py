"""Deprecated module path: moved to :mod:`mmseg_dynopool.layers.host_cache`."""
import importlib
import warnings

_layers = importlib.import_module('mmseg_dynopool.layers')
_moved = importlib.import_module('mmseg_dynopool.layers.host_cache')
globals().update({k: v for k, v in vars(_moved).items() if not k.startswith('__')})
warnings.warn('mmseg_dynopool.ops.host_cache is deprecated: import from '
              'mmseg_dynopool.layers.host_cache', DeprecationWarning, stacklevel=2)
