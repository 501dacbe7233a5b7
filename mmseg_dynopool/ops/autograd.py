"""The autograd Function of DynOPool's native-op fallback (thesis Eq. 4.2), for what the
registered operator (``library.py``: the C++ kernel on CPU, Triton on CUDA) has no
kernel for.

Each takes the input ``x``, the query coordinates ``pos_h``/``pos_w`` (differentiable:
the task loss reaches alpha through them, Eqs. 4.3-4.6) and their sampling tables
(:class:`~mmseg_dynopool.ops.geometry.AxisGeometry`, constants), and returns the
``(N, C, H_out, W_out)`` aggregation of each cell's four bilinear samples. The backward
returns the input gradient and the float64 gradient of every query row/column position
(zero outside the input, where the sample is the constant border value).

* :class:`NativeMaxQuery` - native resize + max-pool (``native.py``), any device/dtype
  the operator has no kernel for (e.g. bfloat16 on CPU, or the C++ kernel not built).

The dispatcher is :func:`~mmseg_dynopool.ops.functional.dynopool_sample`.
"""
from typing import Optional, Tuple

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from . import native
from .geometry import AxisGeometry

Grads = Tuple[Optional[Tensor], ...]


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
