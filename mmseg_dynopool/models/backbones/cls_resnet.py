"""ResNet with DynOPool in place of its strided convs and max-pooling (Table 5.1)."""
from typing import List, Optional, Sequence, Union

from mmcv.cnn import build_conv_layer, build_norm_layer
from mmpretrain.models.backbones import ResNet
from mmpretrain.registry import MODELS
from torch import nn

from ..converter import InitRatios
from .cls_common import DynOPoolBackboneMixin, check_placement, check_stem


@MODELS.register_module()
class DynOPoolResNet(DynOPoolBackboneMixin, ResNet):
    """ResNet whose resolutions are learned with DynOPool.

    Paper: the DynOPool thesis, chapter 5, section 5.2.1, Eqs. 5.1-5.3 (the layer:
    chapter 4, Eqs. 4.1-4.8; ``shared/papers/dynopool_thesis.txt``; its CVPR 2022
    version: https://arxiv.org/abs/2205.15254). ResNet: He et al., "Deep Residual
    Learning for Image Recognition", https://arxiv.org/abs/1512.03385.

    Built from mmpretrain's :class:`~mmpretrain.models.ResNet` blocks; every resizing
    operation except the final global average pooling is replaced (section 4.4):

    * ``stem='imagenet'``: the stride-2 7x7 stem conv and the max-pooling behind it
      become ``DynOPool . ReLU . BN . Conv7x7_1`` with a single DynOPool of initial ratio
      0.25 (Eq. 5.2 followed by Eq. 5.1 gives two DynOPools in a row; the thesis merges
      them "to prevent the training instability"). ``stem='cifar'`` is mmpretrain's
      ``ResNet_CIFAR`` stem (3x3 conv, stride 1, no pooling): no DynOPool.
    * the first block of every stride-2 stage: the strided conv (``conv2`` for
      ``style='pytorch'``, ``conv1`` for ``'caffe'`` and for BasicBlock) runs with
      stride 1 and its ReLU output is resized by DynOPool before the next conv (Eq. 5.2);
      the shortcut's strided 1x1 conv (+BN) runs with stride 1 and its output is resized
      by the same DynOPool instance - the residual and the shortcut share one alpha
      (section 5.2.1), so one DynOPool per resolution change.

    ``placement='before'`` resizes the inputs of the formerly strided convs instead,
    which then run with stride 1 at the pooled resolution (``Conv_s -> Conv_1 .
    DynOPool_s``, Eq. 5.3): in a downsampling block the residual path is pooled in front
    of its strided conv and the shortcut in front of its 1x1 conv, by the same instance
    (when the strided conv is the block's first conv - ``style='caffe'``, BasicBlock -
    the block input is pooled once for both). The ImageNet stem keeps its single merged
    DynOPool (ratio 0.25), now in front of the 7x7 conv, which thus runs at 56x56
    instead of the human 112x112 (a little cheaper than the human model); splitting it
    into a pool before the conv and one after would add a pool and a state-dict key.
    Every other conv runs at the human model's resolution, so at the initial ratios
    the model costs the human ResNet's GMACs apart from that stem conv. Same pools, same
    ``init_ratios`` and same state-dict keys as ``'after'``.

    With the default initial ratios the feature-map sizes are those of Table 5.1's human
    ResNet-50: ``[56,56] [28,28] [14,14] [7,7]`` at 224x224 (ImageNet stem) and
    ``[16,16] [8,8] [4,4]`` at 32x32 (CIFAR stem).

    Cost with the default ``placement='after'``: Eq. 5.2 runs every replaced strided
    conv at its input resolution - the stem conv, the three strided 3x3 convs and the
    three shortcut 1x1 convs, nothing else - so at its initial ratios the model costs
    more than the human-designed ResNet. This is the thesis' own cost model: the GMACs
    that Table 5.1 reports for its DynOPool ResNet-50s follow from their feature-map
    sizes with this placement, not with ``'before'``. The GMACs loss (Eq. 4.7) is
    relative to the initial state. The counts (ours against Table 5.1, both
    placements) are in ``configs/dynopool_cls/README.md``.

    State-dict keys are those of mmpretrain's ``ResNet`` (``stem='imagenet'``) or
    ``ResNet_CIFAR`` (``stem='cifar'``) plus ``dynopool_stem.alpha`` and
    ``layer<i>.0.dynopool.alpha`` (``.stride`` with DiffStride); their checkpoints load
    unchanged (conv shapes do not
    depend on the stride).

    Args:
        depth (int): 18, 34, 50, 101 or 152. Default: 50.
        stem, init_ratios, pool_cfg, placement: the arguments every DynOPool
            classification backbone takes (:mod:`.cls_common`). ``init_ratios=None``
            starts the stem pool at 0.25 and the others at 0.5 (the human model); a
            list has the stem pool first (``'imagenet'``), then one per stride-2 stage.
            ``pool_cfg=dict(type='ShapeAdaptor')`` with ``stem='imagenet'``: the
            merged stem layer starts at 0.25, which a Shape Adaptor can only start at
            with ``r1 <= 0.25`` (e.g. ``dict(type='ShapeAdaptor', r1=0.25)``; else its
            ``init_ratio`` error), or give the stem another ratio in ``init_ratios``.
        in_channels, stem_channels, base_channels, expansion, num_stages, strides,
        dilations, out_indices, style, frozen_stages, conv_cfg, norm_cfg, norm_eval,
        with_cp, zero_init_residual, init_cfg, drop_path_rate: as for mmpretrain's
            ``ResNet``. ``strides`` entries must be 1 or 2. A frozen stem (``frozen_stages
            >= 0``) freezes the stem pool; frozen stages freeze their pools.
        deep_stem, avg_down: not supported (must be False).
        dynopool_cfg (dict, optional): deprecated name of ``pool_cfg`` (a
            ``DeprecationWarning``; given with ``pool_cfg``, its keys update
            ``pool_cfg``'s). Default: None.

    Example:
        >>> import torch
        >>> from mmseg_dynopool.models.backbones import DynOPoolResNet
        >>> model = DynOPoolResNet(depth=18, stem='cifar')
        >>> model.dynopool_names
        ['layer2.0.dynopool', 'layer3.0.dynopool', 'layer4.0.dynopool']
        >>> outs = model(torch.randn(1, 3, 32, 32))
        >>> model.feature_sizes(), tuple(outs[-1].shape)
        ([(16, 16), (8, 8), (4, 4)], (1, 512, 4, 4))
        >>> # Another placement and ratios; pool_cfg configures every pool.
        >>> model = DynOPoolResNet(depth=18, stem='cifar', placement='before',
        ...                        init_ratios=[0.5, (0.5, 0.25), 0.5],
        ...                        pool_cfg=dict(type='DynOPool', aggregation='avg'))
        >>> outs = model(torch.randn(1, 3, 32, 32))
        >>> model.feature_sizes()
        [(16, 16), (8, 4), (4, 2)]
    """

    def __init__(self,
                 depth: int = 50,
                 stem: str = 'imagenet',
                 init_ratios: InitRatios = None,
                 pool_cfg: Optional[dict] = None,
                 placement: str = 'after',
                 in_channels: int = 3,
                 stem_channels: int = 64,
                 base_channels: int = 64,
                 expansion: Optional[int] = None,
                 num_stages: int = 4,
                 strides: Sequence[int] = (1, 2, 2, 2),
                 dilations: Sequence[int] = (1, 1, 1, 1),
                 out_indices: Sequence[int] = (3, ),
                 style: str = 'pytorch',
                 deep_stem: bool = False,
                 avg_down: bool = False,
                 frozen_stages: int = -1,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN', requires_grad=True),
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 zero_init_residual: bool = True,
                 init_cfg: Optional[Union[dict, List[dict]]] = [
                     dict(type='Kaiming', layer=['Conv2d']),
                     dict(type='Constant', val=1, layer=['_BatchNorm', 'GroupNorm'])
                 ],
                 drop_path_rate: float = 0.0,
                 dynopool_cfg: Optional[dict] = None) -> None:
        if deep_stem or avg_down:
            raise ValueError('DynOPoolResNet does not support deep_stem/avg_down')
        if any(s not in (1, 2) for s in strides):
            raise ValueError(f'strides must be 1 or 2, got {strides}')
        # Set before ResNet.__init__, which calls _make_stem_layer.
        self.stem_type = check_stem(stem)
        check_placement(placement)
        super().__init__(
            depth=depth, in_channels=in_channels, stem_channels=stem_channels,
            base_channels=base_channels, expansion=expansion, num_stages=num_stages,
            strides=strides, dilations=dilations, out_indices=out_indices,
            style=style, deep_stem=False, avg_down=False, frozen_stages=frozen_stages,
            conv_cfg=conv_cfg, norm_cfg=norm_cfg, norm_eval=norm_eval, with_cp=with_cp,
            zero_init_residual=zero_init_residual, init_cfg=init_cfg,
            drop_path_rate=drop_path_rate)
        # ImageNet stem: the stride-2 conv and the max-pooling behind it become one
        # DynOPool of ratio 0.25 (merge_consecutive; it rounds H / 4 where the two ops
        # give ceil(ceil(H / 2) / 2), hence exact_sizes=False). Block pools default to
        # layer<i>.0.dynopool (the block holds both of its branches).
        self.convert(placement, init_ratios, pool_cfg, dynopool_cfg, merge_consecutive=True,
                     exact_sizes=False, pool_names={'conv1': 'dynopool_stem'},
                     in_channels=in_channels)

    def _make_stem_layer(self, in_channels: int, stem_channels: int) -> None:
        if self.stem_type == 'imagenet':
            super()._make_stem_layer(in_channels, stem_channels)
            return
        # mmpretrain's ResNet_CIFAR stem: 3x3 conv, stride 1, no pooling.
        self.conv1 = build_conv_layer(self.conv_cfg, in_channels, stem_channels,
                                      kernel_size=3, stride=1, padding=1, bias=False)
        self.norm1_name, norm1 = build_norm_layer(self.norm_cfg, stem_channels, postfix=1)
        self.add_module(self.norm1_name, norm1)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity()
