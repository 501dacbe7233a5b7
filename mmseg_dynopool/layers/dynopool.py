"""The DynOPool layer: a resizing layer whose output size is learned (thesis chapter 4).

The integer output size (Eqs. 4.1, 4.3) decides tensor shapes, so it is computed on the
host from a host copy of alpha (``layers/host_cache.py`` explains the mechanism: at
most one batched device->host read per alpha update for all layers). The
straight-through map from the device alpha to the query positions (Eqs. 4.2-4.6) and
the sampling are the registered operators of ``ops/library.py``.
"""
import math
from numbers import Real
from typing import Dict, Iterable, List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.logging import print_log
from mmengine.registry import MODELS
from torch import Tensor, nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from ..ops import library
from ..ops.functional import AGGREGATIONS, dynopool_sample, output_size
from ..ops.geometry import AxisGeometry, axis_geometry
from ..utils.pairs import RatioLike, to_pair
from .base import ResizingLayer
from .host_cache import LIVE_LAYERS, param_key

_F32_ONE = np.float32(1.0)
_F32_HALF = np.float32(0.5)


# The task-gradient settings of DynOPool's alpha (``axis_grad``).
AXIS_GRADS = ('exact', 'per_query')


def per_query_alpha(alpha: Tensor, h_out: int, w_out: int) -> Tensor:
    """``alpha`` unchanged in value (bit for bit), with its gradient multiplied by
    ``sqrt(w_out / h_out)`` on alpha_h and ``sqrt(h_out / w_out)`` on alpha_w.

    The exact positional gradient of an axis sums one term per query point (``2 n``
    of them) weighted by ``(k + 1/2) / 2`` (Eq. 4.2), so it grows with the axis'
    length; dividing each axis by its number of query points relative to the geometric
    mean of both removes that growth. Written with plain tensor ops (no autograd
    Function), so tracing, torch.compile and export see an ordinary graph:
    ``a + (s a - s a)`` is exactly ``a`` for finite ``a`` (the guard keeps alpha
    finite), and its derivative is ``s``.
    """
    scaled = torch.stack((alpha[0] * math.sqrt(w_out / h_out),
                          alpha[1] * math.sqrt(h_out / w_out)))
    return alpha.detach() + (scaled - scaled.detach())


class _HostAlpha(NamedTuple):
    """Host copy of one layer's alpha, valid while ``key`` matches (see module doc)."""
    key: tuple
    alpha: Tuple[np.float32, np.float32]   # float32 alpha, as ``alpha.float()`` has it
    ratio: Tuple[float, float]             # float32 ``1 / alpha`` as Python floats
    guard_hit: bool                        # the guard has changed alpha at some point
    sizes: Dict[Tuple[int, int], Tuple[int, int, bool]]  # memo: input -> output, capped


def _host_size(in_size: int, alpha: np.float32, min_size: np.float32,
               max_size: Optional[int]) -> int:
    """Forward value of :meth:`DynOPool.continuous_size` for one axis, on the host.

    The same float32 operations, in the same order, as the device computes them
    (``reciprocal``, ``mul``, ``clamp``, ``floor(v + 0.5)``, the straight-through sum
    ``v + (floor - v)``): bit-identical, so host and device always agree on the size.
    """
    ratio = _F32_ONE / alpha
    value = np.float32(in_size) * ratio
    if value < min_size:
        value = min_size
    rounded = np.floor(value + _F32_HALF)
    size = value + (rounded - value)
    if max_size is not None and size > np.float32(max_size):
        size = np.float32(max_size)
    return int(size)


@MODELS.register_module()
class DynOPool(ResizingLayer):
    """Dynamically Optimized Pooling: resizes a feature map by a learned ratio.

    The output has ``H_out = round(max(H_in * r_h, min_size))`` rows (Eq. 4.1 with the size
    bound of section 5.2.2) and likewise columns. Each output cell is the aggregation
    (max by default) of four bilinear samples at +-1/4 of the cell (Eq. 4.2). The rounding
    is straight-through (Eqs. 4.3-4.4), so the gradient reaches the scale through the
    query positions. The learnable parameter is ``alpha = (1/r_h, 1/r_w)`` (Eq. 4.6), which
    keeps the gradient well conditioned for small ratios (Eq. 4.5).

    With ``r = 0.5`` on an even-sized input the layer equals ``nn.MaxPool2d(2, 2)``
    (``nn.AvgPool2d(2, 2)`` for ``aggregation='avg'``), i.e. the human-designed model.

    Guard: alpha is kept finite and within ``[1 / max_ratio, 1 / min_ratio]``. The guard
    runs after every ``torch.optim`` step (a global step hook registered by this module)
    and again at the first forward after alpha changed in any other way (a hand edit, a
    loaded checkpoint); a non-finite alpha is restored to its last valid value, an
    out-of-range one is clamped, and the first clamp of each layer is reported once.
    Besides the ratio bound, ``max_size`` optionally caps the output size itself.

    Host copies of alpha: see ``layers/host_cache.py``; after writing ``alpha.data``
    call :meth:`invalidate_sizes`.

    Args:
        init_ratio (float | tuple[float, float]): initial ``r`` (or ``(r_h, r_w)``);
            values above 1 upsample. Default: 0.5.
        min_size (float): lower bound on the continuous output size before rounding;
            1.5 guarantees at least 2 rows/columns. Default: 1.5.
        aggregation (str): ``'max'`` or ``'avg'`` over the four query points.
            Default: ``'max'``.
        max_ratio (float): upper bound on ``r`` (runaway guard for upsampling).
            Default: 4.0.
        min_ratio (float): lower bound on ``r``. Default: 1e-3.
        max_size (int, optional): upper bound on each output dimension. Default: None.
        axis_grad (str): the task (query-position) gradient on alpha. ``'exact'``: the
            thesis' Eqs. 4.2-4.6. ``'per_query'``: each axis' positional gradient is
            divided by that axis' number of query points (``2 H_out``, ``2 W_out``)
            relative to their geometric mean, i.e. multiplied by
            ``sqrt(W_out / H_out)`` on alpha_h and ``sqrt(H_out / W_out)`` on alpha_w
            (1 on square outputs; the product of the two factors is 1). It removes the
            growth of the exact gradient with the axis length (docs/dynopool.md, "Axis
            gradient"). The forward pass and the GMACs gradient (Eqs. 4.7-4.8, through
            :meth:`continuous_size`) are unchanged. Default: ``'exact'``.

    Paper: the DynOPool thesis, chapter 4 (``shared/papers/dynopool_thesis.txt``);
    docs/dynopool.md.

    Example:
        >>> pool = DynOPool(init_ratio=0.5)
        >>> pool(torch.randn(2, 8, 32, 32)).shape     # = nn.MaxPool2d(2)(x)
        torch.Size([2, 8, 16, 16])
        >>> pool.last_size
        (16, 16)
    """

    ratio_param_name = 'alpha'
    exact_sizes = True

    def __init__(self,
                 init_ratio: RatioLike = 0.5,
                 min_size: float = 1.5,
                 aggregation: str = 'max',
                 max_ratio: float = 4.0,
                 min_ratio: float = 1e-3,
                 max_size: Optional[int] = None,
                 axis_grad: str = 'exact') -> None:
        super().__init__()
        ratio = to_pair(init_ratio, 'init_ratio')
        if axis_grad not in AXIS_GRADS:
            raise ValueError(f'axis_grad must be one of {AXIS_GRADS}, got {axis_grad!r}')
        if aggregation not in AGGREGATIONS:
            raise ValueError(f'aggregation must be one of {AGGREGATIONS}, '
                             f'got {aggregation!r}')
        if not (isinstance(min_size, Real) and math.isfinite(min_size) and min_size > 0):
            raise ValueError(f'min_size must be a positive number, got {min_size!r}')
        to_pair(max_ratio, 'max_ratio')
        to_pair(min_ratio, 'min_ratio')
        if min_ratio >= max_ratio:
            raise ValueError(f'min_ratio ({min_ratio}) must be below max_ratio '
                             f'({max_ratio})')
        if not min_ratio <= min(ratio) <= max(ratio) <= max_ratio:
            raise ValueError(f'init_ratio {init_ratio!r} is outside the allowed range '
                             f'[min_ratio={min_ratio}, max_ratio={max_ratio}]')
        if max_size is not None and (not isinstance(max_size, int) or max_size < 2):
            raise ValueError(f'max_size must be an int >= 2 or None, got {max_size!r}')
        self.init_ratio = ratio
        self.min_size = float(min_size)
        self.aggregation = aggregation
        self.max_ratio = float(max_ratio)
        self.min_ratio = float(min_ratio)
        self.max_size = max_size
        self.axis_grad = axis_grad
        self.alpha = nn.Parameter(torch.tensor([1.0 / ratio[0], 1.0 / ratio[1]]))
        # Last valid alpha (restored if a step makes alpha NaN/inf) and a flag set by the
        # guard; neither is part of the state dict.
        self.register_buffer('_alpha_valid', self.alpha.detach().clone(), persistent=False)
        self.register_buffer('_guard_hit', torch.zeros((), dtype=torch.bool),
                             persistent=False)
        self._warned = False
        self.last_size: Optional[Tuple[int, int]] = None
        self.last_input_size: Optional[Tuple[int, int]] = None
        self._host_track()

    def extra_repr(self) -> str:
        r = self.ratio.tolist()
        return (f'ratio=({r[0]:.4f}, {r[1]:.4f}), min_size={self.min_size}, '
                f'aggregation={self.aggregation!r}, axis_grad={self.axis_grad!r}')

    @property
    def ratio(self) -> Tensor:
        """Current ``(r_h, r_w) = 1 / alpha`` as a detached tensor."""
        return 1.0 / self.alpha.detach()

    @torch.no_grad()
    def guard_alpha(self) -> None:
        """Restore a non-finite alpha and clamp it to the allowed ratio range.

        Pure tensor ops (no host sync), so it is cheap to call after every step.
        """
        alpha = self.alpha
        fixed = torch.where(torch.isfinite(alpha), alpha, self._alpha_valid)
        fixed = fixed.clamp(min=1.0 / self.max_ratio, max=1.0 / self.min_ratio)
        self._guard_hit.logical_or_((fixed != alpha).any())
        alpha.copy_(fixed)
        self._alpha_valid.copy_(fixed)

    @torch.no_grad()
    def reset_parameters_to_initial(self) -> None:
        """Restore ``alpha`` to ``1 / init_ratio``."""
        self.alpha.copy_(torch.tensor([1.0 / r for r in self.init_ratio]))
        self._alpha_valid.copy_(self.alpha)

    @torch.no_grad()
    def scale_ratio(self, start: Tensor, factor: Tensor) -> None:
        """``alpha = start / factor`` clamped to ``[1 / max_ratio, 1 / min_ratio]``."""
        factor = factor.to(start)
        self.alpha.copy_((start / factor).clamp(1.0 / self.max_ratio, 1.0 / self.min_ratio))
        self.guard_alpha()

    @torch.no_grad()
    def set_output_size(self, in_size: Tuple[int, int], out_size: Tuple[int, int]
                        ) -> None:
        """``alpha = in_size / out_size``: ``r = n / in_size`` is the middle of the
        ratios that round to ``n`` (Eqs. 4.1, 4.3), clamped to the allowed range."""
        alpha = torch.tensor([in_size[0] / out_size[0], in_size[1] / out_size[1]],
                             dtype=torch.float64)
        self.alpha.copy_(alpha.to(self.alpha))
        self.guard_alpha()

    def output_size_bounds(self, in_lo: int, in_hi: int) -> Tuple[int, int]:
        """Sizes reachable for every input in ``[in_lo, in_hi]``: at least
        ``min_size`` rounded half up and ``in_hi * min_ratio``, at most
        ``in_lo * max_ratio`` and ``max_size`` (Eq. 4.1 with section 5.2.2's bounds)."""
        lo = max(int(math.floor(self.min_size + 0.5)), math.ceil(in_hi * self.min_ratio))
        hi = math.floor(in_lo * self.max_ratio)
        if self.max_size is not None:
            hi = min(hi, self.max_size)
        return lo, hi

    def bounds_repr(self) -> str:
        return (f'allowed ratio range [{self.min_ratio}, {self.max_ratio}], '
                f'max_size={self.max_size}')

    def count_macs(self, input_shape: Sequence[int]) -> int:
        """MACs of one call on an ``(N, C, H, W)`` input at the current alpha.

        Counted as mmengine counts a bilinear resize (4 multiply-adds per bilinear
        sample), with 4 samples per output cell (Eq. 4.2): ``4 N C (2h) (2w)``; the
        max/mean over the four samples is not a MAC (mmengine does not count pooling).
        """
        n, c, h_in, w_in = _nchw(input_shape)
        h, w = self.host_output_size((h_in, w_in))
        return 4 * n * c * (2 * h) * (2 * w)

    def _host_param(self) -> Tensor:
        return self.alpha

    def _host_read(self) -> List[Tensor]:
        """Guard alpha; the device values its host copy is built from (float32 alpha,
        the guard flag), read by :func:`~.host_cache.refresh_host_copies`."""
        self.guard_alpha()
        return [self.alpha.detach().float(), self._guard_hit.float()]

    def _host_store(self, values: List[float]) -> None:
        alpha = (np.float32(values[0]), np.float32(values[1]))
        ratio = (float(_F32_ONE / alpha[0]), float(_F32_ONE / alpha[1]))
        self._host = _HostAlpha(param_key(self.alpha), alpha, ratio, values[2] > 0, {})

    @property
    def host_ratio(self) -> Tuple[float, float]:
        """``(r_h, r_w)`` as Python floats from the host copy of alpha: no device sync
        unless alpha changed since the last forward (then one, shared by all layers)."""
        return self._host_copy().ratio

    def host_output_size(self, in_size: Tuple[int, int]) -> Tuple[int, int]:
        """Integer ``(H_out, W_out)`` for an ``(H, W)`` input, computed on the host."""
        h_out, w_out, _ = self._sizes(self._host_copy(), int(in_size[0]), int(in_size[1]))
        return h_out, w_out

    def _sizes(self, host: _HostAlpha, h_in: int, w_in: int) -> Tuple[int, int, bool]:
        key = (h_in, w_in)
        out = host.sizes.get(key)
        if out is None:
            min_size = np.float32(self.min_size)
            h_out = _host_size(h_in, host.alpha[0], min_size, self.max_size)
            w_out = _host_size(w_in, host.alpha[1], min_size, self.max_size)
            capped = self.max_size is not None and max(
                h_in * host.ratio[0], w_in * host.ratio[1]) > self.max_size + 0.5
            out = host.sizes[key] = (h_out, w_out, capped)
        return out

    def continuous_size(self, in_size: Tuple, ratio: Optional[Tensor] = None,
                        in_values: Optional[Sequence[int]] = None
                        ) -> Tuple[Tensor, Tensor]:
        """Straight-through output sizes ``(h, w)`` for an input of ``in_size = (H, W)``.

        ``H``/``W`` may be ints or straight-through tensors (to chain layers, as the GMACs
        hook does). The forward values are the integer sizes this layer will produce.
        ``in_values`` (the integer ``(H, W)``, as the cost model passes it to every
        resizing layer) is not needed here: the size is pure tensor arithmetic.
        """
        if ratio is None:
            ratio = 1.0 / self.alpha.float()
        h = output_size(in_size[0], ratio[0], self.min_size)
        w = output_size(in_size[1], ratio[1], self.min_size)
        if self.max_size is not None:
            h = torch.clamp(h, max=float(self.max_size))
            w = torch.clamp(w, max=float(self.max_size))
        return h, w

    def _plan(self, h_in: int, w_in: int, dtype: torch.dtype, device: torch.device
              ) -> Tuple[AxisGeometry, AxisGeometry]:
        """The sampling tables of this call: the integer output size from the host copy
        of alpha (Eqs. 4.1, 4.3), then the cached tables of that size.

        A host decision (it decides shapes), so ``torch.compile`` does not trace it: the
        graph breaks here, *before* the op, and the compiled code after it is
        specialised on the sizes, see docs/gpu.md. (Disabled only when compiling: the
        wrapper costs ~30 us per eager call.)"""
        host = self._host_copy()
        h_out, w_out, capped = self._sizes(host, h_in, w_in)
        if (host.guard_hit or capped) and not self._warned:
            self._warned = True
            print_log(
                f'DynOPool: ratio guard engaged (allowed ratio range '
                f'[{self.min_ratio}, {self.max_ratio}], max_size={self.max_size}); '
                f'ratio is now {tuple(round(v, 4) for v in host.ratio)}, '
                f'output {h_out}x{w_out} for input {h_in}x{w_in}. '
                'Reported once per layer.', logger='current', level=30)
        return (axis_geometry(h_in, h_out, dtype, device),
                axis_geometry(w_in, w_out, dtype, device))

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f'DynOPool expects a torch.Tensor, got {type(x).__name__}')
        if x.dim() != 4:
            raise ValueError('DynOPool expects a 4-D (N, C, H, W) tensor, got shape '
                             f'{tuple(x.shape)}')
        if x.shape[2] == 0 or x.shape[3] == 0:
            raise ValueError('DynOPool got an input with an empty spatial dimension: '
                             f'shape {tuple(x.shape)}')
        h_in, w_in = int(x.shape[2]), int(x.shape[3])
        plan = _compiled_plan if torch.compiler.is_compiling() else DynOPool._plan
        geometry = plan(self, h_in, w_in, x.dtype, x.device)
        h_out, w_out = geometry[0].n_out, geometry[1].n_out
        if torch.is_grad_enabled() and self.alpha.requires_grad:
            # Sizes and positions stay in float32 under autocast (they decide shapes).
            # One operator instead of the ~30-op graph of continuous_size +
            # query_positions: same values and alpha gradient.
            alpha = self.alpha
            if self.axis_grad == 'per_query':  # same values, rescaled gradient
                alpha = per_query_alpha(alpha, h_out, w_out)
            with torch.autocast(device_type=x.device.type, enabled=False):
                pos_h, pos_w = library.positions(alpha, *geometry, self.min_size,
                                                 self.max_size)
        else:  # no gradient to alpha: the positions are constants
            pos_h, pos_w = geometry[0].positions, geometry[1].positions
        self.last_input_size = (h_in, w_in)
        self.last_size = (h_out, w_out)
        return dynopool_sample(x, pos_h, pos_w, self.aggregation, geometry)


def _nchw(input_shape: Sequence[int]) -> Tuple[int, int, int, int]:
    shape = tuple(int(v) for v in input_shape)
    if len(shape) == 3:
        shape = (1, ) + shape
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError('input_shape must be (N, C, H, W) or (C, H, W) with positive '
                         f'entries, got {tuple(input_shape)!r}')
    return shape  # type: ignore[return-value]


# The host size plan is not traced by torch.compile (a graph break before the op).
_compiled_plan = torch.compiler.disable(DynOPool._plan)


def _guard_after_step(optimizer: torch.optim.Optimizer, args: Iterable,
                      kwargs: dict) -> None:
    """Guard every live layer whose alpha ``optimizer`` updates (no host sync); its host
    copy of alpha is refreshed at the next forward."""
    params = {id(p) for group in optimizer.param_groups for p in group['params']}
    for layer in list(LIVE_LAYERS):
        if isinstance(layer, DynOPool) and id(layer.alpha) in params:
            layer.guard_alpha()
            layer.invalidate_sizes()


register_optimizer_step_post_hook(_guard_after_step)
