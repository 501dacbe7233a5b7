"""Shape Adaptor (Liu, Lin, Wang, Zhang, Perazzi & Johns, ECCV 2020) as a resizing layer.

A Shape Adaptor resizes its input by a learned scale that lies between two fixed ratios
``r1`` and ``r2``. Both fixed-ratio versions of the input ("branches") are computed, each
is resized bilinearly to a shared output size, and the two are blended:

    w   = sigmoid(alpha)                          (weight of the r1 branch)
    s   = w * r1 + (1 - w) * r2                   (output scale)
    H'  = max(floor(H * s), min_size)             (likewise W')
    out = w * resize(branch_r1(x), H' x W') + (1 - w) * resize(branch_r2(x), H' x W')

By default ``r1 = 0.5`` is a 2x2 max pooling and ``r2 = 1`` the identity (the paper's
down-sampling adaptor). The size is an integer chosen from ``alpha`` without a gradient;
in the paper ``alpha`` learns only through the blending weight ``w``.

This module gives the layer the interface of :class:`~mmseg_dynopool.DynOPool`
(``init_ratio``, ``ratio``, ``continuous_size``, ``last_size``, ``last_input_size``,
``reset_parameters_to_initial``, ``count_macs``), so the GMACs loss (Eq. 4.7) and the
tools can treat the three resizing layers alike. ``continuous_size`` is our addition: a
straight-through size whose gradient reaches ``alpha`` through ``s``.

Conventions relative to the paper's public code (see ``docs/baselines.md``):

* ``sigmoid(alpha)`` weights the ``r1`` branch here (the issue's convention), the paper's
  code weights the ``r2`` branch with it; so our ``alpha`` is minus the paper's.
* The paper's memory bound (``limit_dim``) is a property of the whole network: see
  :func:`shape_adaptor_size_limit`, which sets every layer's ``size_penalty``.

Host copies of the scale: ``layers/host_cache.py`` (one batched device->host read per
parameter update for all resizing layers).
"""
import math
from numbers import Integral, Real
from typing import List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.registry import MODELS
from torch import Tensor, nn

from ...utils.pairs import RatioLike, to_pair
from ..base import ResizingLayer
from ..host_cache import SizeLike, in_size_values, int_size, param_key

#: Added before flooring ``H * s`` so that a product that should be an integer but lands
#: a hair below it (floating-point round-off) is not floored one step too far.
_FLOOR_TOLERANCE = 1e-6
POOL_TYPES = ('max', 'avg')


def _positive_real(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f'{name} must be a real number, got {value!r}')
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f'{name} must be positive and finite, got {value!r}')
    return value


def _pool_kernel(ratio: float) -> Optional[int]:
    """``k`` if ``ratio == 1 / k`` for an integer ``k >= 2``, else ``None``."""
    inv = 1.0 / ratio
    k = round(inv)
    if k >= 2 and abs(inv - k) < 1e-9:
        return int(k)
    return None


def _bilinear_branch_size(n: int, ratio: float) -> int:
    return max(1, math.floor(n * ratio + _FLOOR_TOLERANCE))


class _HostScale(NamedTuple):
    """Host copy of one layer's scale, valid while ``key`` (alpha's) matches."""
    key: tuple
    scale64: float     # unpenalised scale as the size rule computes it (float64)
    scale: float       # unpenalised scale in alpha's dtype (``scale(False)``), exactly
    dtype: torch.dtype  # alpha's dtype


@MODELS.register_module()
class ShapeAdaptor(ResizingLayer):
    """Shape Adaptor: blends two fixed-ratio resizings, learning the output scale.

    The learnable parameter is ``alpha`` (one scalar; the paper's adaptor is symmetric,
    so ``r_h = r_w``). ``sigmoid(alpha)`` weights the ``r1`` branch; the output scale is
    ``s = size_penalty * (sigmoid(alpha) * r1 + (1 - sigmoid(alpha)) * r2)`` and the
    output has ``max(floor(H * s), min_size)`` rows (the paper's code floors), likewise
    columns. With ``size_penalty != 1`` (the paper's memory bound) the blending weights
    follow the penalised scale: ``w1 = (r2 - s) / (r2 - r1)``, ``w2 = 1 - w1``.

    Branches: a ratio ``r = 1`` is the identity; ``r = 1/k`` for an integer ``k >= 2`` is
    a ``k x k`` pooling with stride ``k`` (``pool_type``; ``ceil_mode`` only when the
    input is smaller than ``k``); any other ratio (e.g. 1.5 for an up-sampling adaptor)
    is a bilinear resize to ``floor(H * r)``. Each branch is then resized bilinearly to
    the output size (skipped when it already has that size).

    Host synchronisation: the integer sizes come from a host copy of the scale, read
    for all stale resizing layers in one transfer (see the module doc), so forward,
    :meth:`output_size`, :meth:`host_output_size` and :attr:`host_ratio` read the device
    at most once per alpha update. Writes through ``alpha.data`` bypass the version
    counter that detects updates; call :meth:`invalidate_sizes` after them (a switch
    between ``train()`` and ``eval()`` also resynchronises).

    Initialisation: ``alpha`` is set so that the scale equals ``init_ratio``; the weight
    ``sigmoid(alpha)`` is clipped to ``[init_eps, 1 - init_eps]`` (the paper's ``eps``),
    so ``init_ratio = r1`` starts at ``w = 1 - 1e-4``: essentially the ``r1`` branch, i.e.
    the human-designed pooling, but with a weight gradient scaled by ``~1e-4``. The
    paper's heuristic for a network, :meth:`paper_init_ratio`, gives every adaptor the
    same scale so that ``num_adaptors`` of them take the input size to a target size.

    Args:
        init_ratio (float | tuple[float, float], optional): initial output scale, in
            ``[min(r1, r2), max(r1, r2)]``; a pair must have equal entries. ``None`` means
            ``r1``. Default: None.
        r1 (float): ratio of the first branch (weighted by ``sigmoid(alpha)``).
            Default: 0.5.
        r2 (float): ratio of the second branch. Default: 1.0.
        min_size (int): lower bound on each output dimension. Default: 1 (the paper's).
        pool_type (str): ``'max'`` or ``'avg'`` pooling for ``1/k`` branches.
            Default: ``'max'``.
        align_corners (bool): ``align_corners`` of the bilinear resizes (the paper's code
            uses ``True``). Default: True.
        init_eps (float): clip of the initial weight, in ``(0, 0.5)``. Default: 1e-4.

    Paper: Liu et al., "Shape Adaptor: a learnable resizing module", ECCV 2020,
    https://arxiv.org/abs/2008.00892; docs/baselines.md.

    Example:
        >>> layer = ShapeAdaptor(init_ratio=0.7)
        >>> y = layer(torch.randn(2, 8, 32, 32))
        >>> y.shape, layer.last_size          # floor(32 * 0.7) = 22
        (torch.Size([2, 8, 22, 22]), (22, 22))
        >>> h, w = layer.continuous_size((32, 32))   # straight-through, grad to alpha
    """

    def __init__(self,
                 init_ratio: Optional[RatioLike] = None,
                 r1: float = 0.5,
                 r2: float = 1.0,
                 min_size: int = 1,
                 pool_type: str = 'max',
                 align_corners: bool = True,
                 init_eps: float = 1e-4) -> None:
        super().__init__()
        r1 = _positive_real(r1, 'r1')
        r2 = _positive_real(r2, 'r2')
        if r1 == r2:
            raise ValueError(f'r1 and r2 must differ, got r1 = r2 = {r1}')
        if isinstance(min_size, bool) or not isinstance(min_size, Integral) or min_size < 1:
            raise ValueError(f'min_size must be an int >= 1, got {min_size!r}')
        if pool_type not in POOL_TYPES:
            raise ValueError(f'pool_type must be one of {POOL_TYPES}, got {pool_type!r}')
        if not isinstance(align_corners, bool):
            raise TypeError(f'align_corners must be a bool, got {align_corners!r}')
        if isinstance(init_eps, bool) or not isinstance(init_eps, Real) or \
                not 0 < init_eps < 0.5:
            raise ValueError(f'init_eps must be in (0, 0.5), got {init_eps!r}')
        scale = r1 if init_ratio is None else self._parse_init_ratio(init_ratio)
        lo, hi = min(r1, r2), max(r1, r2)
        if not lo <= scale <= hi:
            raise ValueError(f'init_ratio {init_ratio!r} is outside [{lo}, {hi}], the '
                             f'range spanned by r1={r1} and r2={r2}')
        self.r1 = r1
        self.r2 = r2
        self.min_size = int(min_size)
        self.pool_type = pool_type
        self.align_corners = align_corners
        self.init_eps = float(init_eps)
        self.init_ratio: Tuple[float, float] = (scale, scale)
        self._init_alpha = self.alpha_for_ratio(scale, r1, r2, self.init_eps)
        self.alpha = nn.Parameter(torch.tensor([self._init_alpha]))
        #: Memory-bound factor of the paper (``p`` in ``(0, 1]``), set for the whole
        #: network by :func:`shape_adaptor_size_limit`; not part of the state dict.
        self.size_penalty = 1.0
        self.last_size: Optional[Tuple[int, int]] = None
        self.last_input_size: Optional[Tuple[int, int]] = None
        self._host_track()

    # ----------------------------------------------------------------- construction
    @staticmethod
    def _parse_init_ratio(init_ratio: RatioLike) -> float:
        a, b = to_pair(init_ratio, 'init_ratio')
        if a != b:
            raise ValueError(
                'ShapeAdaptor learns one scale for both axes (the paper\'s adaptor is '
                f'symmetric); init_ratio must have equal entries, got {init_ratio!r}')
        return a

    @staticmethod
    def alpha_for_ratio(ratio: float, r1: float = 0.5, r2: float = 1.0,
                        eps: float = 1e-4) -> float:
        """The ``alpha`` whose scale ``sigmoid(alpha) r1 + (1 - sigmoid(alpha)) r2`` is
        ``ratio``, with ``sigmoid(alpha)`` clipped to ``[eps, 1 - eps]``.

        Args:
            ratio (float): target scale between ``r1`` and ``r2``.
            r1 (float): ratio of the branch weighted by ``sigmoid(alpha)``.
            r2 (float): ratio of the other branch.
            eps (float): clip of the weight.

        Example:
            >>> round(ShapeAdaptor.alpha_for_ratio(0.75), 6)   # halfway: weight 0.5
            0.0
        """
        w = (r2 - ratio) / (r2 - r1)
        w = min(max(w, eps), 1.0 - eps)
        return math.log(w / (1.0 - w))

    @staticmethod
    def paper_init_ratio(input_size: float, output_size: float, num_adaptors: int,
                         r1: float = 0.5, r2: float = 1.0) -> float:
        """The paper's initial scale: ``num_adaptors`` equal adaptors take ``input_size``
        to ``output_size``, i.e. ``s = (output_size / input_size) ** (1 / num_adaptors)``,
        clipped to ``[min(r1, r2), max(r1, r2)]`` (the paper falls back to ``r1`` when
        even ``r1`` everywhere cannot reach the target).

        Args:
            input_size (float): network input size (one side).
            output_size (float): wanted size of the last feature map.
            num_adaptors (int): number of Shape Adaptors on the path.
            r1 (float): first branch ratio. Default: 0.5.
            r2 (float): second branch ratio. Default: 1.0.

        Example:
            >>> round(ShapeAdaptor.paper_init_ratio(32, 8, 4), 4)   # CIFAR defaults
            0.7071
        """
        input_size = _positive_real(input_size, 'input_size')
        output_size = _positive_real(output_size, 'output_size')
        if isinstance(num_adaptors, bool) or not isinstance(num_adaptors, Integral) or \
                num_adaptors < 1:
            raise ValueError(f'num_adaptors must be an int >= 1, got {num_adaptors!r}')
        target = (output_size / input_size) ** (1.0 / num_adaptors)
        return min(max(target, min(r1, r2)), max(r1, r2))

    # ------------------------------------------------------------------- parameters
    def extra_repr(self) -> str:
        s = float(self.ratio[0])
        return (f'ratio={s:.4f}, r1={self.r1}, r2={self.r2}, min_size={self.min_size}, '
                f'pool_type={self.pool_type!r}, size_penalty={self.size_penalty:.4f}')

    def mix_weight(self) -> Tensor:
        """Weight of the ``r1`` branch (shape ``(1,)``, differentiable w.r.t. ``alpha``):
        ``sigmoid(alpha)``, or ``(r2 - s) / (r2 - r1)`` under a size penalty."""
        w = torch.sigmoid(self.alpha)
        if self.size_penalty == 1.0:
            return w
        return (self.r2 - self.scale()) / (self.r2 - self.r1)

    def scale(self, with_penalty: bool = True) -> Tensor:
        """Output scale ``s`` (shape ``(1,)``, differentiable w.r.t. ``alpha``)."""
        w = torch.sigmoid(self.alpha)
        s = w * self.r1 + (1.0 - w) * self.r2
        return s * self.size_penalty if with_penalty else s

    @property
    def ratio(self) -> Tensor:
        """Current ``(r_h, r_w) = (s, s)`` as a detached tensor."""
        return self.scale().detach().expand(2).clone()

    def set_size_penalty(self, penalty: float) -> None:
        """Set the paper's memory-bound factor ``p`` (``0 < p <= 1``); the scale becomes
        ``p * s(alpha)``. Usually called through :func:`shape_adaptor_size_limit`."""
        penalty = _positive_real(penalty, 'penalty')
        if penalty > 1.0:
            raise ValueError(f'penalty must be in (0, 1], got {penalty}')
        self.size_penalty = penalty

    @torch.no_grad()
    def reset_parameters_to_initial(self) -> None:
        """Restore ``alpha`` to its initial value (scale ``init_ratio``) and the size
        penalty to 1."""
        self.alpha.fill_(self._init_alpha)
        self.size_penalty = 1.0

    # -------------------------------------------------------------------------- sizes
    def _scale64(self) -> Tensor:
        """Unpenalised scale (float64 tensor ``(1,)``, no gradient) as the size rule
        computes it on the device; the host copy holds its value."""
        w = torch.sigmoid(self.alpha.detach().double())
        return w * self.r1 + (1.0 - w) * self.r2

    def _size_values(self, in_vals: Tuple[int, int]) -> Tensor:
        """Integer output sizes (float64 tensor ``(2,)``) for integer input sizes, on the
        device (:meth:`continuous_size`); :meth:`_host_sizes` is the same on the host."""
        s = self._scale64() * self.size_penalty
        # s * n with n a Python number: the same float64 product as with a tensor n,
        # without copying n to the device.
        v = torch.cat((s * float(in_vals[0]), s * float(in_vals[1])))
        return torch.clamp(torch.floor(v + _FLOOR_TOLERANCE), min=float(self.min_size))

    def _host_sizes(self, host: _HostScale, in_vals: Tuple[int, int]) -> Tuple[int, int]:
        """:meth:`_size_values` on the host: the same float64 operations on the value the
        device computed for the scale, so bit-identical (``math.floor`` raises on a
        non-finite size, as ``int()`` of the device value does)."""
        s = host.scale64 * self.size_penalty
        lo = float(self.min_size)
        h, w = (max(float(math.floor(float(n) * s + _FLOOR_TOLERANCE)), lo)
                for n in in_vals)
        return int(h), int(w)

    # host copy (ops/host_cache.py)
    @torch.no_grad()
    def scale_ratio(self, start: Tensor, factor: Tensor) -> None:
        """One scale for both axes: ``s(start) * sqrt(f_h f_w)`` clamped to
        ``[min(r1, r2), max(r1, r2)]``."""
        w = torch.sigmoid(start.double())
        s0 = float(w * self.r1 + (1 - w) * self.r2)
        s = s0 * math.sqrt(float(factor[0]) * float(factor[-1]))
        s = min(max(s, min(self.r1, self.r2)), max(self.r1, self.r2))
        self.alpha.fill_(self.alpha_for_ratio(s, self.r1, self.r2, 1e-6))

    def bounds_repr(self) -> str:
        return f'scale between r1={self.r1} and r2={self.r2}'

    def _host_param(self) -> Tensor:
        return self.alpha

    def _host_read(self) -> List[Tensor]:
        return [self._scale64(), self.scale(with_penalty=False).detach()]

    def _host_store(self, values: List[float]) -> None:
        self._host = _HostScale(param_key(self.alpha), values[0], values[1],
                                self.alpha.dtype)

    @property
    def host_ratio(self) -> Tuple[float, float]:
        """``(s, s)`` (:attr:`ratio`, with the size penalty) as Python floats from the
        host copy: no device read unless alpha changed (then one, shared by all layers).
        Equal to ``ratio.tolist()`` for float32 and float64 alphas (other dtypes: to
        within their rounding)."""
        host = self._host_copy()
        p = self.size_penalty
        if p == 1.0:
            s = host.scale
        elif host.dtype == torch.float32:
            s = float(np.float32(host.scale) * np.float32(p))
        else:
            s = host.scale * p
        return s, s

    def host_output_size(self, in_size: Tuple[int, int]) -> Tuple[int, int]:
        """Integer ``(h, w)`` for an ``(H, W)`` input (ints), from the host copy: the
        same as :meth:`output_size`."""
        return self._host_sizes(self._host_copy(), (int(in_size[0]), int(in_size[1])))

    def output_size(self, in_size: Tuple[int, int]) -> Tuple[int, int]:
        """Integer output size ``(h, w)`` the layer produces for an input of ``in_size``
        (computed on the host; see :attr:`host_ratio` for when the device is read)."""
        return self._host_sizes(self._host_copy(), in_size_values(in_size))

    def continuous_size(self, in_size: Tuple[SizeLike, SizeLike],
                        in_values: Optional[Sequence[int]] = None
                        ) -> Tuple[Tensor, Tensor]:
        """Straight-through output sizes ``(h, w)`` for an input of ``in_size = (H, W)``.

        The forward values are the integer sizes :meth:`forward` produces; the gradient is
        that of ``H * s`` (zero where ``min_size`` binds), so it reaches ``alpha`` (and
        ``H``/``W`` when they are straight-through tensors of an upstream layer).

        Args:
            in_size (tuple): ``(H, W)``, each an int or a scalar tensor.
            in_values (tuple[int, int], optional): the integer values of ``in_size`` when
                the host knows them (tensors are read from the device otherwise).
        """
        vals = in_size_values(in_size, in_values)
        values = self._size_values(vals)
        s = self.scale().float().view(())
        out = []
        for i, n in enumerate(in_size):
            cont = torch.clamp(n * s, min=float(self.min_size))
            out.append(values[i].to(cont.dtype) + (cont - cont.detach()))
        return out[0], out[1]

    # ------------------------------------------------------------------------ forward
    def _branch(self, x: Tensor, ratio: float) -> Tensor:
        if ratio == 1.0:
            return x
        h, w = int(x.shape[-2]), int(x.shape[-1])
        k = _pool_kernel(ratio)
        if k is not None:
            ceil = h < k or w < k
            if self.pool_type == 'max':
                return F.max_pool2d(x, k, k, ceil_mode=ceil)
            return F.avg_pool2d(x, k, k, ceil_mode=ceil)
        size = (_bilinear_branch_size(h, ratio), _bilinear_branch_size(w, ratio))
        return F.interpolate(x, size=size, mode='bilinear', align_corners=self.align_corners)

    def _resize(self, x: Tensor, size: Tuple[int, int]) -> Tensor:
        if tuple(x.shape[-2:]) == size:
            return x
        return F.interpolate(x, size=size, mode='bilinear', align_corners=self.align_corners)

    def mix_branches(self, branch1: Tensor, branch2: Tensor,
                     in_size: Optional[Tuple[int, int]] = None) -> Tensor:
        """Blend two given branch outputs (the paper's two-input form, e.g. a strided
        shortcut as ``branch1`` and a stride-1 path as ``branch2`` in a residual block).

        Args:
            branch1 (Tensor): ``(N, C, *, *)`` output of the ``r1`` branch.
            branch2 (Tensor): ``(N, C, *, *)`` output of the ``r2`` branch.
            in_size (tuple[int, int], optional): size of the layer's input, from which the
                output size is computed; defaults to ``branch2``'s size when ``r2 == 1``.
        """
        for name, b in (('branch1', branch1), ('branch2', branch2)):
            if not isinstance(b, Tensor) or b.dim() != 4:
                raise ValueError(f'ShapeAdaptor expects 4-D (N, C, H, W) tensors, got '
                                 f'{name} of shape {getattr(b, "shape", type(b))}')
        if branch1.shape[:2] != branch2.shape[:2]:
            raise ValueError('branch1 and branch2 must agree in (N, C), got '
                             f'{tuple(branch1.shape)} and {tuple(branch2.shape)}')
        if in_size is None:
            if self.r2 != 1.0:
                raise ValueError('mix_branches needs in_size when r2 != 1')
            in_size = (int(branch2.shape[-2]), int(branch2.shape[-1]))
        size = self.output_size(in_size)
        b1 = self._resize(branch1, size)
        b2 = self._resize(branch2, size)
        if b2.dtype != b1.dtype:
            b2 = b2.to(b1.dtype)
        weight = self.mix_weight().to(b1.dtype)
        # lerp(b2, b1, w) = b2 + w (b1 - b2): exactly b1 at w = 1 and b2 at w = 0.
        out = torch.lerp(b2, b1, weight)
        self.last_input_size = in_size_values(in_size)
        self.last_size = size
        return out

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f'ShapeAdaptor expects a torch.Tensor, got {type(x).__name__}')
        if x.dim() != 4:
            raise ValueError('ShapeAdaptor expects a 4-D (N, C, H, W) tensor, got shape '
                             f'{tuple(x.shape)}')
        if x.shape[2] == 0 or x.shape[3] == 0:
            raise ValueError('ShapeAdaptor got an input with an empty spatial dimension: '
                             f'shape {tuple(x.shape)}')
        in_size = (int(x.shape[2]), int(x.shape[3]))
        return self.mix_branches(self._branch(x, self.r1), self._branch(x, self.r2),
                                 in_size)

    # -------------------------------------------------------------------------- cost
    def _branch_macs(self, ratio: float, in_size: Tuple[int, int],
                     out_size: Tuple[int, int]) -> int:
        """Per-channel MACs of one branch: its own resizing plus the resize to the output."""
        h, w = in_size
        if ratio == 1.0:
            size = in_size
            own = 0
        elif _pool_kernel(ratio) is not None:
            k = _pool_kernel(ratio)
            ceil = h < k or w < k
            size = ((-(-h // k)) if ceil else h // k, (-(-w // k)) if ceil else w // k)
            own = 0                    # pooling: comparisons / sums, no MACs
        else:
            size = (_bilinear_branch_size(h, ratio), _bilinear_branch_size(w, ratio))
            own = 4 * size[0] * size[1]
        resize = 0 if size == out_size else 4 * out_size[0] * out_size[1]
        return own + resize

    def count_macs(self, input_shape: Sequence[int]) -> int:
        """Multiply-accumulates of one call on an input of ``input_shape``.

        Rule (shared with DiffStride and, in ``models/cost.py``, DynOPool): a bilinear
        sample costs 4 MACs per output element and channel (as ``mmengine.analysis``
        counts a bilinear resize); max/avg pooling and copies cost 0; the blend
        ``lerp(b2, b1, w)`` costs 1 MAC per output element and channel. So
        ``C * (resize MACs of both branches + h * w)`` per image, where a branch already
        at the output size is not resized.

        Args:
            input_shape (sequence[int]): ``(N, C, H, W)`` or ``(C, H, W)``.

        Example:
            >>> ShapeAdaptor(0.75).count_macs((1, 1, 8, 8))   # 8x8 -> 6x6: 144+144+36
            324
        """
        n, c, h, w = _parse_shape(input_shape)
        out = self.output_size((h, w))
        per_channel = (self._branch_macs(self.r1, (h, w), out)
                       + self._branch_macs(self.r2, (h, w), out) + out[0] * out[1])
        return n * c * per_channel


def _parse_shape(input_shape: Sequence[int]) -> Tuple[int, int, int, int]:
    shape = tuple(int(v) for v in input_shape)
    if len(shape) == 3:
        shape = (1, ) + shape
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(f'input_shape must be (N, C, H, W) or (C, H, W) with positive '
                         f'entries, got {tuple(input_shape)!r}')
    return shape  # type: ignore[return-value]


def shape_adaptor_size_limit(layers: Sequence[ShapeAdaptor],
                             input_size: Union[int, Tuple[int, int]],
                             limit_size: float) -> float:
    """The paper's memory-bounded Shape Adaptor: cap the size of the last feature map.

    With ``final = max(input_size) * prod_i s_i(alpha_i)`` (the unpenalised scales of the
    ``n`` adaptors on the path, in float), every layer gets the same penalty
    ``p = (limit_size / final) ** (1 / n)`` when ``final >= limit_size`` and ``p = 1``
    otherwise, so the penalised chain ends at ``limit_size``. Call it before each forward
    (the paper recomputes it before every forward pass).

    Args:
        layers (sequence[ShapeAdaptor]): the adaptors of the network, in order.
        input_size (int | tuple[int, int]): network input size.
        limit_size (float): the paper's ``limit_dim``.

    Returns:
        float: the penalty ``p`` set on every layer.

    Example:
        >>> layers = [ShapeAdaptor(1.0), ShapeAdaptor(1.0)]
        >>> round(shape_adaptor_size_limit(layers, 64, 16), 3)   # 64 -> 16: p^2 ~ 1/4
        0.5
    """
    layers = list(layers)
    if not layers or not all(isinstance(m, ShapeAdaptor) for m in layers):
        raise ValueError('layers must be a non-empty sequence of ShapeAdaptor')
    limit = _positive_real(limit_size, 'limit_size')
    if isinstance(input_size, (tuple, list)):
        dim = float(max(int_size(v, 'input_size') for v in input_size))
    else:
        dim = float(int_size(input_size, 'input_size'))
    final = dim
    for layer in layers:
        # float(layer.scale(with_penalty=False)), from the host copy (one device read
        # for all layers when their alphas changed).
        final *= layer._host_copy().scale
    penalty = 1.0 if final < limit else (limit / final) ** (1.0 / len(layers))
    for layer in layers:
        layer.set_size_penalty(min(penalty, 1.0))
    return penalty
