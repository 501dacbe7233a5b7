"""Where a converted conv's pool goes: in front of the conv (Eq. 5.3) or behind its
norm/activation (Eq. 5.2).

* ``placement='before'``: ``Conv_s -> Conv_1 . Pool`` (Eq. 5.3): a forward pre-hook on
  the (now stride-1) conv resizes its input. At the initial ratios every conv runs at the
  original resolution: the model costs the original's GMACs.
* ``placement='after'``: ``ReLU . Conv_s -> Pool . ReLU . Conv_1`` (Eq. 5.2): the pool
  resizes the output of the normalisation/activation *modules* that read the conv's
  output next (:func:`after_point`): a forward hook on the outermost module, called
  once, that returns that activation (a ``ConvModule``, a ``Sequential(conv, bn,
  relu)``), or, when the activation is a module shared by several calls (ResNet blocks'
  ``relu``), a pre-hook on the next module reading it. The maps computed before the
  pool keep the conv's input size (:class:`Site` ``.computed``).

A pooling op (Eq. 5.1) is replaced in both placements (:mod:`.attach`). In a merged
level (:mod:`.merge`) only one op's place gets the pool (:func:`gets_pool`).
"""
from dataclasses import dataclass, field
from typing import Dict, Optional, Set, Tuple

from .find_ops import ResizingOp
from .levels import LevelGroup
from .match_utils import is_elementwise
from .trace import ModuleCall, Trace, spatial

#: The two placements of a conv's pool.
PLACEMENTS = ('before', 'after')


@dataclass
class Site:
    """Where one converted conv's pool hangs.

    Attributes:
        module: path of the module to hook; None: no pool here (a merged level's
            other op).
        hook: ``'pre'`` (resize the module's input) or ``'post'`` (its output).
        computed: ``{call index: level}`` of the module calls whose outputs are computed
            before the pool ('after'), so keep the conv's input level.
    """
    module: Optional[str]
    hook: str = 'pre'
    computed: Dict[int, int] = field(default_factory=dict)


def gets_pool(group: LevelGroup, op: ResizingOp, placement: str) -> bool:
    """Whether ``op``'s place gets the pool: always, except in a merged level, where
    the pool goes to the first op ('before') or the second ('after')."""
    if not group.first_stage:
        return True
    return (op in group.first_stage) == (placement == 'before')


def after_point(trace: Trace, call: ModuleCall, replaced: Set[str]
                ) -> Tuple[str, ModuleCall, set]:
    """Where the pool goes for ``placement='after'``.

    Follows the conv's output through the norm/activation modules that read it next
    and returns ``('post', call)`` for a forward hook on the outermost module (called
    once) whose output is that activation, or ``('pre', call)`` for a pre-hook on the
    next module reading it (ResNet's shared ``relu``; never one of the ``replaced``
    pooling ops); failing both, a forward hook on the last module of the chain that is
    called once (the pool then comes before a shared activation). Also returns the
    indices of the module calls whose outputs are computed before the pool (at the
    conv's input resolution).
    """
    t, steps = call.outputs[0], [call]
    while True:
        last = steps[-1]
        nxt = next((c for c in trace.calls if c.start > last.end and c.leaf and c.inputs
                    and c.inputs[0] is t), None)
        if nxt is None or not is_elementwise(nxt.module) or not nxt.outputs or \
                spatial(nxt.outputs[0]) != spatial(t):
            break
        t = nxt.outputs[0]
        steps.append(nxt)
    tensors = [c.outputs[0] for c in steps]
    last = steps[-1]

    def computed_before(end: int) -> set:
        """Calls of the chain, and modules around them returning one of its tensors,
        that finish before event ``end``."""
        return {c.index for c in trace.calls
                if call.end <= c.end < end and c.outputs
                and any(c.outputs[0] is x for x in tensors)} | \
            {c.index for c in steps if c.end < end}

    owners = [c for c in trace.calls if c.outputs and c.outputs[0] is t and
              c.end >= last.end and trace.num_calls(c.module) == 1]
    if owners:
        owner = min(owners, key=lambda c: c.start)
        return 'post', owner, computed_before(owner.end)
    consumer = next((c for c in trace.calls if c.start > last.end and c.inputs and
                     c.inputs[0] is t), None)
    if consumer is not None and trace.num_calls(consumer.module) == 1 and \
            consumer.name not in replaced:
        return 'pre', consumer, computed_before(consumer.start)
    owner = [c for c in steps if trace.num_calls(c.module) == 1][-1]
    return 'post', owner, {c.index for c in steps[:steps.index(owner)]}


def conv_site(trace: Trace, group: LevelGroup, op: ResizingOp, placement: str,
              replaced: Set[str]) -> Site:
    """Where the pool of ``group`` hangs for the converted conv ``op``.

    Args:
        trace: the trace.
        group: ``op``'s group.
        op: a strided conv of it.
        placement: ``'before'`` or ``'after'``.
        replaced: names of the pooling ops that the converter replaces (no hook there).
    """
    resize = gets_pool(group, op, placement)
    if placement == 'before':
        return Site(op.name if resize else None, 'pre')
    where, target, computed = after_point(trace, op.call, replaced)
    if not resize:  # merged level, first op: no pool here at all
        computed = computed | {target.index} if where == 'post' else computed
    return Site(target.name if resize else None, where,
                {i: op.in_level for i in computed})
