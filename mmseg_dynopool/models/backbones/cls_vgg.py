"""VGG with every max-pooling replaced by DynOPool (thesis Eq. 5.1, Table 5.1)."""
from typing import List, Optional, Sequence, Union

from mmpretrain.models.backbones import VGG
from mmpretrain.registry import MODELS

from ..converter import InitRatios
from .cls_common import DynOPoolBackboneMixin, check_stem


@MODELS.register_module()
class DynOPoolVGG(DynOPoolBackboneMixin, VGG):
    """VGG whose pooling layers are DynOPool layers.

    Paper: the DynOPool thesis, chapter 4, section 4.4, and chapter 5, section 5.2.1,
    Eq. 5.1 (the layer: chapter 4, Eqs. 4.1-4.8; ``shared/papers/dynopool_thesis.txt``;
    its CVPR 2022 version: https://arxiv.org/abs/2205.15254). VGG: Simonyan and
    Zisserman, "Very Deep Convolutional Networks for Large-Scale Image Recognition",
    https://arxiv.org/abs/1409.1556.

    Every ``MaxPool2d(2, 2)`` of mmpretrain's :class:`~mmpretrain.models.VGG` becomes a
    DynOPool (``Pooling_s -> DynOPool_s``, Eq. 5.1); VGG has no strided convolution. As
    in the thesis (and Shape Adaptor, whose models it uses) the classifier is a global
    average pooling and a single fully-connected layer, so the fifth pooling layer is
    dropped by default (``with_last_pool=False``): VGG-16 has four DynOPool layers and,
    with the initial ratios 0.5, the feature maps of Table 5.1's human model -
    ``[112,112] [56,56] [28,28] [14,14]`` at 224x224 and ``[16,16] [8,8] [4,4] [2,2]``
    at 32x32. With ratio 0.5 on even inputs DynOPool equals ``MaxPool2d(2, 2)``, so at
    initialisation the network computes exactly mmpretrain's VGG (same output for the
    same weights) and costs the same GMACs (the counts, against Table 5.1, are in
    ``configs/dynopool_cls/README.md``).

    State-dict keys are mmpretrain VGG's (``features.<i>.conv/bn``) plus
    ``features.<i>.alpha`` for the pools (``features.<i>.stride`` with DiffStride), so
    mmpretrain VGG checkpoints load (those keys are reported missing and keep their
    initial values).

    Args:
        depth (int): 11, 13, 16 or 19. Default: 16.
        stem (str): ``'imagenet'`` or ``'cifar'``. VGG's layout is the same for both
            (the CIFAR variant of Shape Adaptor is the same conv stack on 32x32 inputs);
            accepted for a uniform interface. Default: ``'imagenet'``.
        init_ratios, pool_cfg: as for every DynOPool classification backbone
            (:mod:`.cls_common`); ``init_ratios=None`` starts every pool at 0.5.
        placement (str): accepted for a uniform interface; VGG has no strided conv
            (Eq. 5.1 only), so ``'after'`` and ``'before'`` give the same model.
        with_last_pool (bool): keep the fifth pooling (as a DynOPool). Default: False.
        num_classes (int): must stay -1 (no built-in classifier: the thesis' single
            FC layer is a ``GlobalAveragePooling`` neck and a ``LinearClsHead``).
            Default: -1.
        num_stages, dilations, out_indices, frozen_stages, conv_cfg, norm_cfg,
        act_cfg, norm_eval, ceil_mode, init_cfg: as for mmpretrain's ``VGG``.
            ``ceil_mode`` only affects the max-pooling that DynOPool replaces and must
            stay False. Pools of frozen stages are frozen with them.
        dynopool_cfg (dict, optional): deprecated name of ``pool_cfg`` (a
            ``DeprecationWarning``; given with ``pool_cfg``, its keys update
            ``pool_cfg``'s). Default: None.

    Example:
        >>> import torch
        >>> from mmseg_dynopool.models.backbones import DynOPoolVGG
        >>> model = DynOPoolVGG(depth=11, stem='cifar')
        >>> model.dynopool_names      # the max-poolings' places
        ['features.1', 'features.3', 'features.6', 'features.9']
        >>> outs = model(torch.randn(1, 3, 32, 32))
        >>> model.feature_sizes(), tuple(outs[-1].shape)
        ([(16, 16), (8, 8), (4, 4), (2, 2)], (1, 512, 2, 2))
    """

    def __init__(self,
                 depth: int = 16,
                 stem: str = 'imagenet',
                 init_ratios: InitRatios = None,
                 pool_cfg: Optional[dict] = None,
                 placement: str = 'after',
                 with_last_pool: bool = False,
                 num_classes: int = -1,
                 num_stages: int = 5,
                 dilations: Sequence[int] = (1, 1, 1, 1, 1),
                 out_indices: Optional[Sequence[int]] = None,
                 frozen_stages: int = -1,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: Optional[dict] = dict(type='BN'),
                 act_cfg: dict = dict(type='ReLU'),
                 norm_eval: bool = False,
                 ceil_mode: bool = False,
                 init_cfg: Optional[Union[dict, List[dict]]] = [
                     dict(type='Kaiming', layer=['Conv2d']),
                     dict(type='Constant', val=1., layer=['_BatchNorm']),
                     dict(type='Normal', std=0.01, layer=['Linear'])
                 ],
                 dynopool_cfg: Optional[dict] = None) -> None:
        self.stem_type = check_stem(stem)
        if ceil_mode:
            raise ValueError('ceil_mode applies to max-pooling, which DynOPool replaces')
        if num_classes > 0:
            raise ValueError('DynOPoolVGG has no built-in classifier (the thesis uses a '
                             'single FC layer): use num_classes=-1 with a '
                             'GlobalAveragePooling neck and a LinearClsHead')
        super().__init__(
            depth=depth, num_classes=num_classes, num_stages=num_stages,
            dilations=dilations, out_indices=out_indices, frozen_stages=frozen_stages,
            conv_cfg=conv_cfg, norm_cfg=norm_cfg, act_cfg=act_cfg, norm_eval=norm_eval,
            ceil_mode=ceil_mode, with_last_pool=with_last_pool, init_cfg=init_cfg)
        # MaxPool2d(2, 2) floors odd sizes where DynOPool rounds: equal sizes on even
        # inputs only, hence exact_sizes=False. The pools replace the max-poolings in
        # place (keys features.<i>.alpha); VGG._freeze_stages freezes them with their
        # stage.
        self.convert(placement, init_ratios, pool_cfg, dynopool_cfg, exact_sizes=False)
