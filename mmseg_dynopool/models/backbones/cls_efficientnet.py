"""EfficientNet with DynOPool in place of its strided convolutions (Table 5.3)."""
from typing import List, Optional, Sequence, Union

from mmpretrain.models.backbones import EfficientNet
from mmpretrain.registry import MODELS
from torch import nn

from ..converter import InitRatios, to_pair
from .cls_common import DynOPoolBackboneMixin, check_placement, check_stem, set_stride_one


@MODELS.register_module()
class DynOPoolEfficientNet(DynOPoolBackboneMixin, EfficientNet):
    """EfficientNet whose resolutions are learned with DynOPool.

    Paper: the DynOPool thesis, chapter 5, sections 5.2.1 (Eqs. 5.2-5.3) and 5.5
    (Table 5.3); the layer: chapter 4, Eqs. 4.1-4.8
    (``shared/papers/dynopool_thesis.txt``; its CVPR 2022 version:
    https://arxiv.org/abs/2205.15254). EfficientNet: Tan and Le,
    "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks",
    https://arxiv.org/abs/1905.11946.

    Built from mmpretrain's :class:`~mmpretrain.models.EfficientNet`. Every strided conv
    - the stem conv (``stem='imagenet'`` only) and the depthwise conv (``conv1`` of an
    EdgeResidual) of the first block of each stride-2 stage - runs with stride 1 and its
    ``conv + BN + Swish`` output is resized by a DynOPool (``ReLU . Conv_s -> DynOPool_s .
    ReLU . Conv_1``, Eq. 5.2), before the squeeze-excitation and the projection conv.
    Stride-2 blocks have no residual connection, so nothing has to share a pool.

    ``stem='imagenet'``: five DynOPool layers; for B0 with the initial ratios the feature
    maps are EfficientNet-B0's ``[112,112] [56,56] [28,28] [14,14] [7,7]`` at 224x224.
    ``stem='cifar'``: the stem conv and the first stride-2 stage run at stride 1 without
    a pool (the CIFAR convention of MobileNetV2, EfficientNet's parent architecture;
    the thesis has no CIFAR EfficientNet), three DynOPool layers, ``[16,16] [8,8] [4,4]``
    at 32x32.

    ``placement='before'`` puts each of these DynOPools in front of its conv instead
    (the stem pool resizes the image, a block pool the expansion conv's output, or the
    block input for an EdgeResidual) and the conv runs with stride 1 at the pooled
    resolution (``Conv_s -> Conv_1 . DynOPool_s``, Eq. 5.3): at the initial ratios every
    conv runs at the human model's resolution and the model costs exactly the human
    EfficientNet's GMACs.

    Cost with the default ``placement='after'``: Eq. 5.2 runs the stem conv and the
    replaced depthwise convs (with their BN) at their input resolution, so at its
    initial ratios the model costs more than the human-designed EfficientNet. The
    counts, against Table 5.3, are in ``configs/dynopool_cls/README.md``.

    State-dict keys are mmpretrain EfficientNet's plus ``dynopool_stem.alpha`` and
    ``layers.<i>.0.dynopool.alpha`` (``.stride`` with DiffStride); mmpretrain
    EfficientNet checkpoints load unchanged.

    Args:
        arch (str): as for mmpretrain's ``EfficientNet``. Default: ``'b0'``.
        stem, init_ratios, pool_cfg, placement: the arguments every DynOPool
            classification backbone takes (:mod:`.cls_common`); ``init_ratios=None``
            starts every pool at 0.5 (the human model).
        drop_path_rate, out_indices, frozen_stages, conv_cfg, norm_cfg, act_cfg,
        norm_eval, with_cp, init_cfg: as for mmpretrain's ``EfficientNet``. Pools of
            frozen layers are frozen with them.
        dynopool_cfg (dict, optional): deprecated name of ``pool_cfg`` (a
            ``DeprecationWarning``; given with ``pool_cfg``, its keys update
            ``pool_cfg``'s). Default: None.

    Example:
        >>> import torch
        >>> from mmseg_dynopool.models.backbones import DynOPoolEfficientNet
        >>> model = DynOPoolEfficientNet(arch='b0', stem='cifar')
        >>> model.dynopool_names
        ['layers.3.0.dynopool', 'layers.4.0.dynopool', 'layers.5.0.dynopool']
        >>> outs = model(torch.randn(1, 3, 32, 32))
        >>> model.feature_sizes(), tuple(outs[-1].shape)
        ([(16, 16), (8, 8), (4, 4)], (1, 1280, 4, 4))
    """

    def __init__(self,
                 arch: str = 'b0',
                 stem: str = 'imagenet',
                 init_ratios: InitRatios = None,
                 pool_cfg: Optional[dict] = None,
                 placement: str = 'after',
                 drop_path_rate: float = 0.,
                 out_indices: Sequence[int] = (6, ),
                 frozen_stages: int = 0,
                 conv_cfg: Optional[dict] = dict(type='Conv2dAdaptivePadding'),
                 norm_cfg: dict = dict(type='BN', eps=1e-3),
                 act_cfg: dict = dict(type='Swish'),
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = [
                     dict(type='Kaiming', layer='Conv2d'),
                     dict(type='Constant', layer=['_BatchNorm', 'GroupNorm'], val=1)
                 ],
                 dynopool_cfg: Optional[dict] = None) -> None:
        self.stem_type = check_stem(stem)
        check_placement(placement)
        super().__init__(
            arch=arch, drop_path_rate=drop_path_rate, out_indices=out_indices,
            frozen_stages=frozen_stages, conv_cfg=conv_cfg, norm_cfg=norm_cfg,
            act_cfg=act_cfg, norm_eval=norm_eval, with_cp=with_cp, init_cfg=init_cfg)
        if stem == 'cifar':
            # Stem conv and first stride-2 stage at stride 1, without pools.
            strided = [m for m in self.modules()
                       if isinstance(m, nn.Conv2d) and to_pair(m.stride) == (2, 2)]
            for conv in strided[:2]:
                set_stride_one(conv)
        # Block pools default to layers.<i>.0.dynopool (the block).
        self.convert(placement, init_ratios, pool_cfg, dynopool_cfg,
                     pool_names={'layers.0.conv': 'dynopool_stem'})
