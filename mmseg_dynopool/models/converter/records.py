"""What a conversion did: :class:`Conversion` with one :class:`ConvertedPool` per pool,
stored on the converted module (:data:`CONVERSION_ATTR`), and the queries that find it
(:func:`get_conversion`, :func:`converted_pools`).
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

from torch import nn

from .levels import LevelGroup
from .pool_cfg import Ratio
from .trace import Size, Trace, spatial

#: Attribute of a converted model holding its :class:`Conversion`.
CONVERSION_ATTR = '_dynopool_conversion'


@dataclass
class ConvertedPool:
    """One resizing layer of a converted model (one resolution level).

    Attributes:
        name: module path of the pool (its state-dict prefix).
        ops: the resizing ops it replaces, in forward order.
        human_ratio: ``1 / stride`` per axis (the product for merged ops).
        init_ratio: the initial ratio it was built with.
        in_size, out_size: its input and output size in the traced forward.
        parent: the pool whose level is this pool's input level (None: the network
            input or a level no pool sets).
        size_rule: ``'exact'`` (the original's output size for every input size),
            ``'multiples'`` (on multiples of the stride) or ``'differs'``.
        merged: replaces two consecutive resizing ops (``merge_consecutive``).
        frozen: its parameters were frozen with a frozen stage.
        via: ops that reach this level from further up, with the pools they go through
            (this one last).
    """
    name: str
    ops: List[str]
    human_ratio: Ratio
    init_ratio: Ratio
    in_size: Size
    out_size: Size
    parent: Optional[str]
    size_rule: str
    merged: bool = False
    frozen: bool = False
    via: Dict[str, List[str]] = field(default_factory=dict)


@dataclass
class Conversion:
    """What :func:`~.convert.convert_to_dynopool` did to a model.

    Attributes:
        placement: ``'before'`` or ``'after'``.
        probe_size: the input size of the traced forward.
        pools: one :class:`ConvertedPool` per pool, in forward order.
        left_alone: ``{op name: reason}`` for every resizing op not converted.
        fused_upsampling: fixed-factor upsampling modules replaced by ``nn.Identity``.
        call_levels: ``{module name: level of each call's output}`` in the traced
            forward (level indices; None for non-4-D outputs), used by
            :func:`~.checks.check_level_sizes`.
        level_pools: ``{level index: pool name}`` for the converted levels.
    """
    placement: str
    probe_size: Size
    pools: List[ConvertedPool]
    left_alone: Dict[str, str]
    fused_upsampling: List[str]
    call_levels: Dict[str, List[Optional[int]]]
    level_pools: Dict[int, str]

    @property
    def pool_names(self) -> List[str]:
        """The pools' module paths, in forward order."""
        return [p.name for p in self.pools]


def record_conversion(trace: Trace, groups: Sequence[LevelGroup],
                      ratios: Sequence[Ratio], frozen: Sequence[bool], placement: str,
                      probe_size: Size, left_alone: Dict[str, str], fused: List[str],
                      pre_pool: Dict[int, int]) -> Conversion:
    """The :class:`Conversion` of the converted ``groups``.

    Levels are numbered in the order of the module calls whose outputs they hold; with
    ``'after'``, the calls in ``pre_pool`` (computed before a pool) keep their conv's
    input level.
    """
    level_index: Dict[int, int] = {}

    def index(level: Optional[int]) -> Optional[int]:
        if level is None:
            return None
        return level_index.setdefault(trace.find(level), len(level_index))

    name_of_level = {g.level: g.name for g in groups}
    records = []
    for g, ratio, is_frozen in zip(groups, ratios, frozen):
        first = (g.first_stage or g.ops)[0]
        records.append(ConvertedPool(
            name=g.name, ops=[op.name for op in g.members],
            human_ratio=g.human_ratio, init_ratio=ratio,
            in_size=spatial(first.call.inputs[0]), out_size=trace.level_size(g.level),
            parent=name_of_level.get(g.parent), size_rule=g.size_rule,
            merged=bool(g.first_stage), frozen=is_frozen,
            via={k: [s.name for s in v] for k, v in g.paths.items()}))
    call_levels: Dict[str, List[Optional[int]]] = {}
    for call in trace.calls:
        t = next((x for x in call.outputs if spatial(x) is not None), None)
        level = trace.level(t) if t is not None else None
        if t is not None and call.index in pre_pool:
            level = pre_pool[call.index]
        call_levels.setdefault(call.name, []).append(index(level))
    return Conversion(
        placement=placement, probe_size=tuple(probe_size), pools=records,
        left_alone=left_alone, fused_upsampling=fused, call_levels=call_levels,
        level_pools={index(g.level): g.name for g in groups})


def get_conversion(model: nn.Module) -> Tuple[str, Optional[Conversion]]:
    """``(prefix, conversion)`` of the first converted module in ``model`` (itself or a
    submodule, e.g. a segmentor's backbone); ``('', None)`` if there is none."""
    for name, m in model.named_modules():
        conversion = getattr(m, CONVERSION_ATTR, None)
        if isinstance(conversion, Conversion):
            return name, conversion
    return '', None


def converted_pools(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """``(name, pool)`` of every pool the converter put into ``model``, forward order."""
    prefix, conversion = get_conversion(model)
    if conversion is None:
        return []
    root = model.get_submodule(prefix)
    dot = f'{prefix}.' if prefix else ''
    return [(dot + p.name, root.get_submodule(p.name)) for p in conversion.pools]
