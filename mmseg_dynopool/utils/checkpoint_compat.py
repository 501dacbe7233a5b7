"""Make mmengine 0.10.7 load its own checkpoints on torch >= 2.6.

torch 2.6 switched ``torch.load``'s default to ``weights_only=True``; mmengine 0.10.7 calls
``torch.load(filename, map_location=...)`` and its checkpoints hold non-tensor state
(message hub ``HistoryBuffer``s, numpy scalars), so ``--resume`` and ``load_from`` fail with
"Unsupported global". We re-register mmengine's loader for local paths with
``weights_only=False`` explicitly - the trust level mmengine was written for (the user
names the file) - instead of flipping torch's global default with an environment variable.
"""
import os.path as osp

import torch
from mmengine.runner.checkpoint import CheckpointLoader

_INSTALLED = False


def _load_local_checkpoint(filename: str, map_location=None):
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename} can not be found.')
    return torch.load(filename, map_location=map_location, weights_only=False)


def install_checkpoint_compat() -> None:
    """Register the local-file loader (idempotent)."""
    global _INSTALLED
    if _INSTALLED:
        return
    CheckpointLoader.register_scheme(prefixes='', loader=_load_local_checkpoint,
                                     force=True)
    _INSTALLED = True
