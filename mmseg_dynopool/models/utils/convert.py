"""Convert the resizing operations of any model into learnable resizing layers.

:func:`convert_to_dynopool` is the one mechanism behind every DynOPool backbone of this
package (``DynOPoolBackbone``, ``DynOPoolHRNet``, the classification backbones). The
rules, in short (``docs/converter.md`` has the long version):

* **What is converted.** Every ``nn.Conv2d`` (mmcv's ``ConvModule`` convs included)
  with a stride >= 2 on either axis, and every ``nn.MaxPool2d`` / ``nn.AvgPool2d`` with
  a stride >= 2 that is not a global pooling, each with initial ratio ``1 / stride``
  per axis:

  - ``Pooling_s -> Pool`` (Eq. 5.1): the pooling module is replaced;
  - ``Conv_s -> Conv_1 . Pool`` (``placement='before'``, Eq. 5.3): the conv keeps its
    weights, gets stride 1, and its input is resized first - at the initial ratios
    every conv runs at the original resolution (the original's GMACs);
  - ``ReLU . Conv_s -> Pool . ReLU . Conv_1`` (``placement='after'``, Eq. 5.2): the
    conv runs with stride 1 and the output of the normalisation/activation modules
    that follow it is resized.

* **One pool per resolution level.** A probe forward (:mod:`.probe`) groups the
  feature maps into levels - maps that a size-preserving op couples (a residual sum,
  an HRNet fuse sum, a concatenation, a stride-1 conv) must always have one size.
  Every resizing op whose output lies in one level shares one pool (thesis 5.2.1: the
  residual path and the shortcut of a ResNet block, every path into an HRNet stream);
  ops into one level from two levels that must then be equal make those two one level
  (an HRNet fuse chain's intermediate map is its stream). An op that reaches a level
  from further up than the level's own parent goes through the pools in between. So
  all maps of a level have one size for any input size and any ratios.

* **Faithful or left alone.** An op is converted only if its stride-1 copy keeps the
  size (a conv whose kernel equals its stride - a patch embedding, a spatial-reduction
  conv - does not) and, with ``exact_sizes=True`` (the default), if the pool at its
  initial ratio gives the original's output size for every input size (DynOPool:
  ``round(H / s)``, equal to a 'same'-padded stride-2 conv's ``ceil(H / 2)`` but not to
  ``MaxPool2d(2, 2)``'s ``floor(H / 2)`` on odd sizes, nor to a stride-4 conv's
  ``ceil(H / 4)`` when ``H % 4 == 1``). ``exact_sizes=False`` also converts the latter
  (and any op whose stride-1 copy keeps the size: sizes at init then follow the pool's
  own rule - DynOPool's equal the original's on multiples of the stride). A level with
  one op that is left alone is left alone as a whole. Everything left alone is listed,
  with the reason, in :attr:`Conversion.left_alone`.

* **State dict.** Pools hang in forward (pre-)hooks (:mod:`.resize_hooks`); a replaced
  pooling module's place is taken by its pool or an ``nn.Identity``. The state-dict keys
  are the original's plus each pool's parameters (``<pool name>.alpha``), so a
  checkpoint of the original loads with only those missing.

Pools are built from mmengine's root ``MODELS`` registry with ``pool_cfg`` (default
``dict(type='DynOPool')``) plus ``init_ratio``, so any layer with that interface
(``init_ratio``, ``ratio``, ``continuous_size``) can replace DynOPool.
"""
import fnmatch
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

from mmengine.registry import MODELS
from torch import nn

from .init_ratios import InitRatios, Ratio, resolve_init_ratios
from .probe import ModuleCall, Size, Trace, output_size, spatial, trace_forward
from .resize_hooks import ClearPoolCaches, PoolAfter, PoolBefore

PLACEMENTS = ('before', 'after')
POOLING_TYPES = (nn.MaxPool2d, nn.AvgPool2d)
#: Attribute of a converted model holding its :class:`Conversion`.
CONVERSION_ATTR = '_dynopool_conversion'


def to_pair(value) -> Tuple[int, int]:
    """A stride/kernel argument (int or pair) as an ``(h, w)`` tuple of ints."""
    if isinstance(value, (tuple, list)):
        return int(value[0]), int(value[-1])
    return int(value), int(value)


# --------------------------------------------------------------------------- records
@dataclass
class ConvertedPool:
    """One resizing layer of a converted model (one resolution level).

    Attributes:
        name: module path of the pool (its state-dict prefix).
        ops: the resizing ops it replaces, in forward order.
        human_ratio: ``1 / stride`` per axis (the product for merged ops).
        init_ratio: the initial ratio it was built with.
        in_size, out_size: its input and output size at the probe.
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
    """What :func:`convert_to_dynopool` did to a model.

    Attributes:
        placement: ``'before'`` or ``'after'``.
        probe_size: the probe input size.
        pools: one :class:`ConvertedPool` per pool, in forward order.
        left_alone: ``{op name: reason}`` for every resizing op not converted.
        fused_upsampling: fixed-factor upsampling modules replaced by ``nn.Identity``.
        call_levels: ``{module name: level of each call's output}`` at the probe (level
            indices; None for non-4-D outputs), used by :func:`check_level_sizes`.
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
        return [p.name for p in self.pools]


# --------------------------------------------------------------------------- helpers
@dataclass(eq=False)
class _Op:
    name: str
    module: nn.Module
    kind: str                       # 'conv' | 'pool'
    stride: Tuple[int, int]
    call: Optional[ModuleCall] = None
    in_level: Optional[int] = None
    out_level: Optional[int] = None
    reason: Optional[str] = None    # why it cannot be converted (None: it can)


@dataclass(eq=False)
class _Group:
    level: int
    ops: List[_Op]
    parent: int
    stride: Tuple[int, int]
    reason: Optional[str] = None
    paths: Dict[str, List['_Group']] = field(default_factory=dict)
    first_stage: List[_Op] = field(default_factory=list)   # merged: the upstream ops
    size_rule: str = 'exact'
    name: str = ''

    @property
    def human_ratio(self) -> Ratio:
        return 1.0 / self.stride[0], 1.0 / self.stride[1]


def _is_container(module: nn.Module) -> bool:
    from mmcv.cnn import ConvModule
    return isinstance(module, (nn.Sequential, nn.ModuleList, nn.ModuleDict, ConvModule))


def _is_elementwise(module: nn.Module) -> bool:
    """Normalisation or activation modules: they keep the size and act per position."""
    if isinstance(module, nn.MultiheadAttention):
        return False
    if isinstance(module, (nn.modules.batchnorm._NormBase, nn.GroupNorm)):
        return True
    return type(module).__module__ == 'torch.nn.modules.activation' or \
        type(module).__name__ in ('Swish', 'HSwish', 'HSigmoid', 'Clamp')


def _is_upsampling(module: nn.Module) -> bool:
    if isinstance(module, nn.Upsample):
        return True
    return type(module).__name__ == 'Upsample' and hasattr(module, 'scale_factor') \
        and hasattr(module, 'size')


def _matches(name: str, patterns: Sequence[str]) -> Optional[str]:
    """The first pattern matching ``name`` or one of its parent modules."""
    parts = name.split('.')
    prefixes = ['.'.join(parts[:i]) for i in range(1, len(parts) + 1)]
    for pattern in patterns:
        if any(fnmatch.fnmatchcase(p, pattern) for p in prefixes):
            return pattern
    return None


def _infer_in_channels(model: nn.Module) -> int:
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module.in_channels
    raise ValueError('cannot infer the input channels (no nn.Conv2d); pass in_channels')


def _pool_cfg(pool_cfg: Optional[dict]) -> dict:
    cfg = dict(pool_cfg or {})
    if 'init_ratio' in cfg:
        raise ValueError('pool_cfg must not set init_ratio: use init_ratios')
    cfg.setdefault('type', 'DynOPool')
    return cfg


def _build_pool(cfg: dict, ratio: Ratio, ops: Sequence[_Op]) -> nn.Module:
    cfg = dict(cfg, init_ratio=ratio)
    if cfg['type'] == 'DynOPool' and 'aggregation' not in cfg and ops and all(
            isinstance(op.module, nn.AvgPool2d) for op in ops):
        cfg['aggregation'] = 'avg'
    return MODELS.build(cfg)


def _set_module(root: nn.Module, path: str, module: nn.Module) -> None:
    parent_path, _, attr = path.rpartition('.')
    parent = root.get_submodule(parent_path)
    parent._modules[attr] = module


def _check_new_path(root: nn.Module, path: str) -> None:
    """A new pool can be registered at ``path`` (checked before anything changes)."""
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


def _add_module(root: nn.Module, path: str, module: nn.Module, anchor: str) -> None:
    """Register ``module`` at ``path``, before the child on the way to ``anchor``."""
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


def _default_path(root: nn.Module, ops: Sequence[_Op], taken: set) -> str:
    """``<deepest common parent>.dynopool`` (not a container or a ConvModule)."""
    parents = [op.name.split('.')[:-1] for op in ops]
    common = []
    for parts in zip(*parents):
        if len(set(parts)) > 1:
            break
        common.append(parts[0])
    while common and _is_container(root.get_submodule('.'.join(common))):
        common.pop()
    base = '.'.join(common + ['dynopool'])
    name, k = base, 1
    while name in taken or _exists(root, name):
        name, k = f'{base}_{k}', k + 1
    return name


def _exists(root: nn.Module, path: str) -> bool:
    parent_path, _, attr = path.rpartition('.')
    try:
        return hasattr(root.get_submodule(parent_path), attr)
    except AttributeError:
        return False


# ------------------------------------------------------------------ size rules
def _op_rule(op: _Op) -> Callable[[Size], Size]:
    channels = op.module.in_channels if op.kind == 'conv' else 1
    return lambda hw: output_size(op.module, hw, channels)


def _stride_one_keeps_size(op: _Op) -> bool:
    conv = op.module
    stride = conv.stride
    conv.stride = (1, 1)
    try:
        return all(output_size(conv, hw, conv.in_channels) == hw
                   for hw in ((37, 40), (64, 31)))
    except Exception:
        return False
    finally:
        conv.stride = stride


def _pool_rule(pool: nn.Module) -> Callable[[Size], Size]:
    def rule(hw: Size) -> Size:
        h, w = pool.continuous_size(hw)
        return int(h), int(w)
    return rule


def _chain(rules: Sequence[Callable[[Size], Size]]) -> Callable[[Size], Size]:
    def rule(hw: Size) -> Size:
        for r in rules:
            hw = r(hw)
        return hw
    return rule


def _compare(original: Callable[[Size], Size], converted: Callable[[Size], Size],
             stride: Tuple[int, int]) -> str:
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


# --------------------------------------------------------------------------- steps
def _find_ops(model: nn.Module, trace: Trace, skip: Sequence[str]) -> List[_Op]:
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
        op = _Op(name=name, module=module, kind=kind, stride=stride)
        ops.append(op)
        calls = trace.calls_by_name.get(name, [])
        pattern = _matches(name, skip)
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
        if kind == 'conv' and op.reason is None and not _stride_one_keeps_size(op):
            k, p = to_pair(module.kernel_size), module.padding
            op.reason = (f'its stride-1 copy changes the size (kernel {k}, padding '
                         f'{p}): e.g. a patch embedding whose kernel equals its stride')
    ops.sort(key=lambda op: op.call.index if op.call is not None else 1 << 30)
    return ops


def _unify_levels(trace: Trace, ops: Sequence[_Op]) -> None:
    """Ops with one stride into one level need one input level: merge those."""
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


def _group(trace: Trace, ops: Sequence[_Op]) -> List[_Group]:
    by_level: Dict[int, List[_Op]] = {}
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
        group = _Group(level=level, ops=members, parent=parent,
                       stride=canonical[0].stride)
        if len(strides) > 1:
            group.reason = f'ops with strides {sorted(strides)} into one level'
        groups.append(group)
    groups.sort(key=lambda g: g.ops[0].call.index)
    return groups


def _resolve(trace: Trace, groups: List[_Group], exact_sizes: bool,
             probe_pools: Dict[int, nn.Module]) -> None:
    """Decide which groups are converted (to a fixpoint: one left alone can block a
    group that reaches its level through it) and their size rules."""
    by_level = {g.level: g for g in groups}
    rules_seen: Dict[Tuple[str, Tuple[int, ...]], str] = {}
    changed = True
    while changed:
        changed = False
        for g in groups:
            if g.reason is not None:
                continue
            blocked = next((op for op in g.ops if op.reason is not None), None)
            if blocked is not None:
                g.reason = f'{blocked.name} into the same level: {blocked.reason}'
                changed = True
                continue
            g.paths = {}
            rules = []
            for op in g.ops:
                path = [g]
                level = g.parent
                target = trace.find(op.in_level)
                while level != target:
                    up = by_level.get(level)
                    if up is None or up.reason is not None or up in path or \
                            up.first_stage:
                        path = None
                        break
                    path.insert(0, up)
                    level = up.parent
                if path is None:
                    g.reason = (f'{op.name} reaches the level from a level that is not '
                                'linked to it through converted levels')
                    break
                stride = (1, 1)
                for step in path:
                    stride = (stride[0] * step.stride[0], stride[1] * step.stride[1])
                if stride != op.stride:
                    g.reason = (f'{op.name} (stride {op.stride}) does not match the '
                                f'levels it crosses (stride {stride})')
                    break
                if len(path) > 1:
                    g.paths[op.name] = path
                key = (op.name, tuple(id(step) for step in path))
                if key not in rules_seen:
                    rules_seen[key] = _compare(
                        _op_rule(op),
                        _chain([_pool_rule(probe_pools[id(step)]) for step in path]),
                        op.stride)
                rules.append(rules_seen[key])
            if g.reason is not None:
                changed = True
                continue
            g.size_rule = 'exact' if all(r == 'exact' for r in rules) else (
                'multiples' if all(r != 'differs' for r in rules) else 'differs')
            if exact_sizes and g.size_rule != 'exact':
                g.reason = (f'the pool does not reproduce the original output size for '
                            f'every input size ({g.size_rule}); exact_sizes=False '
                            'converts it anyway')
                changed = True


def _transient(trace: Trace, level: int, allowed: set) -> bool:
    """Only the two ops and norm/activation modules touch ``level``; not an output."""
    if any(trace.level(t) == level for t in trace.outputs):
        return False
    for call in trace.calls:
        if not call.leaf:
            continue
        if any(trace.level(t) == level for t in call.inputs + call.outputs) and \
                call.name not in allowed and not _is_elementwise(call.module):
            return False
    return True


def _merge(trace: Trace, groups: List[_Group], exact_sizes: bool, cfg: dict
           ) -> List[_Group]:
    by_level = {g.level: g for g in groups}
    for g2 in list(groups):
        g1 = by_level.get(g2.parent)
        if g1 is None or g1 not in groups or g1.reason or g2.reason or g1.paths or \
                g2.paths or g1.first_stage or g2.first_stage:
            continue
        names = {op.name for op in g1.ops + g2.ops}
        if not _transient(trace, g2.parent, names):
            continue
        stride = (g1.stride[0] * g2.stride[0], g1.stride[1] * g2.stride[1])
        merged = _Group(level=g2.level, ops=g2.ops, parent=g1.parent, stride=stride,
                        first_stage=g1.ops)
        pool = _build_pool(cfg, merged.human_ratio, g1.ops + g2.ops)
        originals = [_chain([_op_rule(a), _op_rule(b)]) for a in g1.ops for b in g2.ops]
        rules = [_compare(r, _pool_rule(pool), stride) for r in originals]
        merged.size_rule = 'exact' if all(r == 'exact' for r in rules) else (
            'multiples' if all(r != 'differs' for r in rules) else 'differs')
        if exact_sizes and merged.size_rule != 'exact':
            continue
        index = groups.index(g1)
        groups.remove(g1)
        groups.remove(g2)
        groups.insert(index, merged)
        by_level[g2.level] = merged
    return groups


def _after_point(trace: Trace, call: ModuleCall, replaced: set
                 ) -> Tuple[str, ModuleCall, set]:
    """Where the pool goes for ``placement='after'``.

    Follows the conv's output through the norm/activation modules that read it next
    and returns ``('post', call)`` for a forward hook on the outermost module (called
    once) whose output is that activation, or ``('pre', call)`` for a pre-hook on the
    next module reading it (ResNet's shared ``relu``); failing both, a forward hook on
    the last module of the chain that is called once (the pool then comes before a
    shared activation). Also returns the indices of the module calls whose outputs are
    computed before the pool (at the conv's input resolution).
    """
    t, chain = call.outputs[0], [call]
    while True:
        last = chain[-1]
        nxt = next((c for c in trace.calls if c.start > last.end and c.leaf and c.inputs
                    and c.inputs[0] is t), None)
        if nxt is None or not _is_elementwise(nxt.module) or not nxt.outputs or \
                spatial(nxt.outputs[0]) != spatial(t):
            break
        t = nxt.outputs[0]
        chain.append(nxt)
    tensors = [c.outputs[0] for c in chain]
    last = chain[-1]

    def computed_before(end: int) -> set:
        """Calls of the chain, and modules around them returning one of its tensors,
        that finish before event ``end``."""
        return {c.index for c in trace.calls
                if call.end <= c.end < end and c.outputs
                and any(c.outputs[0] is x for x in tensors)} | \
            {c.index for c in chain if c.end < end}

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
    owner = [c for c in chain if trace.num_calls(c.module) == 1][-1]
    return 'post', owner, {c.index for c in chain[:chain.index(owner)]}


def _resizes(group: _Group, op: _Op, placement: str) -> bool:
    """Whether ``op``'s place gets the pool: always, except in a merged level, where
    the pool goes to the first op ('before') or the second ('after')."""
    if not group.first_stage:
        return True
    return (op in group.first_stage) == (placement == 'before')


def _frozen(op: _Op, trace: Trace) -> bool:
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


# --------------------------------------------------------------------------- main
def convert_to_dynopool(module: nn.Module,
                        placement: str = 'before',
                        init_ratios: InitRatios = None,
                        pool_cfg: Optional[dict] = None,
                        skip: Sequence[str] = (),
                        merge_consecutive: bool = False,
                        exact_sizes: bool = True,
                        pool_names: Optional[Union[Dict[str, str],
                                                   Callable[[List[str]], Optional[str]]]]
                        = None,
                        fuse_upsampling: bool = True,
                        probe_size: Size = (256, 256),
                        in_channels: Optional[int] = None) -> Conversion:
    """Replace the resizing ops of ``module`` (in place) by learnable resizing layers.

    Args:
        module: the model (a backbone, or any module called as ``module(x)``).
        placement: ``'before'`` (Eq. 5.3: pool, then the stride-1 conv; the original's
            GMACs at the initial ratios) or ``'after'`` (Eq. 5.2: the stride-1 conv and
            its norm/activation, then the pool). Pooling ops are replaced in both.
        init_ratios: initial ratios; see :mod:`.init_ratios` (None: ``1 / stride``).
        pool_cfg: config of the resizing layer, built from mmengine's root ``MODELS``
            with ``init_ratio`` added. Default: ``dict(type='DynOPool')``. A level whose
            ops are all ``nn.AvgPool2d`` gets ``aggregation='avg'`` unless set.
        skip: module-name patterns (``fnmatch``; a pattern matching a parent module
            skips everything inside it) of resizing ops to leave alone. Skipping one op
            leaves its whole level alone.
        merge_consecutive: one pool (ratio = product) for two resizing ops in a row with
            only norm/activation modules between them (thesis 5.2.1: ResNet-50's
            stride-2 stem conv and max-pooling become one 0.25 pool). Off by default.
        exact_sizes: convert only ops whose output size the pool reproduces at its
            initial ratio for every input size (see the module docstring). False
            converts every op whose stride-1 copy keeps the size; sizes at init then
            follow the pool's rule (DynOPool: equal on multiples of the stride, e.g.
            for ``MaxPool2d(2, 2)``, which floors).
        pool_names: where each pool is registered: a dict ``{op name: pool path}`` (any
            op of the level may be named) or a callable ``ops -> path or None``. Default:
            a replaced pooling op's own path, else ``<deepest common parent
            module>.dynopool`` (``_1``, ``_2``, ... if taken).
        fuse_upsampling: replace a fixed-factor upsampling module (``nn.Upsample``,
            mmseg's ``Upsample``) by ``nn.Identity`` when its input lies in a converted
            level and its output is only ever resized to an explicit size (HRNet's fuse
            layers): the factor is wrong once sizes are learned and the explicit resize
            alone gives the same result at the initial ratios.
        probe_size: ``(H, W)`` of the probe forward (on the meta device when possible).
        in_channels: channels of the probe; default: the first conv's.

    Returns:
        Conversion: the pools and what was left alone; also stored on ``module`` (see
        :func:`get_conversion`).
    """
    if placement not in PLACEMENTS:
        raise ValueError(f'placement must be one of {PLACEMENTS}, got {placement!r}')
    if getattr(module, CONVERSION_ATTR, None) is not None:
        raise ValueError('this module is already converted')
    if isinstance(skip, str):
        skip = (skip, )
    cfg = _pool_cfg(pool_cfg)
    if in_channels is None:
        in_channels = _infer_in_channels(module)
    trace = trace_forward(module, tuple(probe_size), in_channels)
    ops = _find_ops(module, trace, skip)
    _unify_levels(trace, ops)
    groups = _group(trace, ops)
    probe_pools = {id(g): _build_pool(cfg, g.human_ratio, g.ops) for g in groups}
    _resolve(trace, groups, exact_sizes, probe_pools)
    left_alone = {op.name: op.reason for op in ops if op.reason is not None}
    for g in groups:
        if g.reason is not None:
            for op in g.ops:
                left_alone.setdefault(op.name, g.reason)
    groups = [g for g in groups if g.reason is None]
    if merge_consecutive:
        groups = _merge(trace, groups, exact_sizes, cfg)

    # Names and ratios.
    taken: set = set()
    pooling_ops = {op.name for op in ops if op.kind == 'pool'}  # replaced below
    for g in groups:
        ops_g = g.first_stage + g.ops
        name = None
        if isinstance(pool_names, dict):
            named = {pool_names[op.name] for op in ops_g if op.name in pool_names}
            if len(named) > 1:
                raise ValueError(f'pool_names gives one level several names: {named}')
            name = named.pop() if named else None
        elif callable(pool_names):
            name = pool_names([op.name for op in ops_g])
        if name is None:
            placed = g.first_stage if g.first_stage and placement == 'before' else g.ops
            home = next((op for op in placed if op.kind == 'pool'
                         and op.name not in g.paths), None)
            name = home.name if home is not None else _default_path(module, ops_g, taken)
        if name in taken:
            raise ValueError(f'two levels would share the pool name {name!r}')
        home = next((op for op in ops_g if op.name == name), None)
        if home is None:
            _check_new_path(module, name)
        elif home.kind != 'pool' or not _resizes(g, home, placement) or \
                home.name in g.paths:
            raise ValueError(f'pool name {name!r} is a resizing op that does not get '
                             'the pool; choose another name')
        taken.add(name)
        g.name = name
    ratios = resolve_init_ratios(init_ratios, [g.human_ratio for g in groups],
                                 [g.name for g in groups])

    # Build and attach.
    pools = {id(g): _build_pool(cfg, r, g.first_stage + g.ops)
             for g, r in zip(groups, ratios)}
    hooks = {id(g): (PoolBefore(pools[id(g)]), PoolAfter(pools[id(g)])) for g in groups}
    pre_pool: Dict[int, int] = {}      # call index -> level its output keeps ('after')
    for g in groups:
        pool = pools[id(g)]
        members = g.first_stage + g.ops
        home = next((op for op in members if op.name == g.name), None)
        if home is not None:
            _set_module(module, g.name, pool)
        else:
            _add_module(module, g.name, pool, members[0].name)
        for op in members:
            resize = _resizes(g, op, placement)
            chain = g.paths.get(op.name, [g])
            if op.kind == 'conv':
                op.module.stride = (1, 1)
                if placement == 'before':
                    if resize:
                        for step in chain:
                            op.module.register_forward_pre_hook(hooks[id(step)][0])
                    continue
                where, target, computed = _after_point(trace, op.call, pooling_ops)
                if not resize:  # merged level, first op: no pool here at all
                    computed = computed | {target.index} if where == 'post' else computed
                pre_pool.update({i: op.in_level for i in computed})
                if not resize:
                    continue
                target_module = module.get_submodule(target.name)
                for step in chain:
                    if where == 'post':
                        target_module.register_forward_hook(hooks[id(step)][1])
                    else:
                        target_module.register_forward_pre_hook(hooks[id(step)][0])
            elif op is not home:
                identity = nn.Identity()
                _set_module(module, op.name, identity)
                if resize:
                    for step in chain:
                        identity.register_forward_hook(hooks[id(step)][1])
    if groups:
        module.register_forward_hook(ClearPoolCaches(
            [h for pair in hooks.values() for h in pair]))

    # Fixed-factor upsampling into learned levels.
    converted_levels = {g.level for g in groups}
    fused = []
    if fuse_upsampling and groups:
        for call in trace.calls:
            m = call.module
            if not _is_upsampling(m) or m.size or trace.num_calls(m) != 1 or \
                    not call.inputs or not call.outputs:
                continue
            if trace.level(call.inputs[0]) not in converted_levels:
                continue
            users = trace.consumers(call.outputs[0], after=call.end)
            if users and all(u.name == 'interpolate' and (
                    u.kwargs.get('size') is not None or
                    (len(u.args) > 1 and u.args[1] is not None)) for u in users):
                _set_module(module, call.name, nn.Identity())
                fused.append(call.name)

    # Frozen stages freeze their pools.
    freeze = getattr(module, '_freeze_stages', None)
    if callable(freeze):
        flags = {m: m.training for m in module.modules()}
        try:
            freeze()
        except TypeError:
            pass
        for m, flag in flags.items():
            m.training = flag
    records = []
    level_index: Dict[int, int] = {}

    def index(level: Optional[int]) -> Optional[int]:
        if level is None:
            return None
        return level_index.setdefault(trace.find(level), len(level_index))

    name_of_level = {g.level: g.name for g in groups}
    for g, ratio in zip(groups, ratios):
        pool = pools[id(g)]
        frozen = any(_frozen(op, trace) for op in g.first_stage + g.ops)
        if frozen:
            for p in pool.parameters():
                p.requires_grad_(False)
        first = (g.first_stage or g.ops)[0]
        records.append(ConvertedPool(
            name=g.name, ops=[op.name for op in g.first_stage + g.ops],
            human_ratio=g.human_ratio, init_ratio=ratio,
            in_size=spatial(first.call.inputs[0]), out_size=trace.level_size(g.level),
            parent=name_of_level.get(g.parent), size_rule=g.size_rule,
            merged=bool(g.first_stage), frozen=frozen,
            via={k: [s.name for s in v] for k, v in g.paths.items()}))

    # Levels of every module call's output; with 'after', the tensors computed before
    # a pool keep their conv's input level.
    call_levels: Dict[str, List[Optional[int]]] = {}
    for call in trace.calls:
        t = next((x for x in call.outputs if spatial(x) is not None), None)
        level = trace.level(t) if t is not None else None
        if t is not None and call.index in pre_pool:
            level = pre_pool[call.index]
        call_levels.setdefault(call.name, []).append(index(level))
    if not records and left_alone:
        # Converting nothing is almost always a mistake (e.g. a non-DynOPool pool type
        # whose size rule is not exact with exact_sizes=True): say why, loudly.
        from mmengine.logging import print_log
        print_log('convert_to_dynopool: no resizing op was converted; the model is '
                  'unchanged. Reasons: ' + '; '.join(
                      f'{k}: {v}' for k, v in list(left_alone.items())[:8]),
                  logger='current', level=30)
    conversion = Conversion(
        placement=placement, probe_size=tuple(probe_size), pools=records,
        left_alone=left_alone, fused_upsampling=fused, call_levels=call_levels,
        level_pools={index(g.level): g.name for g in groups})
    setattr(module, CONVERSION_ATTR, conversion)
    return conversion


# --------------------------------------------------------------------------- queries
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


def check_level_sizes(model: nn.Module, x) -> Dict[int, Size]:
    """Run ``model(x)`` and check that every resolution level has one size.

    Compares each module call's output with the level it had in the probe forward of
    the conversion (same call order). Returns ``{level index: size}``.

    Raises:
        AssertionError: a level whose feature maps have different sizes.
    """
    import torch
    prefix, conversion = get_conversion(model)
    if conversion is None:
        raise ValueError('check_level_sizes: the model has no converted module')
    root = model.get_submodule(prefix)
    pool_names = set(conversion.pool_names)
    pool_level = {name: lv for lv, name in conversion.level_pools.items()}
    seen: Dict[int, Dict[Size, List[str]]] = {}
    counts: Dict[str, int] = {}
    handles = []
    for name, m in root.named_modules():
        if name not in conversion.call_levels and name not in pool_names:
            continue

        def hook(mod, args, out, name=name):
            k = counts.get(name, 0)
            counts[name] = k + 1
            if name in pool_level:
                level = pool_level[name]
            else:
                levels = conversion.call_levels[name]
                level = levels[k] if k < len(levels) else None
            t = next((o for o in ([out] if not isinstance(out, (tuple, list)) else out)
                      if spatial(o) is not None), None)
            if level is not None and t is not None:
                seen.setdefault(level, {}).setdefault(spatial(t), []).append(
                    f'{name}#{k}')
        handles.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    bad = {lv: sizes for lv, sizes in seen.items() if len(sizes) > 1}
    if bad:
        lv, sizes = next(iter(bad.items()))
        detail = '; '.join(f'{s}: {names[:3]}' for s, names in sizes.items())
        raise AssertionError(f'{len(bad)} level(s) with several sizes, e.g. level {lv}: '
                             f'{detail}')
    return {lv: next(iter(sizes)) for lv, sizes in seen.items()}
