"""Deprecated location of the DropClass head, now :mod:`mmseg_dynopool.dropclass`.

The names once exported here (``DropClassFCNHead``, ``DropClassMixin``,
``DROP_SCHEDULES``) still resolve, with a ``DeprecationWarning``; nothing is imported
eagerly (``from .decode_heads import *`` imports nothing), so the package does not load
the deprecated module itself.
"""
import importlib
import warnings

__all__: list = []

_MOVED = ('DROP_SCHEDULES', 'DropClassFCNHead', 'DropClassMixin')


def __getattr__(name: str):
    if name in _MOVED:
        warnings.warn(f'mmseg_dynopool.models.decode_heads.{name} moved to '
                      f'mmseg_dynopool.dropclass.{name}', DeprecationWarning,
                      stacklevel=2)
        return getattr(importlib.import_module('mmseg_dynopool.dropclass'), name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
