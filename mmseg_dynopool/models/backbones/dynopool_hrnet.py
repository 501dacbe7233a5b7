"""HRNet with every strided convolution replaced by DynOPool + stride-1 conv (Eq. 5.3)."""
from typing import Dict, List, Optional, Sequence, Tuple, Union

from mmseg.models.backbones.hrnet import HRNet
from mmseg.registry import MODELS
from torch import nn

from ...layers import pool_cfg_arg, resizing_layer_cfg, resizing_layer_class
from ..converter import convert_to_dynopool

# Resolution levels, in order: the stem (after conv1's pool) and the four streams.
LEVELS = ('stem', 'stream1', 'stream2', 'stream3', 'stream4')
# The first strided conv into each level names that level's pool.
_FIRST_OP = ('conv1', 'conv2', 'transition1.1.0.0', 'transition2.2.0.0',
             'transition3.3.0.0')


@MODELS.register_module()
class DynOPoolHRNet(HRNet):
    """HRNet whose resolutions are learned with DynOPool.

    Paper: the DynOPool thesis, chapter 5, sections 5.2.1 (Eq. 5.3) and 5.6
    (Table 5.4); the layer and its GMACs loss: chapter 4, Eqs. 4.1-4.8
    (``shared/papers/dynopool_thesis.txt``; its CVPR 2022 version:
    https://arxiv.org/abs/2205.15254). HRNet: Sun et al., "High-Resolution
    Representations for Labeling Pixels and Regions", https://arxiv.org/abs/1904.04514.
    Configs and results: ``configs/dynopool_hrnet/README.md``.

    mmseg's :class:`~mmseg.models.backbones.HRNet` converted by
    :func:`~mmseg_dynopool.models.converter.convert_to_dynopool` with
    ``placement='before'``: every strided convolution - stem ``conv1`` and ``conv2``,
    the transition convs that open streams 2-4 and every step of the fuse-layer
    downsampling chains - becomes DynOPool followed by the same convolution with stride
    1 (Eq. 5.3). One DynOPool per resolution level (stem, stream 1-4) is shared by every
    path into that level (section 5.2.1), so all tensors of a stream have one size for
    any input size. The fuse layers' fixed-factor upsampling goes (the converter's
    ``fuse_upsampling`` rule): ``HRModule.forward`` already resizes to the target
    stream's exact size, and ratios are no longer powers of two.

    State-dict keys equal mmseg HRNet's plus ``dynopool_<level>.alpha``
    (``dynopool_<level>.stride`` with DiffStride); with the initial ratio 0.5 the five
    feature-map sizes equal mmseg HRNet's for every input size (even or odd: DynOPool
    rounds ``H / 2`` like a stride-2 3x3 conv with padding 1).

    ``pool_cfg=dict(type='ShapeAdaptor' | 'DiffStride', ...)`` builds those layers
    instead (``docs/baselines.md``), at the same places, with the same names and initial
    ratios. Their sizes follow their own rules (ShapeAdaptor floors ``H s``, DiffStride
    gives about ``H / S + 2R``), not the strided convs', so the converter runs with
    ``exact_sizes=False`` for them; all tensors of a stream still share one size.

    Args:
        extra (dict): the four stages (``stage1`` .. ``stage4``: ``num_modules``,
            ``num_branches``, ``block``, ``num_blocks``, ``num_channels``), as for
            mmseg's ``HRNet``.
        in_channels, conv_cfg, norm_cfg, norm_eval, with_cp, frozen_stages,
        zero_init_residual, multiscale_output, pretrained, init_cfg: as for mmseg's
            ``HRNet``. A frozen stage freezes the pools of the levels it enters.
        pool_cfg (dict, optional): config of the five resizing layers: ``type``
            (``'DynOPool'``, the default, ``'ShapeAdaptor'`` or ``'DiffStride'``; any
            other is a ``ValueError``) and that layer's keyword arguments (DynOPool:
            ``min_size``, ``aggregation``, ``max_ratio``, ``max_size``...;
            ShapeAdaptor: ``r1``, ``r2``, ``min_size``...; DiffStride:
            ``smoothness``...), not ``init_ratio`` (use ``init_ratios``). Default:
            None (DynOPool with its defaults).
        dynopool_cfg (dict, optional): deprecated name of ``pool_cfg`` (a warning;
            given with ``pool_cfg``, its keys update ``pool_cfg``'s).
        init_ratios (float | sequence | dict): initial ratios, by the package's one rule
            (:mod:`mmseg_dynopool.models.converter.init_ratios`): one ratio (a float or
            ``(r_h, r_w)``) for all five levels, a list of five (stem, stream1..4) or a
            dict ``{'dynopool_<level>': ratio}``. Default: 0.5 (the human HRNet).

    Example:
        >>> import torch
        >>> from mmseg_dynopool.models.backbones import DynOPoolHRNet
        >>> extra = dict(  # a tiny HRNet: one block per branch
        ...     stage1=dict(num_modules=1, num_branches=1, block='BOTTLENECK',
        ...                 num_blocks=(1, ), num_channels=(8, )),
        ...     stage2=dict(num_modules=1, num_branches=2, block='BASIC',
        ...                 num_blocks=(1, 1), num_channels=(8, 16)),
        ...     stage3=dict(num_modules=1, num_branches=3, block='BASIC',
        ...                 num_blocks=(1, 1, 1), num_channels=(8, 16, 32)),
        ...     stage4=dict(num_modules=1, num_branches=4, block='BASIC',
        ...                 num_blocks=(1, 1, 1, 1), num_channels=(8, 16, 32, 64)))
        >>> model = DynOPoolHRNet(extra, init_ratios=[0.5, 0.5, 0.45, 0.4, 0.5])
        >>> outs = model(torch.randn(1, 3, 64, 64))
        >>> list(model.feature_sizes().items())[2:]  # stem 32x32, stream1 16x16
        [('stream2', (7, 7)), ('stream3', (3, 3)), ('stream4', (2, 2))]
        >>> [tuple(out.shape) for out in outs]
        [(1, 8, 16, 16), (1, 16, 7, 7), (1, 32, 3, 3), (1, 64, 2, 2)]
        >>> # ShapeAdaptor at the same places: pool_cfg picks the resizing layer.
        >>> model = DynOPoolHRNet(extra, pool_cfg=dict(type='ShapeAdaptor'))
        >>> type(model.pools['stream2']).__name__
        'ShapeAdaptor'
    """

    def __init__(self,
                 extra: dict,
                 in_channels: int = 3,
                 conv_cfg: Optional[dict] = None,
                 norm_cfg: dict = dict(type='BN', requires_grad=True),
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 frozen_stages: int = -1,
                 zero_init_residual: bool = False,
                 multiscale_output: bool = True,
                 pretrained: Optional[str] = None,
                 init_cfg: Optional[Union[dict, List[dict]]] = None,
                 pool_cfg: Optional[dict] = None,
                 init_ratios: Union[float, Sequence, dict] = 0.5,
                 dynopool_cfg: Optional[dict] = None) -> None:
        super().__init__(extra, in_channels, conv_cfg, norm_cfg, norm_eval, with_cp,
                         frozen_stages, zero_init_residual, multiscale_output,
                         pretrained, init_cfg)
        cfg = resizing_layer_cfg(pool_cfg_arg(pool_cfg, dynopool_cfg, 'DynOPoolHRNet'))
        conversion = convert_to_dynopool(
            self, placement='before', init_ratios=init_ratios, pool_cfg=cfg,
            in_channels=in_channels,
            # ShapeAdaptor / DiffStride never reproduce the strided convs' sizes.
            exact_sizes=resizing_layer_class(cfg['type']).exact_sizes,
            pool_names={op: f'dynopool_{lvl}' for op, lvl in zip(_FIRST_OP, LEVELS)})
        expected = [f'dynopool_{level}' for level in LEVELS]
        if conversion.left_alone or conversion.pool_names != expected:
            raise RuntimeError(f'DynOPoolHRNet: unexpected conversion (pools '
                               f'{conversion.pool_names}, left alone '
                               f'{conversion.left_alone})')

    @property
    def pools(self) -> Dict[str, nn.Module]:
        """The five resizing layers (DynOPool instances by default) by level name."""
        return {level: getattr(self, f'dynopool_{level}', None) for level in LEVELS}

    def stream_pool(self, stream: int) -> nn.Module:
        """Resizing layer of stream ``stream`` (0-based: 0 is stream 1)."""
        return getattr(self, f'dynopool_{LEVELS[stream + 1]}')

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict,
                              missing_keys, unexpected_keys, error_msgs) -> None:
        # mmengine's non-strict loading (tools/test.py, init_cfg) only logs shape
        # mismatches and carries on with random weights; a checkpoint of another HRNet
        # width would then give a silently wrong model. Refuse it up front. Missing keys
        # (the alphas of a plain HRNet checkpoint) stay allowed.
        mismatched = [(k, tuple(state_dict[prefix + k].shape), tuple(v.shape))
                      for k, v in self.state_dict().items()
                      if prefix + k in state_dict and state_dict[prefix + k].shape != v.shape]
        if mismatched:
            k, got, want = mismatched[0]
            raise ValueError(
                f'checkpoint does not fit this DynOPoolHRNet: {len(mismatched)} tensors '
                f'have other shapes, e.g. {prefix}{k}: checkpoint {got} vs model {want}. '
                'Is it a checkpoint of another architecture or width (e.g. W18 vs W48)?')
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict,
                                      missing_keys, unexpected_keys, error_msgs)

    def train(self, mode: bool = True) -> 'DynOPoolHRNet':
        super().train(mode)
        return self  # mmseg's HRNet.train returns None; nn.Module's contract is self

    def feature_sizes(self) -> Dict[str, Optional[Tuple[int, int]]]:
        """Output size of each level's resizing layer at the last forward."""
        return {level: getattr(pool, 'last_size', None)
                for level, pool in self.pools.items()}
