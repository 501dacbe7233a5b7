from .dropclass_head import DROP_SCHEDULES, DropClassFCNHead, DropClassMixin

__all__ = ['DROP_SCHEDULES', 'DropClassFCNHead', 'DropClassMixin']
