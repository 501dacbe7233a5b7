"""Optional pass (``merge_consecutive=True``): one pool for two resizing ops in a row.

Thesis 5.2.1: in ResNet-50 "the pooling layer comes right after the strided convolution
layer ... DynOPool is applied twice in a row (refer to Equation (5.2)) and we use one
DynOPool having 0.25 as the initial scaling factor". Two converted levels merge when the
level between them is *transient*: only the two levels' ops and norm/activation modules
touch it, and it is not an output of the model. The merged group keeps the second
level, the first level's ops become its ``first_stage``, its stride is the product.

A merged pool rounds once where the original rounds twice (``round(H / 4)`` vs
``ceil(ceil(H / 2) / 2)``), so its size rule is at best ``'multiples'`` and the merge is
made only with ``exact_sizes=False``.
"""
from typing import List

from .levels import LevelGroup
from .match_utils import is_elementwise
from .pool_cfg import build_pool
from .size_rules import chain, compare, module_rule, pool_rule, worst
from .trace import Trace


def is_transient(trace: Trace, level: int, allowed: set) -> bool:
    """Only the ops named in ``allowed`` and norm/activation modules touch ``level``, and
    it is not an output of the model."""
    if any(trace.level(t) == level for t in trace.outputs):
        return False
    for call in trace.calls:
        if not call.leaf:
            continue
        if any(trace.level(t) == level for t in call.inputs + call.outputs) and \
                call.name not in allowed and not is_elementwise(call.module):
            return False
    return True


def merge_consecutive_levels(trace: Trace, groups: List[LevelGroup], exact_sizes: bool,
                      cfg: dict) -> List[LevelGroup]:
    """``groups`` with every pair of consecutive levels around a transient level merged
    into one group (ratio = the product of the two), where the size rule allows.

    Args:
        trace: the trace.
        groups: the converted groups (:func:`~.levels.resolve_levels`), forward order.
        exact_sizes: merge only where the merged pool reproduces the two ops' output
            size for every input size (never for DynOPool, see above).
        cfg: the layer config.
    """
    by_level = {g.level: g for g in groups}
    for g2 in list(groups):
        g1 = by_level.get(g2.parent)
        if g1 is None or g1 not in groups or g1.reason or g2.reason or g1.paths or \
                g2.paths or g1.first_stage or g2.first_stage:
            continue
        names = {op.name for op in g1.ops + g2.ops}
        if not is_transient(trace, g2.parent, names):
            continue
        stride = (g1.stride[0] * g2.stride[0], g1.stride[1] * g2.stride[1])
        merged = LevelGroup(level=g2.level, ops=g2.ops, parent=g1.parent, stride=stride,
                            first_stage=g1.ops)
        pool = build_pool(cfg, merged.human_ratio, [op.module for op in merged.members])
        originals = [chain([module_rule(a.module), module_rule(b.module)])
                     for a in g1.ops for b in g2.ops]
        merged.size_rule = worst(compare(r, pool_rule(pool), stride) for r in originals)
        if exact_sizes and merged.size_rule != 'exact':
            continue
        index = groups.index(g1)
        groups.remove(g1)
        groups.remove(g2)
        groups.insert(index, merged)
        by_level[g2.level] = merged
    return groups
