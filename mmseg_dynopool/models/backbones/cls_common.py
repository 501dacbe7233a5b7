"""Shared pieces of the DynOPool classification backbones.

Paper: the DynOPool thesis, chapter 4, section 4.4, and chapter 5, section 5.2.1,
Eqs. 5.1-5.3 (``shared/papers/dynopool_thesis.txt``; its CVPR 2022 version:
https://arxiv.org/abs/2205.15254). The configs and the measured GMACs of these
backbones are in ``configs/dynopool_cls/README.md``; their design in
``docs/classification.md``.

Each classification backbone is an mmpretrain backbone (in its ImageNet layout or the
CIFAR layout of Shape Adaptor, see :data:`STEMS`) converted by
:func:`~mmseg_dynopool.models.converter.convert_to_dynopool`, which replaces every
resizing operation except the final global average pooling (section 4.4):

    Pooling_s          ->  DynOPool_s                            (Eq. 5.1)
    ReLU . Conv_s      ->  DynOPool_s . ReLU . Conv_1            (Eq. 5.2, 'after')
    Conv_s             ->  Conv_1 . DynOPool_s                   (Eq. 5.3, 'before')

``placement='after'`` (the default here, the thesis' classification models) runs a
formerly strided conv with stride 1 at the input resolution and resizes the output of
its normalisation and activation; ``'before'`` resizes its input, so at the initial
ratios every conv runs at the human-designed model's resolution (the human GMACs). The
converter attaches the pools with forward hooks, so the state-dict keys stay
mmpretrain's plus one ``alpha`` per pool (``stride`` for DiffStride), and shares one
pool between the branches that enter one resolution (ResNet's residual path and
shortcut).

Arguments every classification backbone takes:

* ``stem`` (str): ``'imagenet'`` (default) or ``'cifar'`` (:data:`STEMS`).
* ``init_ratios`` (float | tuple | list | dict, optional): initial ratios by the
  package's one rule (:mod:`mmseg_dynopool.models.converter.init_ratios`): one ratio
  (a float or ``(r_h, r_w)``) for all pools, one per pool in forward order, or
  ``{pool name: ratio}``. Default: None (the human model).
* ``pool_cfg`` (dict, optional; ``dynopool_cfg`` is its deprecated name, with a
  ``DeprecationWarning``): the resizing layer's config: ``type`` (default
  ``'DynOPool'``; or ``'ShapeAdaptor'`` / ``'DiffStride'``, see ``docs/baselines.md``,
  any other type is a ``ValueError``) and its further arguments (DynOPool:
  ``min_size``, ``aggregation``, ``max_ratio``, ``min_ratio``, ``max_size``;
  ShapeAdaptor: ``r1``, ``r2``, ``min_size``, ...; DiffStride: ``smoothness``, ...);
  not ``init_ratio`` (use ``init_ratios``). ShapeAdaptor and DiffStride have their own
  size rules (floor of ``H s``; about ``H / S + 2R``), which do not reproduce the
  strided ops' sizes, so with them every op is converted as with the converter's
  ``exact_sizes=False``: same pools, pool names and initial ratios, sizes by the layer's
  rule. Default: None (DynOPool with its defaults).
* ``placement`` (str): ``'after'`` (Eq. 5.2, default) or ``'before'`` (Eq. 5.3, the human
  GMACs at the initial ratios). Same pools and state-dict keys.
"""
from typing import List, Optional, Tuple

from torch import nn

from ...layers import pool_cfg_arg, resizing_layer_cfg, resizing_layer_class
from ..converter import (PLACEMENTS, Conversion, convert_to_dynopool, get_conversion,
                         to_pair)

#: Stem/stride layouts every classification backbone offers: ``'imagenet'`` (224x224
#: inputs, the original architecture) and ``'cifar'`` (32x32 inputs, the CIFAR variants
#: of Shape Adaptor that the thesis follows).
STEMS = ('imagenet', 'cifar')


def check_stem(stem: str) -> str:
    """Validate the ``stem`` argument (one of :data:`STEMS`)."""
    if stem not in STEMS:
        raise ValueError(f'stem must be one of {STEMS}, got {stem!r}')
    return stem


def check_placement(placement: str) -> str:
    """Validate the ``placement`` argument (``'after'`` or ``'before'``)."""
    if placement not in PLACEMENTS:
        raise ValueError(f'placement must be one of {PLACEMENTS}, got {placement!r}')
    return placement


def set_stride_one(conv: nn.Conv2d) -> None:
    """Give a stride-2 conv stride 1 (a CIFAR layout; weights untouched)."""
    if to_pair(conv.stride) != (2, 2):
        raise ValueError(f'expected a stride-2 conv, got stride {conv.stride}')
    conv.stride = (1, 1)


class DynOPoolBackboneMixin:
    """Conversion and accessors shared by the DynOPool classification backbones."""

    placement: str

    def convert(self, placement: str, init_ratios, pool_cfg: Optional[dict],
                dynopool_cfg: Optional[dict] = None, **kwargs) -> Conversion:
        """Convert ``self`` with resizing layers built from ``pool_cfg`` (type
        DynOPool unless it names another registered resizing layer; ``dynopool_cfg`` is
        its deprecated name)."""
        cfg = resizing_layer_cfg(pool_cfg_arg(pool_cfg, dynopool_cfg,
                                              type(self).__name__))
        self.placement = check_placement(placement)
        if not resizing_layer_class(cfg['type']).exact_sizes:
            # Their size rules never reproduce the strided ops' sizes: convert anyway.
            kwargs['exact_sizes'] = False
        return convert_to_dynopool(self, placement=placement, init_ratios=init_ratios,
                                   pool_cfg=cfg, **kwargs)

    @property
    def dynopool_names(self) -> List[str]:
        """Module paths of the resizing layers (DynOPool, ShapeAdaptor or DiffStride),
        in forward order."""
        return get_conversion(self)[1].pool_names

    @property
    def dynopools(self) -> List[nn.Module]:
        """The resizing layers, in forward order (one per resolution change)."""
        return [self.get_submodule(name) for name in self.dynopool_names]

    def feature_sizes(self) -> List[Optional[Tuple[int, int]]]:
        """Output size ``(H, W)`` of every resizing layer at the last forward, in order."""
        return [getattr(pool, 'last_size', None) for pool in self.dynopools]
