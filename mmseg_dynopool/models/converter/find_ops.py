"""Pass 2: find the resizing ops of a traced model and whether each can be converted.

A *resizing op* is an ``nn.Conv2d`` (mmcv's ``ConvModule`` convs included) or an
``nn.MaxPool2d`` / ``nn.AvgPool2d`` with a stride >= 2 on either axis: the ``Conv_s`` and
``Pooling_s`` of Eqs. 5.1-5.3. Each gets a :class:`ResizingOp` with its call in the
trace and the levels of its input and output; one that cannot be converted on its own
carries the reason (``skip``, not called or called more than once, not a feature map, a
global pooling, a conv whose stride-1 copy changes the size). Whether its *level* can be
converted is decided later (:mod:`.levels`).
"""
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from torch import nn

from .match_utils import POOLING_TYPES, matching_pattern, to_pair
from .size_rules import stride_one_keeps_size
from .trace import ModuleCall, Trace, spatial


@dataclass(eq=False)
class ResizingOp:
    """One strided conv or pooling module of the model.

    Attributes:
        name: its module path.
        module: the module.
        kind: ``'conv'`` or ``'pool'``.
        stride: ``(s_h, s_w)``.
        call: its (only) call in the trace, None if it cannot be used.
        in_level, out_level: levels of its input and output in the trace.
        reason: why it cannot be converted (None: it can).
    """
    name: str
    module: nn.Module
    kind: str
    stride: Tuple[int, int]
    call: Optional[ModuleCall] = None
    in_level: Optional[int] = None
    out_level: Optional[int] = None
    reason: Optional[str] = None


def find_ops(model: nn.Module, trace: Trace, skip: Sequence[str] = ()
             ) -> List[ResizingOp]:
    """Every resizing op of ``model``, in forward order (ops not called last).

    Args:
        model: the traced model.
        trace: its trace (:func:`~.trace.trace_forward`).
        skip: ``fnmatch`` patterns of module names to leave alone (a pattern matching a
            parent module skips everything inside it).
    """
    ops = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            kind = 'conv'
        elif isinstance(module, POOLING_TYPES):
            kind = 'pool'
        else:
            continue
        stride = to_pair(module.stride)
        if max(stride) < 2:
            continue
        op = ResizingOp(name=name, module=module, kind=kind, stride=stride)
        ops.append(op)
        calls = trace.calls_by_name.get(name, [])
        pattern = matching_pattern(name, skip)
        if pattern is not None:
            op.reason = f'skipped (matches {pattern!r})'
        if not calls:
            op.reason = op.reason or 'not called in the probe forward'
            continue
        if len(calls) > 1:
            op.reason = op.reason or f'called {len(calls)} times in one forward'
            continue
        call = calls[0]
        op.call = call
        x = next((t for t in call.inputs if spatial(t) is not None), None)
        y = next((t for t in call.outputs if spatial(t) is not None), None)
        op.in_level, op.out_level = trace.level(x), trace.level(y)
        if op.in_level is None or op.out_level is None:
            op.reason = op.reason or 'its input or output is not a feature map'
            continue
        if spatial(y) == (1, 1) and kind == 'pool':
            op.reason = op.reason or 'global pooling'
            continue
        if kind == 'conv' and op.reason is None and not stride_one_keeps_size(module):
            k, p = to_pair(module.kernel_size), module.padding
            op.reason = (f'its stride-1 copy changes the size (kernel {k}, padding '
                         f'{p}): e.g. a patch embedding whose kernel equals its stride')
    ops.sort(key=lambda op: op.call.index if op.call is not None else 1 << 30)
    return ops
