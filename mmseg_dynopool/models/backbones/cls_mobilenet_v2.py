"""MobileNetV2 with DynOPool in place of its strided convolutions (Table 5.1)."""
from typing import List, Optional, Sequence, Union

from mmpretrain.models.backbones import MobileNetV2
from mmpretrain.registry import MODELS

from ..converter import InitRatios
from .cls_common import DynOPoolBackboneMixin, check_placement, check_stem, set_stride_one


def _cifar_strides(model: MobileNetV2) -> None:
    """The CIFAR layout: stride 1 in the stem conv and in the first 24-channel block.

    This is the common CIFAR MobileNetV2 (e.g. kuangliu/pytorch-cifar, used by Shape
    Adaptor): at 32x32 the resolutions are 32 (stem, stages 1-2), 16, 8, 8, 4, 4.
    """
    set_stride_one(model.conv1.conv)
    block = model.layer2[0]
    set_stride_one(block.conv[-2].conv)
    block.stride = 1


@MODELS.register_module()
class CIFARMobileNetV2(MobileNetV2):
    """The human-designed CIFAR MobileNetV2 of Table 5.1 (no DynOPool).

    Paper: the DynOPool thesis, chapter 5, section 5.1 and Table 5.1
    (``shared/papers/dynopool_thesis.txt``), which takes its CIFAR models from Shape
    Adaptor (Liu et al., https://arxiv.org/abs/2008.00892). MobileNetV2: Sandler et
    al., "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
    https://arxiv.org/abs/1801.04381.

    mmpretrain's :class:`~mmpretrain.models.MobileNetV2` with stride 1 in the stem conv
    and in the first block of stage 2, as in the CIFAR variant that Shape Adaptor and
    the thesis use: on 32x32 inputs the feature maps are ``[16,16] [8,8] [4,4]`` after
    the three remaining stride-2 blocks. Same state-dict keys as ``MobileNetV2``. Its
    GMACs against Table 5.1: ``configs/dynopool_cls/README.md``.

    Args:
        **kwargs: the arguments of mmpretrain's ``MobileNetV2`` (``widen_factor``,
            ``out_indices``, ``frozen_stages``, ``conv_cfg``, ``norm_cfg``,
            ``act_cfg``, ``norm_eval``, ``with_cp``, ``init_cfg``).

    Example:
        >>> import torch
        >>> from mmseg_dynopool.models.backbones import CIFARMobileNetV2
        >>> model = CIFARMobileNetV2(widen_factor=0.5)
        >>> tuple(model(torch.randn(1, 3, 32, 32))[-1].shape)
        (1, 1280, 4, 4)
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        _cifar_strides(self)


@MODELS.register_module()
class DynOPoolMobileNetV2(DynOPoolBackboneMixin, MobileNetV2):
    """MobileNetV2 whose resolutions are learned with DynOPool.

    Paper: the DynOPool thesis, chapter 5, section 5.2.1, Eqs. 5.2-5.3 (the layer:
    chapter 4, Eqs. 4.1-4.8; ``shared/papers/dynopool_thesis.txt``; its CVPR 2022
    version: https://arxiv.org/abs/2205.15254). MobileNetV2: Sandler et al.,
    "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
    https://arxiv.org/abs/1801.04381.

    Built from mmpretrain's :class:`~mmpretrain.models.MobileNetV2`. Every strided conv
    - the stem conv (``stem='imagenet'`` only) and the depthwise conv of each stride-2
    inverted-residual block - runs with stride 1 and its ``conv + BN + ReLU6`` output
    is resized by a DynOPool (``ReLU . Conv_s -> DynOPool_s . ReLU . Conv_1``, Eq. 5.2)
    before the block's projection conv. Stride-2 blocks have no residual connection, so
    nothing has to share a pool.

    ``stem='imagenet'``: five DynOPool layers (stem, stages 2, 3, 4, 6); with the initial
    ratios the feature maps are Table 5.1's ``[112,112] [56,56] [28,28] [14,14] [7,7]`` at
    224x224. ``stem='cifar'``: the layout of :class:`CIFARMobileNetV2` (stem and stage 2
    at stride 1), three DynOPool layers (stages 3, 4, 6), ``[16,16] [8,8] [4,4]`` at
    32x32.

    ``placement='before'`` puts each of these DynOPools in front of its conv instead
    (the stem pool resizes the image, the block pool the expansion conv's output) and
    the conv runs with stride 1 at the pooled resolution (``Conv_s -> Conv_1 .
    DynOPool_s``, Eq. 5.3): at the initial ratios every conv runs at the human model's
    resolution, and the model costs exactly the human GMACs (same feature-map sizes).

    Cost with the default ``placement='after'``: Eq. 5.2 runs the stem conv and the
    replaced depthwise convs (with their BN) at their input resolution, so at its
    initial ratios the model costs more than the human-designed MobileNetV2. The counts
    at initialisation and at the feature-map sizes of the thesis' DynOPool
    MobileNetV2s, against Table 5.1, are in ``configs/dynopool_cls/README.md``.

    State-dict keys are mmpretrain MobileNetV2's plus ``dynopool_stem.alpha`` and
    ``layer<i>.0.dynopool.alpha`` (``.stride`` with DiffStride); mmpretrain MobileNetV2
    checkpoints load unchanged.

    Args:
        stem, init_ratios, pool_cfg, placement: the arguments every DynOPool
            classification backbone takes (:mod:`.cls_common`); ``init_ratios=None``
            starts every pool at 0.5 (the human model).
        widen_factor, out_indices, frozen_stages, conv_cfg, norm_cfg, act_cfg,
        norm_eval, with_cp, init_cfg: as for mmpretrain's ``MobileNetV2``. A frozen
            stem (``frozen_stages >= 0``) freezes the stem pool; frozen stages freeze
            their pools.
        dynopool_cfg (dict, optional): deprecated name of ``pool_cfg`` (a
            ``DeprecationWarning``; given with ``pool_cfg``, its keys update
            ``pool_cfg``'s). Default: None.

    Example:
        >>> import torch
        >>> from mmseg_dynopool.models.backbones import DynOPoolMobileNetV2
        >>> model = DynOPoolMobileNetV2(stem='cifar', widen_factor=0.5)
        >>> model.dynopool_names
        ['layer3.0.dynopool', 'layer4.0.dynopool', 'layer6.0.dynopool']
        >>> outs = model(torch.randn(1, 3, 32, 32))
        >>> model.feature_sizes(), tuple(outs[-1].shape)
        ([(16, 16), (8, 8), (4, 4)], (1, 1280, 4, 4))
    """

    def __init__(self,
                 stem: str = 'imagenet',
                 init_ratios: InitRatios = None,
                 pool_cfg: Optional[dict] = None,
                 placement: str = 'after',
                 widen_factor: float = 1.,
                 out_indices: Sequence[int] = (7, ),
                 frozen_stages: int = -1,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: dict = dict(type='ReLU6'),
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = [
                     dict(type='Kaiming', layer=['Conv2d']),
                     dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm'])
                 ],
                 dynopool_cfg: Optional[dict] = None) -> None:
        self.stem_type = check_stem(stem)
        check_placement(placement)
        super().__init__(
            widen_factor=widen_factor, out_indices=out_indices,
            frozen_stages=frozen_stages, conv_cfg=conv_cfg, norm_cfg=norm_cfg,
            act_cfg=act_cfg, norm_eval=norm_eval, with_cp=with_cp, init_cfg=init_cfg)
        if stem == 'cifar':
            _cifar_strides(self)
        # Block pools default to layer<i>.0.dynopool (the inverted-residual block).
        self.convert(placement, init_ratios, pool_cfg, dynopool_cfg,
                     pool_names={'conv1.conv': 'dynopool_stem'})
