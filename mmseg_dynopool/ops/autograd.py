"""Autograd Functions of DynOPool's sampling (thesis Eq. 4.2), one per backend.

Each takes the input ``x``, the query coordinates ``pos_h``/``pos_w`` (differentiable:
the task loss reaches alpha through them, Eqs. 4.3-4.6) and their sampling tables
(:class:`~mmseg_dynopool.ops.geometry.AxisGeometry`, constants), and returns the
``(N, C, H_out, W_out)`` aggregation of each cell's four bilinear samples. The backward
returns the input gradient and the float64 gradient of every query row/column position
(zero outside the input, where the sample is the constant border value).

* :class:`CpuQuery` - the C++ kernel (``cpu/``), CPU float32/float64, max and mean.
  Saves ``x`` and the selected index.
* :class:`TritonQuery` - the Triton kernels (``triton/``), CUDA (or CPU tensors through
  Triton's interpreter), max and mean. Saves ``x`` and the selected index.
* :class:`NativeMaxQuery` - native resize + max-pool (``native.py``), any device/dtype.
  Saves ``x`` and max_pool2d's indices.

The dispatcher is :func:`~mmseg_dynopool.ops.functional.dynopool_sample`.

:class:`QueryPositions` is the other end of that gradient: the straight-through map
alpha -> query positions (Eqs. 4.2-4.6) as one Function, used by
:class:`~mmseg_dynopool.DynOPool` instead of the graph of ~30 tiny ops that
:func:`~mmseg_dynopool.ops.functional.output_size` and
:func:`~mmseg_dynopool.ops.functional.query_positions` build.
"""
import math
from collections import OrderedDict
from types import ModuleType
from typing import NamedTuple, Optional, Tuple

import numpy as np
import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from . import native
from . import triton as triton_backend
from .geometry import AxisGeometry

Grads = Tuple[Optional[Tensor], ...]


def _save_query(ctx, x: Tensor, arg: Tensor, pos_h: Tensor, pos_w: Tensor,
                geom_h: AxisGeometry, geom_w: AxisGeometry, is_max: bool) -> None:
    """What the backward of :class:`CpuQuery` / :class:`TritonQuery` needs."""
    ctx.save_for_backward(x, arg)
    ctx.geoms = (geom_h, geom_w)
    ctx.is_max = is_max
    ctx.pos_dtypes = (pos_h.dtype, pos_w.dtype)


def _masked_position_grads(ctx, gh: Tensor, gw: Tensor) -> Tuple[Tensor, Tensor]:
    """Positional gradients, zero outside the input (the sample is the constant border
    value there), in the positions' dtypes."""
    geom_h, geom_w = ctx.geoms
    return ((gh * geom_h.inside).to(ctx.pos_dtypes[0]),
            (gw * geom_w.inside).to(ctx.pos_dtypes[1]))


class CpuQuery(torch.autograd.Function):
    """Fused C++ kernel: one sweep per (n, c) plane forward and one backward."""

    @staticmethod
    def forward(ctx, x: Tensor, pos_h: Tensor, pos_w: Tensor, geom_h: AxisGeometry,
                geom_w: AxisGeometry, is_max: bool, ext: ModuleType) -> Tensor:
        x = x.contiguous()
        out, arg = ext.query_forward(x, geom_h.i0, geom_h.i1, geom_h.frac_as(x.dtype),
                                          geom_w.i0, geom_w.i1, geom_w.frac_as(x.dtype),
                                          is_max)
        if any(ctx.needs_input_grad):  # (also keeps torch.jit.trace under no_grad happy)
            _save_query(ctx, x, arg, pos_h, pos_w, geom_h, geom_w, is_max)
        ctx.ext = ext
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor) -> Grads:
        x, arg = ctx.saved_tensors
        geom_h, geom_w = ctx.geoms
        need_x = ctx.needs_input_grad[0]
        need_pos = ctx.needs_input_grad[1] or ctx.needs_input_grad[2]
        gx, gh, gw = ctx.ext.query_backward(
            grad_out, x, arg, geom_h.i0, geom_h.i1, geom_h.frac_as(x.dtype), geom_w.i0,
            geom_w.i1, geom_w.frac_as(x.dtype), ctx.is_max, need_x, need_pos)
        grad_h, grad_w = _masked_position_grads(ctx, gh, gw) if need_pos else (None, None)
        return (gx if need_x else None), grad_h, grad_w, None, None, None, None


class TritonQuery(torch.autograd.Function):
    """Triton kernels: forward, gather-form input gradient, tiled positional gradient."""

    @staticmethod
    def forward(ctx, x: Tensor, pos_h: Tensor, pos_w: Tensor, geom_h: AxisGeometry,
                geom_w: AxisGeometry, is_max: bool, interpret: bool) -> Tensor:
        kernels = triton_backend.get_kernels(interpret)
        x, _ = triton_backend.layout(x)
        out, arg = triton_backend.forward(x, geom_h, geom_w, is_max, kernels)
        _save_query(ctx, x, arg, pos_h, pos_w, geom_h, geom_w, is_max)
        ctx.kernels = kernels
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor) -> Grads:
        x, arg = ctx.saved_tensors
        geom_h, geom_w = ctx.geoms
        need_x = ctx.needs_input_grad[0]
        need_pos = ctx.needs_input_grad[1] or ctx.needs_input_grad[2]
        gx, gh, gw = triton_backend.backward(grad_out, x, arg, geom_h, geom_w, ctx.is_max,
                                             need_x, need_pos, ctx.kernels)
        grad_h, grad_w = _masked_position_grads(ctx, gh, gw) if need_pos else (None, None)
        return gx, grad_h, grad_w, None, None, None, None


class NativeMaxQuery(torch.autograd.Function):
    """Native bilinear resize + max-pool forward; native input gradient; positional
    gradient at the selected query points only."""

    @staticmethod
    def forward(ctx, x: Tensor, pos_h: Tensor, pos_w: Tensor, geom_h: AxisGeometry,
                geom_w: AxisGeometry) -> Tensor:
        out, idx = native.max_forward(x, geom_h.n_out, geom_w.n_out)
        ctx.save_for_backward(x, idx)
        ctx.geoms = (geom_h, geom_w)
        ctx.pos_dtypes = (pos_h.dtype, pos_w.dtype)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor) -> Grads:
        x, idx = ctx.saved_tensors
        geom_h, geom_w = ctx.geoms
        grad_out = grad_out.contiguous()
        grad_x = grad_h = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = native.max_input_grad(grad_out, idx, x.shape)
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            grad_h, grad_w = native.selected_position_grads(x, grad_out, idx, geom_h, geom_w)
            grad_h = grad_h.to(ctx.pos_dtypes[0])
            grad_w = grad_w.to(ctx.pos_dtypes[1])
        return grad_x, grad_h, grad_w, None, None


class _PositionConstants(NamedTuple):
    """Host-known factors of :class:`QueryPositions`' backward for one pair of axes."""
    coef: Tensor    # float64 (2,): d pos_k / d size = -(k + 1/2) * coef, per axis
    in_f32: Tensor  # float32 (2,): (H_in, W_in)
    # The clamps pass a gradient only strictly inside their bounds, so the continuous size
    # L r is live in [lo, hi]: lo the smallest float32 above min_size, hi the largest
    # float32 that rounds below max_size (+inf without one); lo > hi: never live.
    lo: float
    hi: float


# (H_in, H_out, W_in, W_out, min_size, max_size, device) -> constants; bounded like the
# geometry cache (multi-scale test inputs), a few bytes per entry.
_CONSTANTS: 'OrderedDict[tuple, _PositionConstants]' = OrderedDict()
_CONSTANTS_SIZE = 1024


def _largest_rounding_below(max_size: int) -> float:
    """The largest float32 ``v`` with ``floor(v + 0.5) < max_size`` in float32 arithmetic
    (the size's straight-through rounding, Eq. 4.3, as ``ste_round`` computes it)."""
    half, limit = np.float32(0.5), np.float32(max_size)
    v = np.float32(max_size - 0.5)
    while np.float32(v + half) >= limit:
        v = np.nextafter(v, np.float32(-np.inf))
    while np.float32(np.nextafter(v, np.float32(np.inf)) + half) < limit:
        v = np.nextafter(v, np.float32(np.inf))
    return float(v)


def _position_constants(geom_h: AxisGeometry, geom_w: AxisGeometry, min_size: float,
                        max_size: Optional[int], device: torch.device
                        ) -> _PositionConstants:
    key = (geom_h.length, geom_h.n_out, geom_w.length, geom_w.n_out, float(min_size),
           max_size, device.type, device.index)
    const = _CONSTANTS.get(key)
    if const is not None:
        _CONSTANTS.move_to_end(key)
        return const
    coef = []
    for geom in (geom_h, geom_w):
        # query_positions differentiates (k + 1/2) * (L * (1 / (2 n))) through the float64
        # reciprocal: d/dn = -(k + 1/2) * L * rec^2 * 2 with rec = 1 / (2 n), in float64.
        rec = 1.0 / (2.0 * float(geom.n_out))
        coef.append(float(geom.length) * (rec * rec) * 2.0)
    host = (torch.tensor(coef, dtype=torch.float64),
            torch.tensor([geom_h.length, geom_w.length], dtype=torch.float32))
    if device.type != 'cpu':
        # Pinned + non_blocking, as the geometry tables: a pageable copy would synchronise.
        pin = device.type == 'cuda'
        host = tuple((t.pin_memory() if pin else t).to(device, non_blocking=pin)
                     for t in host)
    lo = float(np.nextafter(np.float32(min_size), np.float32(np.inf)))
    hi = math.inf if max_size is None else _largest_rounding_below(max_size)
    const = _CONSTANTS[key] = _PositionConstants(host[0], host[1], lo, hi)
    if len(_CONSTANTS) > _CONSTANTS_SIZE:
        _CONSTANTS.popitem(last=False)
    return const


class QueryPositions(torch.autograd.Function):
    """alpha -> the float64 query positions ``(pos_h, pos_w)`` of DynOPool (Eq. 4.2), with
    the straight-through gradient of Eqs. 4.3-4.6, as one autograd node.

    Forward: the cached positions of the geometry tables (views; the integer sizes, and
    so the positions, are known on the host). Backward: the gradient the unfused graph
    ``r = 1 / alpha.float()`` (Eq. 4.6), ``n = round(clamp(L r, min_size))`` straight
    through (Eqs. 4.1, 4.3), ``clamp(n, max=max_size)``, ``pos_k = (k + 1/2) L / (2 n) -
    1/2`` (Eq. 4.2) gives, with the same dtype flow - float64 from the positions to the
    size, float32 from the size to alpha - namely, per axis,

        d loss / d alpha = -(G * L) * r^2,   G = float32(-sum_k g_k (k + 1/2) * 2 L rec^2),

    ``rec = 1 / (2 n)``, zero where a clamp binds (PyTorch's clamp passes the gradient
    only strictly inside its bounds, so also at ``L r == min_size`` and ``n ==
    max_size``). Two reductions and a few ops on ``(2,)`` tensors instead of ~65 kernels.

    Args (of ``apply``):
        alpha (Tensor): ``(2,)`` ``(1/r_h, 1/r_w)``, any float dtype; its gradient comes
            back in that dtype.
        geom_h, geom_w (AxisGeometry): the tables of the sizes ``alpha`` gives (their
            ``length``/``n_out`` are ``H_in``/``H_out`` and ``W_in``/``W_out``; the
            sampling dtype chose their rounding).
        min_size (float): the lower bound of the continuous size.
        max_size (int, optional): the upper bound of the integer size.
    """

    @staticmethod
    def forward(ctx, alpha: Tensor, geom_h: AxisGeometry, geom_w: AxisGeometry,
                min_size: float, max_size: Optional[int]) -> Tuple[Tensor, Tensor]:
        # The ratio of the forward's alpha, in float32 as DynOPool's sizes (Eq. 4.6).
        ctx.ratio = torch.reciprocal(alpha.detach().float())
        ctx.alpha_dtype = alpha.dtype
        ctx.geoms = (geom_h, geom_w)
        ctx.bounds = (min_size, max_size)
        # Views, so the cached tables themselves never get a grad_fn.
        return geom_h.positions.view_as(geom_h.positions), \
            geom_w.positions.view_as(geom_w.positions)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_h: Tensor, grad_w: Tensor) -> Grads:
        geom_h, geom_w = ctx.geoms
        r = ctx.ratio
        const = _position_constants(geom_h, geom_w, *ctx.bounds, r.device)
        if const.lo > const.hi:  # the clamps leave no continuous size a gradient
            return torch.zeros_like(r, dtype=ctx.alpha_dtype), None, None, None, None
        # d loss / d size, float64 (positions) rounded to float32 (the size's dtype).
        sums = torch.stack((torch.dot(grad_h.to(torch.float64), geom_h.grid_k()),
                            torch.dot(grad_w.to(torch.float64), geom_w.grid_k())))
        g_size = (sums * const.coef).float()  # = -d loss / d size
        # Where the clamps pass the gradient: min_size < L r (< the max_size threshold).
        cont = r * const.in_f32
        live = cont.clamp(min=const.lo, max=const.hi) == cont
        # d size / d r = L, d r / d alpha = -r^2 (float32); the signs cancel with g_size's.
        grad = torch.where(live, (g_size * const.in_f32) * (r * r), 0.0)
        return grad.to(ctx.alpha_dtype), None, None, None, None
