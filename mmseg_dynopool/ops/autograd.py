"""Autograd Functions of DynOPool's sampling (thesis Eq. 4.2) for the backends that are
not the registered operator (``library.py``: the C++ kernel on CPU, Triton on CUDA).

Each takes the input ``x``, the query coordinates ``pos_h``/``pos_w`` (differentiable:
the task loss reaches alpha through them, Eqs. 4.3-4.6) and their sampling tables
(:class:`~mmseg_dynopool.ops.geometry.AxisGeometry`, constants), and returns the
``(N, C, H_out, W_out)`` aggregation of each cell's four bilinear samples. The backward
returns the input gradient and the float64 gradient of every query row/column position
(zero outside the input, where the sample is the constant border value).

* :class:`TritonQuery` - the Triton kernels on CPU tensors, run by Triton's interpreter
  (how the CPU tests check the CUDA kernels).
* :class:`NativeMaxQuery` - native resize + max-pool (``native.py``), any device/dtype
  the operator has no kernel for (e.g. bfloat16 on CPU, or the C++ kernel not built).

The dispatcher is :func:`~mmseg_dynopool.ops.functional.dynopool_sample`.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from . import library, native
from .geometry import AxisGeometry

Grads = Tuple[Optional[Tensor], ...]


class TritonQuery(torch.autograd.Function):
    """The Triton kernels on CPU tensors, through Triton's interpreter (tests; CUDA
    tensors go through the registered operator ``mmseg_dynopool::sample``, whose CUDA
    kernel is the same pair of launchers)."""

    @staticmethod
    def forward(ctx, x: Tensor, pos_h: Tensor, pos_w: Tensor, geom_h: AxisGeometry,
                geom_w: AxisGeometry, is_max: bool) -> Tensor:
        tables = (library.table_args(geom_h, x.dtype, triton=True),
                  library.table_args(geom_w, x.dtype, triton=True))
        out, arg = library.triton_forward(x, *tables, is_max, interpret=True)
        ctx.save_for_backward(x, arg)
        ctx.tables = tables
        ctx.is_max = is_max
        ctx.pos_dtypes = (pos_h.dtype, pos_w.dtype)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor) -> Grads:
        x, arg = ctx.saved_tensors
        need_x = ctx.needs_input_grad[0]
        need_pos = ctx.needs_input_grad[1] or ctx.needs_input_grad[2]
        gx, gh, gw = library.triton_backward(grad_out, x, arg, *ctx.tables, ctx.is_max,
                                             need_x, need_pos, interpret=True)
        if not need_pos:
            return (gx if need_x else None), None, None, None, None, None
        return (gx if need_x else None), gh.to(ctx.pos_dtypes[0]), \
            gw.to(ctx.pos_dtypes[1]), None, None, None


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
