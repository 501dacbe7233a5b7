"""Build the model of an mm config (mmseg or mmpretrain) for the tools, with a checkpoint.

Shared by the report/plot tools (``analysis/``) and the freeze tool (``deploy/``).
"""
import copy
from typing import Any, Optional, Union

from torch import nn

from ..utils.checkpoint_compat import CheckpointReadError, UnsafeCheckpointError


class CheckpointMismatchError(RuntimeError):
    """A checkpoint does not fit the model built from a config."""


def build_model_from_config(config: Union[str, Any], checkpoint: Optional[str] = None,
                            cfg_options: Optional[dict] = None) -> nn.Module:
    """Build the model of an mm config (mmseg or mmpretrain) and load a checkpoint.

    ``config`` is a path or an ``mmengine.Config``. SyncBN is turned into plain BN (no
    process group here) and the model is returned in eval mode. A checkpoint must fit
    the model exactly (strict loading); otherwise :class:`CheckpointMismatchError` says
    which keys differ. A damaged file raises
    :class:`~mmseg_dynopool.utils.CheckpointReadError`, one with unsafe contents
    :class:`~mmseg_dynopool.utils.UnsafeCheckpointError` (both ``RuntimeError``).
    """
    from mmengine.config import Config
    from mmengine.registry import DefaultScope, init_default_scope
    from mmengine.runner import load_checkpoint

    # A deep copy: building pops keys from the model dict.
    cfg = Config.fromfile(config) if isinstance(config, str) else copy.deepcopy(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    scope = cfg.get('default_scope', 'mmseg')
    if DefaultScope.get_current_instance() is None or \
            DefaultScope.get_current_instance().scope_name != scope:
        init_default_scope(scope)
    if scope == 'mmpretrain':
        from mmpretrain.registry import MODELS
    else:
        from mmseg.registry import MODELS
    model_cfg = cfg.model
    if checkpoint:
        # The checkpoint replaces the pretrained weights (which may be a URL).
        model_cfg.pop('pretrained', None)
    model = MODELS.build(model_cfg)
    _to_plain_bn(model)
    if checkpoint:
        try:
            load_checkpoint(model, checkpoint, map_location='cpu', strict=True,
                            logger='silent')
        except (CheckpointReadError, UnsafeCheckpointError):
            raise  # the file itself is the problem, not its fit to the model
        except RuntimeError as err:
            name = config if isinstance(config, str) else 'the config'
            raise CheckpointMismatchError(
                f'checkpoint {checkpoint} does not match the model of {name}: '
                f'{str(err).strip()}') from err
    model.eval()
    return model


def _to_plain_bn(model: nn.Module) -> None:
    """SyncBN cannot run outside a process group; report on a CPU with plain BN."""
    from mmengine.model import revert_sync_batchnorm
    revert_sync_batchnorm(model)
