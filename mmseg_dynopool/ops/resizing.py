"""Deprecated module path: moved to :mod:`mmseg_dynopool.layers.base`."""
import importlib
import warnings

_layers = importlib.import_module('mmseg_dynopool.layers')
_moved = importlib.import_module('mmseg_dynopool.layers.base')
globals().update({k: v for k, v in vars(_moved).items() if not k.startswith('__')})
globals().update({k: getattr(_layers, k) for k in _layers.__all__})
warnings.warn('mmseg_dynopool.ops.resizing is deprecated: import from '
              'mmseg_dynopool.layers.base', DeprecationWarning, stacklevel=2)
