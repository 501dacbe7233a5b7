"""What kind of module is this: the predicates the converter's passes share.

No pass of its own: :mod:`.find_ops` asks which modules are resizing ops, :mod:`.merge`
and :mod:`.placement` which modules only act per position (a norm or an activation, the
modules a pool may move across), :mod:`.naming` which modules are containers (a pool
registered in one would run in its forward), :mod:`.fuse_upsampling` which modules are
fixed-factor upsamplings.
"""
import fnmatch
from typing import Optional, Sequence, Tuple, Union

from torch import nn

#: Pooling modules that are resizing ops when their stride is >= 2 (Eq. 5.1).
POOLING_TYPES = (nn.MaxPool2d, nn.AvgPool2d)


def to_pair(value: Union[int, Sequence[int]]) -> Tuple[int, int]:
    """A stride/kernel argument (int or pair) as an ``(h, w)`` tuple of ints."""
    if isinstance(value, (tuple, list)):
        return int(value[0]), int(value[-1])
    return int(value), int(value)


def is_container(module: nn.Module) -> bool:
    """A module whose forward runs its children in turn (``Sequential``, ``ModuleList``,
    ``ModuleDict``) or mmcv's ``ConvModule``: no place for a pool of a level."""
    from mmcv.cnn import ConvModule
    return isinstance(module, (nn.Sequential, nn.ModuleList, nn.ModuleDict, ConvModule))


def is_elementwise(module: nn.Module) -> bool:
    """Normalisation or activation modules: they keep the size and act per position."""
    if isinstance(module, nn.MultiheadAttention):
        return False
    if isinstance(module, (nn.modules.batchnorm._NormBase, nn.GroupNorm)):
        return True
    return type(module).__module__ == 'torch.nn.modules.activation' or \
        type(module).__name__ in ('Swish', 'HSwish', 'HSigmoid', 'Clamp')


def is_upsampling(module: nn.Module) -> bool:
    """``nn.Upsample`` or mmseg's ``Upsample`` (a ``size`` or a ``scale_factor``)."""
    if isinstance(module, nn.Upsample):
        return True
    return type(module).__name__ == 'Upsample' and hasattr(module, 'scale_factor') \
        and hasattr(module, 'size')


def matching_pattern(name: str, patterns: Sequence[str]) -> Optional[str]:
    """The first ``fnmatch`` pattern matching ``name`` or one of its parent modules."""
    parts = name.split('.')
    prefixes = ['.'.join(parts[:i]) for i in range(1, len(parts) + 1)]
    for pattern in patterns:
        if any(fnmatch.fnmatchcase(p, pattern) for p in prefixes):
            return pattern
    return None
