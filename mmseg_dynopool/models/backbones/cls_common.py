"""Shared pieces of the DynOPool classification backbones (thesis section 5.2.1).

The classification backbones replace every resizing operation except the final global
average pooling (section 4.4):

    Pooling_s          ->  DynOPool_s                            (Eq. 5.1)
    ReLU . Conv_s      ->  DynOPool_s . ReLU . Conv_1            (Eq. 5.2)

i.e. a strided convolution keeps its weights, runs with stride 1 at the input
resolution, goes through its normalisation and activation, and only then is resized by
DynOPool (``placement='after'``, the default). ``placement='before'`` instead resizes
the input of the formerly strided convolution, which then runs with stride 1 at the
pooled resolution (``Conv_s -> Conv_1 . DynOPool_s``, the segmentation rule Eq. 5.3):
at the initial ratios every convolution then runs at the human-designed model's
resolution and the model costs the human GMACs. Pooling layers (Eq. 5.1) are the same
for both.

The pools are attached with forward hooks (:class:`PoolOutput`, :class:`PoolInput`) so
that the building blocks and their state-dict keys stay exactly mmpretrain's; each
DynOPool is registered once, in the block (or backbone) whose resolution it sets, and
the only new state-dict entries are the ``alpha`` parameters.
"""
import math
from numbers import Real
from typing import List, Optional, Sequence, Tuple, Union

from torch import Tensor, nn

from ...ops import DynOPool

RatioLike = Union[float, Tuple[float, float]]

#: Stem/stride layouts every classification backbone offers: ``'imagenet'`` (224x224
#: inputs, the original architecture) and ``'cifar'`` (32x32 inputs, the CIFAR variants
#: of Shape Adaptor that the thesis follows).
STEMS = ('imagenet', 'cifar')

#: Where the DynOPool replacing a strided convolution goes: ``'after'`` its stride-1
#: ``conv + norm + act`` (Eq. 5.2, the thesis' classification models) or ``'before'``
#: the stride-1 conv (Eq. 5.3; the human model's cost at the initial ratios).
PLACEMENTS = ('after', 'before')


class PoolOutput:
    """Forward hook: resize a module's output with a (possibly shared) DynOPool.

    ``module`` then computes ``DynOPool(module(x))`` - Eq. 5.2 when ``module`` is a
    stride-1 ``conv + norm + act``. A class (not a closure) so that ``copy.deepcopy`` of
    the model re-targets the hook at the copied pool.
    """

    def __init__(self, pool: DynOPool) -> None:
        self.pool = pool

    def __call__(self, module: nn.Module, args: tuple, output: Tensor) -> Tensor:
        return self.pool(output)


class PoolInput:
    """Forward pre-hook: resize a module's input with a (possibly shared) DynOPool.

    Used to place DynOPool in front of a formerly strided convolution
    (``placement='before'``), or right after an activation that mmpretrain applies
    through a module shared by several calls (ResNet's ``relu``): pooling the input of
    the next convolution is pooling the activation's output.
    """

    def __init__(self, pool: DynOPool) -> None:
        self.pool = pool

    def __call__(self, module: nn.Module, args: tuple) -> tuple:
        return (self.pool(args[0]), *args[1:])


def check_stem(stem: str) -> str:
    """Validate the ``stem`` argument (one of :data:`STEMS`)."""
    if stem not in STEMS:
        raise ValueError(f'stem must be one of {STEMS}, got {stem!r}')
    return stem


def check_placement(placement: str) -> str:
    """Validate the ``placement`` argument (one of :data:`PLACEMENTS`)."""
    if placement not in PLACEMENTS:
        raise ValueError(f'placement must be one of {PLACEMENTS}, got {placement!r}')
    return placement


def _is_ratio(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, Real):
        return True
    return (isinstance(value, (tuple, list)) and len(value) == 2
            and all(isinstance(v, Real) and not isinstance(v, bool) for v in value))


def resolve_init_ratios(init_ratios: Optional[Union[RatioLike, Sequence[RatioLike]]],
                        defaults: Sequence[RatioLike],
                        names: Sequence[str]) -> List[RatioLike]:
    """Per-pool initial ratios.

    Args:
        init_ratios: ``None`` for ``defaults`` (the human-designed model), one ratio
            (a float or ``(r_h, r_w)``) for every pool, or a sequence with one ratio per
            pool in forward order. With exactly two pools a pair of numbers is read as
            one ratio per pool, not as ``(r_h, r_w)``.
        defaults: the human-designed ratio of each pool.
        names: the pool names, for error messages.

    Returns:
        list: one ratio per pool.
    """
    if len(defaults) != len(names):
        raise ValueError('defaults and names must have the same length')
    if init_ratios is None:
        ratios = list(defaults)
    elif _is_ratio(init_ratios) and not (
            isinstance(init_ratios, (tuple, list)) and len(names) == 2):
        ratios = [init_ratios] * len(names)
    elif isinstance(init_ratios, (tuple, list)) and len(init_ratios) == len(names) and \
            all(_is_ratio(r) for r in init_ratios):
        ratios = list(init_ratios)
    else:
        raise ValueError(
            f'init_ratios must be None, one ratio (float or (r_h, r_w)) or a list of '
            f'{len(names)} ratios, one per DynOPool in forward order {list(names)}; '
            f'got {init_ratios!r}')
    for name, ratio in zip(names, ratios):
        values = ratio if isinstance(ratio, (tuple, list)) else (ratio, )
        if any(not math.isfinite(float(v)) or float(v) <= 0 for v in values):
            raise ValueError(f'init ratio of {name} must be positive, got {ratio!r}')
    return [tuple(float(v) for v in r) if isinstance(r, (tuple, list)) else float(r)
            for r in ratios]


def make_pool(ratio: RatioLike, dynopool_cfg: Optional[dict]) -> DynOPool:
    """Build a DynOPool with initial ``ratio`` and the shared keyword arguments."""
    cfg = dict(dynopool_cfg or {})
    if 'init_ratio' in cfg or 'type' in cfg:
        raise ValueError('dynopool_cfg must not set init_ratio/type; use init_ratios')
    return DynOPool(init_ratio=ratio, **cfg)


def set_stride_one(conv: nn.Module) -> None:
    """Turn a stride-2 convolution into a stride-1 one (weights untouched)."""
    stride = tuple(conv.stride) if isinstance(conv.stride, (tuple, list)) else (
        conv.stride, conv.stride)
    if stride != (2, 2):
        raise ValueError(f'expected a stride-2 {type(conv).__name__}, got stride '
                         f'{conv.stride}')
    conv.stride = (1, 1)


def replace_strided_conv(module: nn.Module, conv: nn.Module, pool: DynOPool,
                         placement: str) -> None:
    """Replace the stride-2 ``conv`` inside ``module`` (a ``ConvModule``) by DynOPool.

    ``conv`` gets stride 1; ``placement='after'`` resizes ``module``'s output (Eq. 5.2
    when ``module`` is ``conv + norm + act``), ``'before'`` its input (Eq. 5.3).
    """
    set_stride_one(conv)
    if check_placement(placement) == 'after':
        module.register_forward_hook(PoolOutput(pool))
    else:
        module.register_forward_pre_hook(PoolInput(pool))


class DynOPoolBackboneMixin:
    """Accessors shared by the DynOPool classification backbones.

    A backbone using it fills ``self._dynopool_paths`` (module paths of its pools in
    forward order) while it builds them.
    """

    _dynopool_paths: List[str]

    @property
    def dynopool_names(self) -> List[str]:
        """Module paths of the DynOPool layers, in forward order."""
        return list(self._dynopool_paths)

    @property
    def dynopools(self) -> List[DynOPool]:
        """The DynOPool layers, in forward order (one per resolution change)."""
        return [self.get_submodule(path) for path in self._dynopool_paths]

    def feature_sizes(self) -> List[Optional[Tuple[int, int]]]:
        """Output size ``(H, W)`` of every DynOPool at the last forward, in order."""
        return [pool.last_size for pool in self.dynopools]
