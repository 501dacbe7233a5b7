"""Name each level's pool: its module path, the prefix of its state-dict keys.

Each pool is registered once (a shared instance would otherwise appear twice in the state
dict); the other ops of its level reach it through hooks. Its name is

* ``pool_names[op]`` if given for any op of the level (a dict, or a callable
  ``ops -> name``);
* else the path of a pooling op of the level that is replaced by the pool (Eq. 5.1,
  VGG's ``features.<i>``);
* else ``<deepest common parent>.dynopool`` (``_1``, ``_2``, ... if taken), the parent
  being the deepest module containing all the level's ops that is not a container
  (whose forward would run the pool): a ResNet block (``layer2.0.dynopool``), an MiT
  ``PatchEmbed``, the backbone itself.

Every name is checked before the model changes, so a bad one fails with the model
untouched.
"""
from typing import Callable, Dict, List, Optional, Sequence, Union

from torch import nn

from .find_ops import ResizingOp
from .levels import LevelGroup
from .match_utils import is_container
from .placement import gets_pool

PoolNames = Optional[Union[Dict[str, str], Callable[[List[str]], Optional[str]]]]


def module_exists(root: nn.Module, path: str) -> bool:
    """Whether ``root`` has a submodule or attribute at ``path``."""
    parent_path, _, attr = path.rpartition('.')
    try:
        return hasattr(root.get_submodule(parent_path), attr)
    except AttributeError:
        return False


def check_new_path(root: nn.Module, path: str) -> None:
    """A new pool can be registered at ``path``.

    Raises:
        ValueError: no parent module there, a container parent or a taken name.
    """
    parent_path, _, attr = path.rpartition('.')
    try:
        parent = root.get_submodule(parent_path)
    except AttributeError:
        raise ValueError(f'cannot register a pool at {path!r}: no module '
                         f'{parent_path!r}') from None
    if isinstance(parent, (nn.Sequential, nn.ModuleList, nn.ModuleDict)):
        raise ValueError(f'cannot register a pool at {path!r}: {parent_path!r} is a '
                         f'{type(parent).__name__}, whose forward would run it')
    if hasattr(parent, attr):
        raise ValueError(f'cannot register a pool at {path!r}: the name is taken')


def default_path(root: nn.Module, ops: Sequence[ResizingOp], taken: set) -> str:
    """``<deepest common parent>.dynopool`` (not a container or a ConvModule)."""
    parents = [op.name.split('.')[:-1] for op in ops]
    common = []
    for parts in zip(*parents):
        if len(set(parts)) > 1:
            break
        common.append(parts[0])
    while common and is_container(root.get_submodule('.'.join(common))):
        common.pop()
    base = '.'.join(common + ['dynopool'])
    name, k = base, 1
    while name in taken or module_exists(root, name):
        name, k = f'{base}_{k}', k + 1
    return name


def _given_name(group: LevelGroup, pool_names: PoolNames) -> Optional[str]:
    if isinstance(pool_names, dict):
        named = {pool_names[op.name] for op in group.members if op.name in pool_names}
        if len(named) > 1:
            raise ValueError(f'pool_names gives one level several names: {named}')
        return named.pop() if named else None
    if callable(pool_names):
        return pool_names([op.name for op in group.members])
    return None


def name_levels(root: nn.Module, groups: Sequence[LevelGroup], placement: str,
                pool_names: PoolNames = None) -> None:
    """Set ``group.name`` for every group (see the module docstring).

    Raises:
        ValueError: two levels with one name, one level with several, a name that is a
            resizing op which does not get the pool, or a path where no pool can be
            registered (:func:`check_new_path`).
    """
    taken: set = set()
    for g in groups:
        name = _given_name(g, pool_names)
        if name is None:
            placed = g.first_stage if g.first_stage and placement == 'before' else g.ops
            home = next((op for op in placed if op.kind == 'pool'
                         and op.name not in g.paths), None)
            name = home.name if home is not None else default_path(root, g.members,
                                                                   taken)
        if name in taken:
            raise ValueError(f'two levels would share the pool name {name!r}')
        home = next((op for op in g.members if op.name == name), None)
        if home is None:
            check_new_path(root, name)
        elif home.kind != 'pool' or not gets_pool(g, home, placement) or \
                home.name in g.paths:
            raise ValueError(f'pool name {name!r} is a resizing op that does not get '
                             'the pool; choose another name')
        taken.add(name)
        g.name = name
