from .checkpoint_compat import (TRUSTED_ENV, CheckpointReadError, UnsafeCheckpointError,
                                checkpoint_safe_globals, install_checkpoint_compat,
                                load_checkpoint_file)

__all__ = ['TRUSTED_ENV', 'CheckpointReadError', 'UnsafeCheckpointError',
           'checkpoint_safe_globals', 'install_checkpoint_compat', 'load_checkpoint_file']
