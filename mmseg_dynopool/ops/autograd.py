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
"""
from types import ModuleType
from typing import Optional, Tuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from . import native
from . import triton as triton_backend
from .geometry import AxisGeometry

Grads = Tuple[Optional[Tensor], ...]


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
            ctx.save_for_backward(x, arg)
        ctx.geoms = (geom_h, geom_w)
        ctx.is_max = is_max
        ctx.ext = ext
        ctx.pos_dtypes = (pos_h.dtype, pos_w.dtype)
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
        grad_h = (gh * geom_h.inside).to(ctx.pos_dtypes[0]) if need_pos else None
        grad_w = (gw * geom_w.inside).to(ctx.pos_dtypes[1]) if need_pos else None
        return (gx if need_x else None), grad_h, grad_w, None, None, None, None


class TritonQuery(torch.autograd.Function):
    """Triton kernels: forward, gather-form input gradient, tiled positional gradient."""

    @staticmethod
    def forward(ctx, x: Tensor, pos_h: Tensor, pos_w: Tensor, geom_h: AxisGeometry,
                geom_w: AxisGeometry, is_max: bool, interpret: bool) -> Tensor:
        kernels = triton_backend.get_kernels(interpret)
        x, _ = triton_backend.layout(x)
        out, arg = triton_backend.forward(x, geom_h, geom_w, is_max, kernels)
        ctx.save_for_backward(x, arg)
        ctx.geoms = (geom_h, geom_w)
        ctx.is_max = is_max
        ctx.kernels = kernels
        ctx.pos_dtypes = (pos_h.dtype, pos_w.dtype)
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
        grad_h = (gh * geom_h.inside).to(ctx.pos_dtypes[0]) if need_pos else None
        grad_w = (gw * geom_w.inside).to(ctx.pos_dtypes[1]) if need_pos else None
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
