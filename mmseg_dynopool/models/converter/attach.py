"""The rewrite: register each level's pool and hang it where :mod:`.placement` says.

For every converted level, its pool is registered once under its name (:mod:`.naming`):
in a replaced pooling op's place (Eq. 5.1) or as a new child of the deepest common
parent. Then every op of the level is rewritten:

* a strided conv keeps its weights and gets stride 1; its pool hangs in a forward
  (pre-)hook (:mod:`.hooks`) at its :func:`~.placement.conv_site` (Eq. 5.3 or 5.2);
* any other pooling op of the level becomes an ``nn.Identity`` whose forward hook calls
  the level's pool (Eq. 5.1).

An op entering the level from further up goes through the pools of the levels in
between, in order (its ``path``). One hook object per pool serves all its places, and
:class:`~.hooks.ClearPoolCaches` on the model drops their cached results after each
forward.
"""
from typing import Dict, List, Sequence, Set

from torch import nn

from .hooks import ClearPoolCaches, PoolAfter, PoolBefore
from .levels import LevelGroup
from .placement import conv_site, gets_pool
from .trace import Trace


def set_module(root: nn.Module, path: str, module: nn.Module) -> None:
    """Put ``module`` in the place of the submodule at ``path``."""
    parent_path, _, attr = path.rpartition('.')
    parent = root.get_submodule(parent_path)
    parent._modules[attr] = module


def add_module(root: nn.Module, path: str, module: nn.Module, anchor: str) -> None:
    """Register ``module`` at ``path``, before the child on the way to ``anchor`` (so it
    comes in forward order in ``named_modules`` and the state dict)."""
    parent_path, _, attr = path.rpartition('.')
    parent = root.get_submodule(parent_path)
    prefix = f'{parent_path}.' if parent_path else ''
    child = anchor[len(prefix):].split('.')[0] if anchor.startswith(prefix) else None
    items = list(parent._modules.items())
    parent._modules.clear()
    placed = False
    for key, value in items:
        if key == child and not placed:
            parent._modules[attr] = module
            placed = True
        parent._modules[key] = value
    if not placed:
        parent._modules[attr] = module


def _hang(module: nn.Module, hook: str, hooks: List[tuple]) -> None:
    """Hook the pools of ``hooks`` (``(PoolBefore, PoolAfter)`` pairs, in order) on
    ``module``: on its input (``'pre'``) or its output (``'post'``)."""
    for before, after in hooks:
        if hook == 'post':
            module.register_forward_hook(after)
        else:
            module.register_forward_pre_hook(before)


def attach_pools(root: nn.Module, trace: Trace, groups: Sequence[LevelGroup],
                 pools: Sequence[nn.Module], placement: str, replaced: Set[str]
                 ) -> Dict[int, int]:
    """Rewrite ``root`` in place: register ``pools[i]`` for ``groups[i]`` and hang it.

    Args:
        root: the model.
        trace: its trace.
        groups: the converted, named groups.
        pools: one built layer per group.
        placement: ``'before'`` or ``'after'``.
        replaced: names of every strided pooling op of the model.

    Returns:
        ``{call index: level}`` of the module calls computed before an ``'after'``
        pool (they keep their conv's input level; see :mod:`.records`).
    """
    hooks = {id(g): (PoolBefore(pool), PoolAfter(pool)) for g, pool in zip(groups, pools)}
    pre_pool: Dict[int, int] = {}
    for g, pool in zip(groups, pools):
        home = next((op for op in g.members if op.name == g.name), None)
        if home is not None:
            set_module(root, g.name, pool)
        else:
            add_module(root, g.name, pool, g.members[0].name)
        for op in g.members:
            path = [hooks[id(step)] for step in g.paths.get(op.name, [g])]
            if op.kind == 'conv':
                op.module.stride = (1, 1)
                site = conv_site(trace, g, op, placement, replaced)
                pre_pool.update(site.computed)
                if site.module is not None:
                    _hang(root.get_submodule(site.module), site.hook, path)
            elif op is not home:
                identity = nn.Identity()
                set_module(root, op.name, identity)
                if gets_pool(g, op, placement):
                    _hang(identity, 'post', path)
    if groups:
        root.register_forward_hook(ClearPoolCaches(
            [h for pair in hooks.values() for h in pair]))
    return pre_pool
