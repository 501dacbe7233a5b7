"""Deprecated: the DropClass head moved to :mod:`mmseg_dynopool.dropclass.head`.

Kept so that ``from mmseg_dynopool.models.decode_heads.dropclass_head import
DropClassFCNHead`` keeps working; the registered name ``DropClassFCNHead`` is unchanged.
The package itself never imports this module.
"""
import warnings

from ...dropclass.head import DROP_SCHEDULES, DropClassFCNHead, DropClassMixin

warnings.warn('mmseg_dynopool.models.decode_heads.dropclass_head is deprecated: import '
              'DropClassFCNHead, DropClassMixin and DROP_SCHEDULES from '
              'mmseg_dynopool.dropclass', DeprecationWarning, stacklevel=2)

__all__ = ['DROP_SCHEDULES', 'DropClassFCNHead', 'DropClassMixin']
