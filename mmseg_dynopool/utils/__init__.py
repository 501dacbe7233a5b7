from .checkpoint_compat import install_checkpoint_compat

__all__ = ['install_checkpoint_compat']
