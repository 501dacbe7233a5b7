"""Size rules: is a replacement faithful to the strided op's output size?

The converter replaces a strided op by a resizing layer and a stride-1 op (thesis
5.2.1):

* ``Pooling_s -> Pool`` (Eq. 5.1),
* ``ReLU . Conv_s -> Pool . ReLU . Conv_1`` (Eq. 5.2, ``placement='after'``),
* ``Conv_s -> Conv_1 . Pool`` (Eq. 5.3, ``placement='before'``).

Two conditions make that faithful, and both are decided here by evaluating sizes on the
``meta`` device, so they hold for any padding, dilation, ``ceil_mode`` and any layer type
given in ``pool_cfg``:

1. the stride-1 copy of a conv keeps the size (:func:`stride_one_keeps_size`: true for
   'same' padding, false for a patch embedding whose kernel equals its stride), and
2. the pool at its initial ratio gives the op's output size (:func:`compare`): for
   **every** input size (``'exact'``; DynOPool's ``round(H / 2)`` (Eq. 4.1) equals a
   'same'-padded stride-2 conv's ``ceil(H / 2)``), only on multiples of the stride
   (``'multiples'``; ``MaxPool2d(2, 2)`` floors) or not even there (``'differs'``).

A size rule is a function ``(H, W) -> (H', W')``: :func:`module_rule` of an op,
:func:`pool_rule` of a resizing layer (its ``continuous_size`` rounded down, i.e. the
size it outputs), :func:`chain` of several in a row.
"""
import itertools
from typing import Callable, Iterable, Sequence, Tuple

import torch
from torch import nn

from .trace import Size

SizeRule = Callable[[Size], Size]
#: The three verdicts of :func:`compare`, from the best to the worst.
SIZE_RULES = ('exact', 'multiples', 'differs')


def output_size(module: nn.Module, in_size: Size, in_channels: int) -> Size:
    """Spatial output size of ``module`` for an input of ``in_size``, on the meta device
    (the module's parameters are substituted, not moved)."""
    state = {n: torch.empty_like(t, device='meta') for n, t in itertools.chain(
        module.named_parameters(), module.named_buffers())}
    x = torch.empty(1, in_channels, *in_size, device='meta')
    with torch.no_grad():
        out = torch.func.functional_call(module, state, (x, ), strict=False)
    return int(out.shape[-2]), int(out.shape[-1])


def module_rule(module: nn.Module) -> SizeRule:
    """The size rule of a strided conv or pooling module, as it is."""
    channels = module.in_channels if isinstance(module, nn.Conv2d) else 1
    return lambda hw: output_size(module, hw, channels)


def stride_one_keeps_size(conv: nn.Conv2d) -> bool:
    """Whether ``conv`` with stride 1 keeps the input size (so ``Conv_1`` of Eqs. 5.2 and
    5.3 sees the pool's output size); the conv is left as it was."""
    stride = conv.stride
    conv.stride = (1, 1)
    try:
        return all(output_size(conv, hw, conv.in_channels) == hw
                   for hw in ((37, 40), (64, 31)))
    except Exception:
        return False
    finally:
        conv.stride = stride


def pool_rule(pool: nn.Module) -> SizeRule:
    """The size rule of a resizing layer at its current ratio (its ``continuous_size``,
    Eq. 4.1 for DynOPool, rounded down to the size it outputs)."""
    def rule(hw: Size) -> Size:
        h, w = pool.continuous_size(hw)
        return int(h), int(w)
    return rule


def chain(rules: Sequence[SizeRule]) -> SizeRule:
    """The size rule of several ops in a row (first to last)."""
    def rule(hw: Size) -> Size:
        for r in rules:
            hw = r(hw)
        return hw
    return rule


def compare(original: SizeRule, converted: SizeRule, stride: Tuple[int, int]) -> str:
    """``'exact'``: same size for every input size (two full periods per axis are
    checked); ``'multiples'``: same on multiples of the stride; else ``'differs'``."""
    sh, sw = stride
    sizes = [(h, 32 * sw) for h in range(32 * sh, 34 * sh + 1)]
    sizes += [(32 * sh, w) for w in range(32 * sw, 34 * sw + 1)]
    try:
        if all(original(hw) == converted(hw) for hw in sizes):
            return 'exact'
        multiples = [(32 * sh, 32 * sw), (33 * sh, 35 * sw), (35 * sh, 33 * sw)]
        if all(original(hw) == converted(hw) for hw in multiples):
            return 'multiples'
    except Exception:
        pass
    return 'differs'


def worst(verdicts: Iterable[str]) -> str:
    """The verdict of several ops sharing one pool: the worst of theirs."""
    return max(verdicts, key=SIZE_RULES.index, default='exact')
