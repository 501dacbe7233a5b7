"""Frozen stages keep their resolutions: the pools of frozen ops are frozen too.

After the rewrite the converter calls the model's ``_freeze_stages()`` (the OpenMMLab
convention; every module's ``training`` flag is restored) and freezes a pool's
parameters when any of its ops is frozen: a conv whose parameters all have
``requires_grad=False``, or a pooling op whose closest conv before it in forward order
is. (This is the stage ``requires_grad`` meaning of "freeze"; neither the GMACs hook's
freezing of the ratios nor the deployment's fixed-size model.)
"""
from typing import List, Sequence

from torch import nn

from .find_ops import ResizingOp
from .levels import LevelGroup
from .trace import Trace


def run_freeze_stages(root: nn.Module) -> None:
    """Call ``root._freeze_stages()`` if it has one, keeping every ``training`` flag."""
    freeze = getattr(root, '_freeze_stages', None)
    if not callable(freeze):
        return
    flags = {m: m.training for m in root.modules()}
    try:
        freeze()
    except TypeError:
        pass
    for m, flag in flags.items():
        m.training = flag


def is_frozen(op: ResizingOp, trace: Trace) -> bool:
    """A conv is frozen when none of its parameters learns; a pooling op takes the
    state of the closest conv before it in forward order."""
    module = op.module
    if op.kind == 'pool':
        module = next((c.module for c in reversed(trace.calls[:op.call.index])
                       if isinstance(c.module, nn.Conv2d)), None)
        if module is None:
            return False
    params = list(module.parameters())
    return bool(params) and not any(p.requires_grad for p in params)


def freeze_with_stages(root: nn.Module, trace: Trace, groups: Sequence[LevelGroup],
                       pools: Sequence[nn.Module]) -> List[bool]:
    """Apply the model's frozen stages, then freeze ``pools[i]`` if an op of
    ``groups[i]`` is frozen; returns which pools are frozen."""
    run_freeze_stages(root)
    frozen = []
    for g, pool in zip(groups, pools):
        frozen.append(any(is_frozen(op, trace) for op in g.members))
        if frozen[-1]:
            for p in pool.parameters():
                p.requires_grad_(False)
    return frozen
