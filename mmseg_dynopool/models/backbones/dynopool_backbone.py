"""``DynOPoolBackbone``: any registered backbone with its resizing ops made learnable."""
import difflib
import inspect
from typing import Callable, List, Optional, Union

from mmengine.registry import Registry
from mmseg.registry import MODELS as SEG_MODELS
from torch import nn

from ..converter import convert_to_dynopool


def build_dynopool_backbone(registry: Registry,
                            backbone: dict,
                            pretrained: Optional[str] = None,
                            init_cfg: Optional[Union[dict, List[dict]]] = None,
                            **convert_args) -> nn.Module:
    """Build ``backbone`` from ``registry`` and convert it in place with
    :func:`~mmseg_dynopool.models.converter.convert_to_dynopool`: what the registered
    ``DynOPoolBackbone`` does.

    Paper: the DynOPool thesis, chapter 4, section 4.4 (any resizing op can become
    DynOPool) and chapter 5, Eqs. 5.1-5.3 (``shared/papers/dynopool_thesis.txt``; its
    CVPR 2022 version: https://arxiv.org/abs/2205.15254).

    The result **is** the inner backbone - same class, same ``forward``, ``train`` /
    ``frozen_stages`` / ``norm_eval`` / ``init_weights`` behaviour and the same
    state-dict keys plus one ``<pool>.alpha`` per pool - so checkpoints of the original
    backbone, or of a whole model around it, load unchanged (only the alphas missing).
    A frozen stage freezes the pools of the levels its strided ops enter. What was
    converted is in :func:`~mmseg_dynopool.models.converter.get_conversion`
    (``model._dynopool_conversion``).

    Args:
        registry (Registry): where ``backbone`` is registered (mmseg's or mmpretrain's
            ``MODELS``).
        backbone (dict): config of the backbone to convert.
        pretrained (str, optional): checkpoint of the inner backbone, given to it as
            ``init_cfg=dict(type='Pretrained', checkpoint=pretrained)`` and loaded by
            ``init_weights()`` after the conversion, as usual. Default: None.
        init_cfg (dict | list[dict], optional): the inner backbone's ``init_cfg``
            (not together with ``pretrained``). Default: None.
        **convert_args: the arguments of ``convert_to_dynopool``: ``placement``
            (default ``'before'``, Eq. 5.3), ``init_ratios``, ``pool_cfg`` (the
            resizing layer: ``type`` ``'DynOPool'`` by default, ``'ShapeAdaptor'`` or
            ``'DiffStride'``, and its arguments), ``skip``, ``merge_consecutive``,
            ``exact_sizes``, ``pool_names``, ``fuse_upsampling``, ``probe_size``,
            ``in_channels``. A misspelt one is a ``TypeError`` naming the valid ones.

    Returns:
        nn.Module: the converted inner backbone.

    Example:
        >>> import torch
        >>> from mmseg.registry import MODELS
        >>> model = build_dynopool_backbone(MODELS, dict(type='ResNetV1c', depth=18),
        ...                                 placement='before')
        >>> type(model).__name__
        'ResNetV1c'
        >>> alphas = [name for name, _ in model.named_parameters()
        ...           if name.endswith('.alpha')]
        >>> len(alphas), alphas[:3]   # stem conv, stem max-pool, layer2's level
        (5, ['dynopool.alpha', 'maxpool.alpha', 'layer2.0.dynopool.alpha'])
        >>> tuple(model(torch.randn(1, 3, 64, 64))[-1].shape)
        (1, 512, 2, 2)
    """
    _check_convert_args(convert_args)
    cfg = dict(backbone)
    if pretrained is not None:
        if init_cfg is not None:
            raise ValueError('give pretrained or init_cfg, not both')
        init_cfg = dict(type='Pretrained', checkpoint=pretrained)
    if init_cfg is not None:
        cfg['init_cfg'] = init_cfg
    model = registry.build(cfg)
    if 'probe_size' in convert_args:
        convert_args['probe_size'] = tuple(convert_args['probe_size'])
    convert_to_dynopool(model, **convert_args)
    return model


def _check_convert_args(convert_args: dict) -> None:
    """Name the wrapper and its valid arguments for a misspelt one: otherwise Python
    reports it against ``convert_to_dynopool()``, a function the config never names."""
    valid = [name for name in inspect.signature(convert_to_dynopool).parameters
             if name != 'module']
    unknown = [name for name in convert_args if name not in valid]
    if not unknown:
        return
    hints = []
    for name in unknown:
        close = difflib.get_close_matches(name, valid + ['backbone', 'pretrained',
                                                         'init_cfg'], n=1)
        if close:
            hints.append(f'{name!r} (did you mean {close[0]!r}?)')
        else:
            hints.append(repr(name))
    raise TypeError(
        f"DynOPoolBackbone got unexpected argument{'s' if len(unknown) > 1 else ''} "
        f"{', '.join(hints)}; valid arguments: backbone, pretrained, init_cfg, "
        f"{', '.join(valid)}")


def _builder(registry: Registry) -> Callable[..., nn.Module]:
    def DynOPoolBackbone(backbone: dict, **kwargs) -> nn.Module:  # noqa: N802
        """Any backbone of this registry with DynOPool in place of its resizing ops.

        Registered in mmseg's and (when installed) mmpretrain's ``MODELS``; it builds
        ``backbone`` and converts it in place, so the result is the inner backbone's
        class with one learnable resizing layer per resolution level. Paper: the
        DynOPool thesis, chapter 4, section 4.4, and chapter 5, Eqs. 5.1-5.3
        (``shared/papers/dynopool_thesis.txt``; its CVPR 2022 version:
        https://arxiv.org/abs/2205.15254). Configs: ``configs/dynopool_any/README.md``.

        Args:
            backbone (dict): config of the backbone to convert.
            **kwargs: ``pretrained``, ``init_cfg`` and the converter's arguments
                (``placement``, default ``'before'``; ``init_ratios``; ``pool_cfg``;
                ``skip``; ...), as for :func:`build_dynopool_backbone`.

        Example:
            >>> import torch
            >>> from mmseg.registry import MODELS
            >>> model = MODELS.build(dict(
            ...     type='DynOPoolBackbone',
            ...     backbone=dict(type='ResNetV1c', depth=18),
            ...     placement='before', init_ratios=None,
            ...     pool_cfg=dict(type='DynOPool', min_size=1.5)))
            >>> type(model).__name__, type(model.layer2[0].dynopool).__name__
            ('ResNetV1c', 'DynOPool')
            >>> tuple(model(torch.randn(1, 3, 64, 64))[-1].shape)
            (1, 512, 2, 2)
        """
        return build_dynopool_backbone(registry, backbone, **kwargs)
    return DynOPoolBackbone


SEG_MODELS.register_module('DynOPoolBackbone', module=_builder(SEG_MODELS))
try:  # mmpretrain is optional for the segmentation side
    from mmpretrain.registry import MODELS as PRETRAIN_MODELS
except ImportError:  # pragma: no cover - depends on the environment
    PRETRAIN_MODELS = None
else:
    PRETRAIN_MODELS.register_module('DynOPoolBackbone', module=_builder(PRETRAIN_MODELS))
