"""Native-op fallback of DynOPool's sampling (thesis Eq. 4.2), for whatever has no kernel.

Used where neither the C++ CPU kernel nor Triton applies (e.g. bfloat16/float16 on CPU,
devices other than CPU/CUDA, the C++ kernel not built). The forward is PyTorch's bilinear
resize to the ``2 H_out x 2 W_out`` query grid (whose sample points are exactly the query
points, see ``geometry.py``) followed by 2x2 pooling.

For ``'max'`` the backward computes the input gradient with PyTorch's native backward
kernels, and the positional gradient only at the query point each max selected (the
others receive no gradient through the max).
"""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .geometry import AxisGeometry


def max_forward(x: Tensor, n_h: int, n_w: int) -> Tuple[Tensor, Tensor]:
    """Samples on the ``(2 n_h) x (2 n_w)`` grid, 2x2 max; returns (out, max_pool indices)."""
    z = F.interpolate(x, size=(2 * n_h, 2 * n_w), mode='bilinear', align_corners=False)
    return F.max_pool2d(z, 2, return_indices=True)


def avg_forward(x: Tensor, n_h: int, n_w: int) -> Tensor:
    """Samples on the ``(2 n_h) x (2 n_w)`` grid, 2x2 mean."""
    z = F.interpolate(x, size=(2 * n_h, 2 * n_w), mode='bilinear', align_corners=False)
    return F.avg_pool2d(z, 2)


def max_input_grad(grad_out: Tensor, idx: Tensor, in_shape: torch.Size) -> Tensor:
    """dL/dx of :func:`max_forward` with PyTorch's native backward kernels."""
    n, c, h_in, w_in = in_shape
    h2, w2 = 2 * grad_out.shape[2], 2 * grad_out.shape[3]
    # The `self` argument of the native backward is only read for its shape.
    grad_z = torch.ops.aten.max_pool2d_with_indices_backward(
        grad_out, grad_out.new_empty((n, c, h2, w2)), [2, 2], [2, 2], [0, 0], [1, 1],
        False, idx)
    return torch.ops.aten.upsample_bilinear2d_backward(
        grad_z, [h2, w2], [n, c, h_in, w_in], False, None, None)


def selected_position_grads(x: Tensor, grad_out: Tensor, idx: Tensor, geom_h: AxisGeometry,
                            geom_w: AxisGeometry) -> Tuple[Tensor, Tensor]:
    """dL/dpos (float64) for every query row/column, from the arg-max point of each cell.

    At query point (row k, column l) with neighbours x00, x01, x10, x11 and fractions
    (fh, fw), the bilinear value's derivatives are
    ``d/dpos_h = (1-fw)(x10-x00) + fw(x11-x01)`` and
    ``d/dpos_w = (1-fh)(x01-x00) + fh(x11-x10)``; points outside the input get 0.
    """
    n, c, h_in, w_in = x.shape
    h2, w2 = 2 * geom_h.n_out, 2 * geom_w.n_out
    acc = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    i0h, i1h, fh_tab = geom_h.i0, geom_h.i1, geom_h.frac_as(acc)
    i0w, i1w, fw_tab = geom_w.i0, geom_w.i1, geom_w.frac_as(acc)

    # Tables over the (2*H_out) x (2*W_out) query plane, looked up with the arg-max
    # index by torch.take (much cheaper than decomposing the index per element).
    def plane(col_h: Tensor, col_w: Tensor) -> Tensor:
        return (col_h[:, None] + col_w[None, :]).reshape(-1)

    zeros_h = torch.zeros_like(fh_tab)
    zeros_w = torch.zeros_like(fw_tab)
    x_flat = x.reshape(n, c, h_in * w_in)
    idx_flat = idx.reshape(n, c, -1)

    def corner(rows: Tensor, cols: Tensor) -> Tensor:
        where = torch.take(plane(rows * w_in, cols), idx_flat)
        return x_flat.gather(2, where).to(acc)

    x00, x01 = corner(i0h, i0w), corner(i0h, i1w)
    x10, x11 = corner(i1h, i0w), corner(i1h, i1w)
    fh = torch.take(plane(fh_tab, zeros_w), idx_flat)
    fw = torch.take(plane(zeros_h, fw_tab), idx_flat)
    g = grad_out.reshape(n, c, -1).to(acc)
    d_h = (g * torch.lerp(x10 - x00, x11 - x01, fw)).view(idx.shape)
    d_w = (g * torch.lerp(x01 - x00, x11 - x10, fh)).view(idx.shape)

    # Output cell (i, j) selects query row 2i or 2i+1 and column 2j or 2j+1: reduce per
    # parity instead of scattering into 2*H_out bins.
    parity_h = (torch.arange(h2, device=x.device) % 2).to(acc)
    parity_w = (torch.arange(w2, device=x.device) % 2).to(acc)
    odd_h = torch.take(plane(parity_h, zeros_w), idx_flat).view(idx.shape)
    odd_w = torch.take(plane(zeros_h, parity_w), idx_flat).view(idx.shape)
    gh_all = d_h.sum(dim=(0, 1, 3))
    gh_odd = (d_h * odd_h).sum(dim=(0, 1, 3))
    gw_all = d_w.sum(dim=(0, 1, 2))
    gw_odd = (d_w * odd_w).sum(dim=(0, 1, 2))
    grad_h = torch.stack((gh_all - gh_odd, gh_odd), dim=1).reshape(h2)
    grad_w = torch.stack((gw_all - gw_odd, gw_odd), dim=1).reshape(w2)
    return ((grad_h * geom_h.inside).to(torch.float64),
            (grad_w * geom_w.inside).to(torch.float64))
