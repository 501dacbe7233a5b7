"""Pass 3: group the resizing ops by resolution level and decide which levels convert.

All feature maps of a level (:mod:`.trace`) must keep one size for any ratios, so every
resizing op whose output lies in one level shares **one** pool (thesis 5.2.1: "the same
scale parameter alpha is shared across the branches"; the residual path and the
shortcut of a ResNet block, every transition and fuse path into an HRNet stream):

1. :func:`group_levels` first merges the *input* levels of ops with one stride into one
   level (to a fixpoint: an HRNet fuse chain ``stream 1 -> 2 -> 3``'s intermediate map
   is thereby stream 2), then makes one :class:`LevelGroup` per output level. Its
   ``parent`` is the smallest of its input levels, its stride that of the ops from the
   parent.
2. :func:`resolve_levels` decides which groups are converted, to a fixpoint (one left
   alone can block another that reaches its level through it): a group is left alone
   with any op that cannot be converted; an op entering from further up than the
   parent goes through the pools of the levels in between (``paths``), which must all
   be converted and multiply to its stride; and the pools must reproduce the ops' output
   sizes (:mod:`.size_rules`; only ``'exact'`` ones with ``exact_sizes=True``).
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from torch import nn

from .find_ops import ResizingOp
from .pool_cfg import Ratio, build_pool
from .size_rules import chain, compare, module_rule, pool_rule, worst
from .trace import Trace


@dataclass(eq=False)
class LevelGroup:
    """The resizing ops into one level: one pool.

    Attributes:
        level: the output level (a level id of the trace).
        ops: the ops whose output lies in it, in forward order.
        parent: its input level (the smallest one if ops come from several).
        stride: the stride from ``parent``.
        reason: why it is left alone (None: it is converted).
        paths: ``{op name: groups whose pools it goes through, this one last}`` for ops
            from further up than ``parent``.
        first_stage: the upstream ops when two levels were merged (:mod:`.merge`).
        size_rule: ``'exact'``, ``'multiples'`` or ``'differs'`` (:mod:`.size_rules`).
        name: the pool's module path (:mod:`.naming`).
    """
    level: int
    ops: List[ResizingOp]
    parent: int
    stride: Tuple[int, int]
    reason: Optional[str] = None
    paths: Dict[str, List['LevelGroup']] = field(default_factory=dict)
    first_stage: List[ResizingOp] = field(default_factory=list)
    size_rule: str = 'exact'
    name: str = ''

    @property
    def human_ratio(self) -> Ratio:
        """``1 / stride`` per axis: the human-designed model's ratio."""
        return 1.0 / self.stride[0], 1.0 / self.stride[1]

    @property
    def members(self) -> List[ResizingOp]:
        """Every op of the pool in forward order (a merge's upstream ops first)."""
        return self.first_stage + self.ops


def unify_levels(trace: Trace, ops: Sequence[ResizingOp]) -> None:
    """Ops with one stride into one level need one input level: merge those levels."""
    changed = True
    while changed:
        changed = False
        entries: Dict[Tuple[int, Tuple[int, int]], int] = {}
        for op in ops:
            if op.call is None or op.in_level is None:
                continue
            key = (trace.find(op.out_level), op.stride)
            if key in entries:
                changed |= trace.union(entries[key], op.in_level)
            else:
                entries[key] = op.in_level


def group_levels(trace: Trace, ops: Sequence[ResizingOp]) -> List[LevelGroup]:
    """One :class:`LevelGroup` per output level of the usable ops, in forward order
    (after :func:`unify_levels`). A level entered with two strides from its parent is
    left alone."""
    unify_levels(trace, ops)
    by_level: Dict[int, List[ResizingOp]] = {}
    for op in ops:
        if op.call is not None and op.out_level is not None:
            by_level.setdefault(trace.find(op.out_level), []).append(op)
    groups = []
    for level, members in by_level.items():
        parents = {trace.find(op.in_level) for op in members}
        parent = min(parents, key=lambda lv: (
            trace.level_size(lv)[0] * trace.level_size(lv)[1], lv))
        canonical = [op for op in members if trace.find(op.in_level) == parent]
        strides = {op.stride for op in canonical}
        group = LevelGroup(level=level, ops=members, parent=parent,
                           stride=canonical[0].stride)
        if len(strides) > 1:
            group.reason = f'ops with strides {sorted(strides)} into one level'
        groups.append(group)
    groups.sort(key=lambda g: g.ops[0].call.index)
    return groups


def _path(trace: Trace, by_level: Dict[int, LevelGroup], group: LevelGroup,
          op: ResizingOp) -> Optional[List[LevelGroup]]:
    """The converted groups from ``op``'s input level down to ``group`` (this one
    last), None if a level on the way is not converted."""
    path, level, target = [group], group.parent, trace.find(op.in_level)
    while level != target:
        up = by_level.get(level)
        if up is None or up.reason is not None or up in path or up.first_stage:
            return None
        path.insert(0, up)
        level = up.parent
    return path


def _resolve_group(trace: Trace, by_level: Dict[int, LevelGroup], group: LevelGroup,
                   exact_sizes: bool, verdicts: Dict[tuple, str],
                   probe_pools: Dict[int, nn.Module]) -> Optional[str]:
    """Why ``group`` cannot be converted (None: it can); sets its paths and size rule."""
    blocked = next((op for op in group.ops if op.reason is not None), None)
    if blocked is not None:
        return f'{blocked.name} into the same level: {blocked.reason}'
    group.paths = {}
    rules = []
    for op in group.ops:
        path = _path(trace, by_level, group, op)
        if path is None:
            return (f'{op.name} reaches the level from a level that is not linked to it '
                    'through converted levels')
        stride = (1, 1)
        for step in path:
            stride = (stride[0] * step.stride[0], stride[1] * step.stride[1])
        if stride != op.stride:
            return (f'{op.name} (stride {op.stride}) does not match the levels it '
                    f'crosses (stride {stride})')
        if len(path) > 1:
            group.paths[op.name] = path
        key = (op.name, tuple(id(step) for step in path))
        if key not in verdicts:
            verdicts[key] = compare(
                module_rule(op.module),
                chain([pool_rule(probe_pools[id(step)]) for step in path]), op.stride)
        rules.append(verdicts[key])
    group.size_rule = worst(rules)
    if exact_sizes and group.size_rule != 'exact':
        return (f'the pool does not reproduce the original output size for every input '
                f'size ({group.size_rule}); exact_sizes=False converts it anyway')
    return None


def resolve_levels(trace: Trace, ops: Sequence[ResizingOp], groups: List[LevelGroup],
                   exact_sizes: bool, cfg: dict
                   ) -> Tuple[List[LevelGroup], Dict[str, str]]:
    """Decide which groups are converted, with their paths and size rules.

    Args:
        trace: the trace.
        ops: every resizing op (:func:`~.find_ops.find_ops`).
        groups: :func:`group_levels` of them.
        exact_sizes: convert only levels whose pools reproduce the ops' output sizes
            for every input size.
        cfg: the layer config (:func:`~.pool_cfg.pool_config`), whose size rule at
            ``1 / stride`` is compared with the ops'.

    Returns:
        The converted groups (forward order) and ``{op name: reason}`` for every op left
        alone: its own reason if it has one, else its level's.
    """
    probe_pools = {id(g): build_pool(cfg, g.human_ratio, [op.module for op in g.ops])
                   for g in groups}
    by_level = {g.level: g for g in groups}
    verdicts: Dict[tuple, str] = {}
    changed = True
    while changed:
        changed = False
        for g in groups:
            if g.reason is None:
                g.reason = _resolve_group(trace, by_level, g, exact_sizes, verdicts,
                                          probe_pools)
                changed |= g.reason is not None
    left_alone = {op.name: op.reason for op in ops if op.reason is not None}
    for g in groups:
        if g.reason is not None:
            for op in g.ops:
                left_alone.setdefault(op.name, g.reason)
    return [g for g in groups if g.reason is None], left_alone
