"""Build the model of an mm config (mmseg or mmpretrain) for the tools, with a checkpoint.

Shared by the report/plot tools (``analysis/``), the per-class DropClass report
(``dropclass/report.py``) and the freeze tool (``deploy/``): one place that reads a
checkpoint file, finds the model config mmengine saved in it, and loads it strictly
into a model (a checkpoint that does not fit is an error, never a partial load).
"""
import copy
from typing import Any, Optional, Union

from torch import nn

from ..utils.checkpoint_compat import (CheckpointReadError, UnsafeCheckpointError,
                                       load_checkpoint_file)


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
        load_checkpoint_strict(model, checkpoint,
                               config if isinstance(config, str) else 'the config')
    model.eval()
    return model


def load_checkpoint_strict(model: nn.Module, checkpoint: str,
                           source: str = 'the config') -> None:
    """Load ``checkpoint`` into ``model``; every key must fit (strict loading).

    mmengine's Runner loads ``load_from`` non-strictly: missing or unexpected weights
    (e.g. a DropClass head's ``suppress_conv`` from a plain checkpoint) would only be
    warned about and stay at their initial values. Here they are an error.

    Args:
        model: the built model (unwrapped, not a DDP wrapper).
        checkpoint: path of the checkpoint file.
        source: names where the model came from, for the error message.

    Raises:
        CheckpointMismatchError: the keys or shapes differ (the message lists them).
        FileNotFoundError, CheckpointReadError, UnsafeCheckpointError: the file itself
            is missing, damaged or not safe to unpickle.
    """
    from mmengine.runner import load_checkpoint
    try:
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True,
                        logger='silent')
    except (CheckpointReadError, UnsafeCheckpointError):
        raise  # the file itself is the problem, not its fit to the model
    except RuntimeError as err:
        raise CheckpointMismatchError(
            f'checkpoint {checkpoint} does not match the model of {source}: '
            f'{str(err).strip()}') from err


def read_checkpoint(checkpoint: str) -> dict:
    """The content of a checkpoint file, read on the CPU with the package's safe loader
    (:func:`~mmseg_dynopool.utils.checkpoint_compat.load_checkpoint_file`); ``{}`` if the
    file holds something other than a dict.

    Raises FileNotFoundError, :class:`~mmseg_dynopool.utils.CheckpointReadError` or
    :class:`~mmseg_dynopool.utils.UnsafeCheckpointError` for a missing, damaged or
    unsafe file.
    """
    content = load_checkpoint_file(checkpoint, map_location='cpu')
    return content if isinstance(content, dict) else {}


def checkpoint_state_dict(checkpoint: str) -> dict:
    """The weights of a checkpoint: its ``state_dict`` entry (mmengine's layout), or the
    file's dict itself when it has none (a bare ``torch.save(model.state_dict())``)."""
    content = read_checkpoint(checkpoint)
    return content.get('state_dict', content)


def model_cfg_from_checkpoint(checkpoint: str) -> Optional[Any]:
    """The ``model`` config that mmengine's Runner saved in a checkpoint's
    ``meta['cfg']`` (a ``ConfigDict``), or None when the checkpoint has none or it
    cannot be parsed."""
    from mmengine.config import Config
    meta = read_checkpoint(checkpoint).get('meta') or {}
    text = meta.get('cfg') if isinstance(meta, dict) else None
    if not text:
        return None
    try:
        return Config.fromstring(text, '.py').model
    except Exception:  # configs that do not round-trip through their text
        return None


def _to_plain_bn(model: nn.Module) -> None:
    """SyncBN cannot run outside a process group; report on a CPU with plain BN."""
    from mmengine.model import revert_sync_batchnorm
    revert_sync_batchnorm(model)
