"""HRNet with every strided convolution replaced by DynOPool + stride-1 conv (Eq. 5.3)."""
from typing import Dict, List, Optional, Sequence, Tuple, Union

from mmseg.models.backbones.hrnet import HRNet
from mmseg.models.utils import Upsample
from mmseg.registry import MODELS
from torch import nn

from ...ops import DynOPool

# Resolution levels, in order: the stem (after conv1's pool) and the four streams.
LEVELS = ('stem', 'stream1', 'stream2', 'stream3', 'stream4')


class ResizeBefore:
    """Forward pre-hook that feeds a module the output of a (shared) DynOPool.

    Kept as a hook rather than a wrapper module so the convolution's state-dict keys stay
    exactly mmseg's (pretrained HRNet checkpoints load unchanged). A class (not a closure)
    so that ``copy.deepcopy`` of the model re-targets the hook at the copied pool.
    """

    def __init__(self, pool: DynOPool) -> None:
        self.pool = pool

    def __call__(self, module: nn.Module, args: tuple) -> tuple:
        return (self.pool(args[0]), *args[1:])


def attach_pool(conv: nn.Module, pool: DynOPool) -> None:
    """Turn a strided conv into ``conv_1 . DynOPool`` (stride 1, pool applied first)."""
    if not hasattr(conv, 'stride'):
        raise TypeError(f'cannot attach DynOPool to {type(conv).__name__}: no stride')
    stride = tuple(conv.stride) if isinstance(conv.stride, (tuple, list)) else (
        conv.stride, conv.stride)
    if stride != (2, 2):
        raise ValueError(f'expected a stride-2 convolution, got stride {conv.stride}')
    conv.stride = (1, 1)
    conv.register_forward_pre_hook(ResizeBefore(pool))


@MODELS.register_module()
class DynOPoolHRNet(HRNet):
    """HRNet whose resolutions are learned with DynOPool (thesis section 5.6).

    Every strided convolution of mmseg's :class:`~mmseg.models.backbones.HRNet` - stem
    ``conv1`` and ``conv2``, the transition convs that open streams 2-4 and every step of
    the fuse-layer downsampling chains - becomes DynOPool followed by the same convolution
    with stride 1 (Eq. 5.3). One DynOPool instance per resolution level (stem, stream 1-4)
    is shared by every path into that level (section 5.2.1), so all tensors of a stream
    have one size for any input size. Fuse-layer upsampling resizes bilinearly to the
    exact size of the target stream (ratios are no longer powers of two).

    State-dict keys equal mmseg HRNet's plus ``dynopool_<level>.alpha``; with the initial
    ratio 0.5 the five feature-map sizes equal mmseg HRNet's on even inputs.

    Args:
        extra, in_channels, conv_cfg, norm_cfg, norm_eval, with_cp, frozen_stages,
        zero_init_residual, multiscale_output, pretrained, init_cfg: as for mmseg's
            ``HRNet``.
        dynopool_cfg (dict, optional): keyword arguments for every DynOPool
            (``min_size``, ``aggregation``, ``max_ratio``, ``max_size``...). Default: None.
        init_ratios (float | sequence): initial ratio per level (stem, stream1..4); a
            single value applies to all five. Each entry may be a float or (r_h, r_w).
            Default: 0.5 (the human-designed HRNet).
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
                 dynopool_cfg: Optional[dict] = None,
                 init_ratios: Union[float, Sequence] = 0.5) -> None:
        self._pools_ready = False
        super().__init__(extra, in_channels, conv_cfg, norm_cfg, norm_eval, with_cp,
                         frozen_stages, zero_init_residual, multiscale_output,
                         pretrained, init_cfg)
        ratios = self._per_level(init_ratios)
        cfg = dict(dynopool_cfg or {})
        if 'init_ratio' in cfg or 'type' in cfg:
            raise ValueError('dynopool_cfg must not set init_ratio/type; use init_ratios')
        for level, ratio in zip(LEVELS, ratios):
            self.add_module(f'dynopool_{level}', DynOPool(init_ratio=ratio, **cfg))
        self._convert()
        self._pools_ready = True
        self._freeze_stages()

    @staticmethod
    def _per_level(init_ratios) -> List:
        if isinstance(init_ratios, (int, float)) or (
                isinstance(init_ratios, (tuple, list)) and len(init_ratios) == 2
                and all(isinstance(v, (int, float)) for v in init_ratios)):
            return [init_ratios] * len(LEVELS)
        if not isinstance(init_ratios, (tuple, list)) or len(init_ratios) != len(LEVELS):
            raise ValueError(
                f'init_ratios must be one ratio or one per level {LEVELS}, got '
                f'{init_ratios!r}')
        return list(init_ratios)

    @property
    def pools(self) -> Dict[str, DynOPool]:
        """The five DynOPool instances by level name."""
        return {level: getattr(self, f'dynopool_{level}') for level in LEVELS}

    def stream_pool(self, stream: int) -> DynOPool:
        """DynOPool of stream ``stream`` (0-based: 0 is stream 1)."""
        return getattr(self, f'dynopool_{LEVELS[stream + 1]}')

    def _convert(self) -> None:
        attach_pool(self.conv1, self.dynopool_stem)
        attach_pool(self.conv2, self.dynopool_stream1)
        for t, transition in enumerate((self.transition1, self.transition2,
                                        self.transition3)):
            num_pre = t + 1  # streams that exist before transition t+1
            for i, layer in enumerate(transition):
                if layer is None or i < num_pre:
                    continue  # same-resolution channel adapters have stride 1
                # Step j of a new branch's chain goes to stream num_pre + j.
                for j, step in enumerate(layer):
                    attach_pool(step[0], self.stream_pool(num_pre + j))
        for stage in (self.stage2, self.stage3, self.stage4):
            for module in stage:
                self._convert_fuse(module)

    def _convert_fuse(self, module) -> None:
        if module.fuse_layers is None:
            return
        for i, fuse_layer in enumerate(module.fuse_layers):
            for j, path in enumerate(fuse_layer):
                if path is None:
                    continue
                if j > i:
                    # mmseg upsamples by 2**(j-i) and then resizes to x[i]'s size; with
                    # learned sizes that would interpolate twice. HRModule.forward already
                    # resizes to the target size, so the fixed-factor Upsample goes.
                    for k, sub in enumerate(path):
                        if isinstance(sub, Upsample):
                            path[k] = nn.Identity()
                else:
                    # Step k of the chain from stream j goes to stream j + k + 1.
                    for k, step in enumerate(path):
                        attach_pool(step[0], self.stream_pool(j + k + 1))

    def _freeze_stages(self) -> None:
        super()._freeze_stages()
        if not getattr(self, '_pools_ready', False):
            return
        # A frozen stage keeps the resolutions it sets: the stem freezes the stem and
        # stream-1 pools, stage i (with transition i) the pool of stream i+1.
        frozen = []
        if self.frozen_stages >= 0:
            frozen += [self.dynopool_stem, self.dynopool_stream1]
        for i in range(1, min(self.frozen_stages, 3) + 1):
            frozen.append(self.stream_pool(i))
        for pool in frozen:
            pool.alpha.requires_grad = False

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
        """Output size of each level's DynOPool at the last forward."""
        return {level: pool.last_size for level, pool in self.pools.items()}
