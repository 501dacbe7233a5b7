"""Functional core of DynOPool (thesis chapter 4, Eqs. 4.1-4.6).

Geometry, in the normalised coordinates of Eq. 4.2 ((-1, -1) and (1, 1) are the outer
corners of the input map): the output grid has ``H_out x W_out`` cells; the cell centred at
``p`` is sampled at the four query points ``p +- (1/4) * (2 / H_out, 2 / W_out)``. Along one
axis the query points of all cells are therefore the ``2 * H_out`` equally spaced points
``-1 + (2k + 1) / (2 * H_out)``, which in pixel coordinates of the input are

    pos_k = (k + 0.5) * H_in / (2 * H_out) - 0.5,    k = 0 .. 2 * H_out - 1,

i.e. exactly the sample points of a bilinear resize to ``2 * H_out`` with
``align_corners=False``. The output is the 2x2 max (or mean) over each cell's four
bilinear samples. Outside the input, samples take the border value (replicate padding).

Two implementations share that geometry:

* :func:`dynopool_sample` - the fast path. The forward runs PyTorch's native bilinear
  resize and pooling; for ``'max'`` the backward w.r.t. the query positions is computed
  only at the selected (arg-max) query points. Used by :class:`~mmseg_dynopool.DynOPool`.
* :func:`dynopool_sample_reference` - a plain autograd version that gathers the
  neighbours of every query point. Slow; it is the specification the tests hold the fast
  path to, and the path used for ``'avg'``'s position gradient.
"""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

AGGREGATIONS = ('max', 'avg')

try:  # the fused CPU kernel (mmseg_dynopool/csrc), built by `pip install -e .`
    from .. import _C as _ext
except ImportError:  # pragma: no cover - not built: native-op fallback below
    _ext = None


def fused_kernel_available() -> bool:
    """Whether the compiled CPU kernel for ``'max'`` aggregation is importable."""
    return _ext is not None


def ste_round(value: Tensor) -> Tensor:
    """Round half up in the forward pass, identity gradient in the backward (Eq. 4.3)."""
    return value + (torch.floor(value + 0.5) - value).detach()


def output_size(in_size, ratio: Tensor, min_size: float = 1.5) -> Tensor:
    """Straight-through output size ``round(max(in_size * ratio, min_size))`` (Eqs. 4.1, 4.3).

    ``in_size`` is an int or a (straight-through) tensor. The forward value is an integer;
    the gradient w.r.t. ``ratio`` (and ``in_size``) is that of the continuous product. With
    ``min_size=1.5`` the size never falls below 2 (section 5.2.2).
    """
    cont = torch.clamp(in_size * ratio, min=min_size)
    return ste_round(cont)


def query_positions(in_size: int, out_size: Tensor, n_out: int,
                    dtype: torch.dtype = torch.float32) -> Tensor:
    """Pixel coordinates of the ``2 * n_out`` query points along one axis (Eq. 4.2).

    ``out_size`` is the straight-through size (forward value ``n_out``); the positions are
    differentiable w.r.t. it, which is how the task loss reaches alpha. The values are
    rounded the way PyTorch's bilinear resize rounds them for inputs of ``dtype`` (a
    float32 scale and one fused multiply-add for float32/16 maps, float64 throughout for
    float64 maps), so DynOPool samples exactly the points ``F.interpolate`` does and a
    frozen/exported model built from ``F.interpolate`` reproduces it. Returned as float64.
    """
    k = torch.arange(2 * n_out, device=out_size.device, dtype=torch.float64)
    if dtype == torch.float64:
        value = (k + 0.5) * (float(in_size) / float(2 * n_out)) - 0.5
    else:
        scale = torch.tensor(float(in_size), dtype=torch.float32) / float(2 * n_out)
        value = (float(scale) * (k + 0.5) - 0.5).float().double()
    smooth = (k + 0.5) * (in_size / (2.0 * out_size.double())) - 0.5
    return value + (smooth - smooth.detach())


def _axis_table(pos: Tensor, length: int) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Lower/upper neighbour, fraction and in-range mask for positions on one axis.

    Matches PyTorch's bilinear kernel: negative positions clamp to 0, the upper
    neighbour clamps to ``length - 1``.
    """
    p = pos.detach().clamp(min=0.0, max=float(length - 1))
    i0 = p.floor().long()
    i1 = (i0 + 1).clamp(max=length - 1)
    frac = p - i0.to(p.dtype)
    # Outside the input the sample is the (constant) border value: no positional gradient.
    inside = (pos.detach() >= 0) & (pos.detach() <= length - 1)
    return i0, i1, frac, inside


class _BilinearMaxQuery(torch.autograd.Function):
    """Bilinear samples at the query grid followed by a 2x2 max (aggregation ``'max'``).

    On CPU (float32/float64) with the compiled kernel: one fused sweep forward and one
    backward. Otherwise: native ``interpolate`` + ``max_pool2d`` forward, native kernels
    for the input gradient, and the position gradient evaluated at the arg-max query
    point of each output cell only (the others receive no gradient through the max).
    """

    @staticmethod
    def forward(ctx, x: Tensor, pos_h: Tensor, pos_w: Tensor) -> Tensor:
        h2, w2 = pos_h.numel(), pos_w.numel()
        ctx.fused = (_ext is not None and x.device.type == 'cpu'
                     and x.dtype in (torch.float32, torch.float64))
        if ctx.fused:
            x = x.contiguous()
            th = _axis_table(pos_h, x.shape[2])
            tw = _axis_table(pos_w, x.shape[3])
            out, arg = _ext.max_query_forward(x, th[0], th[1], th[2].to(x.dtype), tw[0],
                                              tw[1], tw[2].to(x.dtype))
            ctx.save_for_backward(x, arg, *th, *tw)
            ctx.pos_dtypes = (pos_h.dtype, pos_w.dtype)
            return out
        z = F.interpolate(x, size=(h2, w2), mode='bilinear', align_corners=False)
        out, idx = F.max_pool2d(z, 2, return_indices=True)
        ctx.save_for_backward(x, pos_h, pos_w, idx)
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):
        if ctx.fused:
            x, arg, i0h, i1h, fh, in_h, i0w, i1w, fw, in_w = ctx.saved_tensors
            need_pos = ctx.needs_input_grad[1] or ctx.needs_input_grad[2]
            gx, gh, gw = _ext.max_query_backward(
                grad_out.contiguous(), x, arg, i0h, i1h, fh.to(x.dtype), i0w, i1w,
                fw.to(x.dtype), ctx.needs_input_grad[0], need_pos)
            grad_x = gx if ctx.needs_input_grad[0] else None
            grad_h = (gh * in_h).to(ctx.pos_dtypes[0]) if need_pos else None
            grad_w = (gw * in_w).to(ctx.pos_dtypes[1]) if need_pos else None
            return grad_x, grad_h, grad_w

        x, pos_h, pos_w, idx = ctx.saved_tensors
        n, c, h_in, w_in = x.shape
        h2, w2 = pos_h.numel(), pos_w.numel()
        grad_out = grad_out.contiguous()
        grad_x = grad_pos_h = grad_pos_w = None

        if ctx.needs_input_grad[0]:
            # The `self` argument of the native backward is only read for its shape.
            grad_z = torch.ops.aten.max_pool2d_with_indices_backward(
                grad_out, grad_out.new_empty((n, c, h2, w2)), [2, 2], [2, 2], [0, 0],
                [1, 1], False, idx)
            grad_x = torch.ops.aten.upsample_bilinear2d_backward(
                grad_z, [h2, w2], [n, c, h_in, w_in], False, None, None)

        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            grad_pos_h, grad_pos_w = _selected_position_grads(
                x, grad_out, idx, pos_h, pos_w)
        return grad_x, grad_pos_h, grad_pos_w


def _selected_position_grads(x: Tensor, grad_out: Tensor, idx: Tensor, pos_h: Tensor,
                             pos_w: Tensor) -> Tuple[Tensor, Tensor]:
    """dL/dpos for every query row/column, from the arg-max query point of each cell.

    At query point (row k, column l) with neighbours x00, x01, x10, x11 and fractions
    (fh, fw), the bilinear value's derivatives are
    ``d/dpos_h = (1-fw)(x10-x00) + fw(x11-x01)`` and
    ``d/dpos_w = (1-fh)(x01-x00) + fh(x11-x10)``.
    """
    n, c, h_in, w_in = x.shape
    h2, w2 = pos_h.numel(), pos_w.numel()
    acc = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    i0h, i1h, fh_tab, in_h = _axis_table(pos_h, h_in)
    i0w, i1w, fw_tab, in_w = _axis_table(pos_w, w_in)

    # Tables over the (2*H_out) x (2*W_out) query plane, looked up with the arg-max
    # index by torch.take (much cheaper than decomposing the index per element).
    def plane(col_h: Tensor, col_w: Tensor) -> Tensor:
        return (col_h[:, None] + col_w[None, :]).reshape(-1)

    zeros_h = torch.zeros_like(fh_tab, dtype=acc)
    zeros_w = torch.zeros_like(fw_tab, dtype=acc)
    x_flat = x.reshape(n, c, h_in * w_in)
    idx_flat = idx.reshape(n, c, -1)

    def corner(rows: Tensor, cols: Tensor) -> Tensor:
        where = torch.take(plane(rows * w_in, cols), idx_flat)
        return x_flat.gather(2, where).to(acc)

    x00, x01 = corner(i0h, i0w), corner(i0h, i1w)
    x10, x11 = corner(i1h, i0w), corner(i1h, i1w)
    fh = torch.take(plane(fh_tab.to(acc), zeros_w), idx_flat)
    fw = torch.take(plane(zeros_h, fw_tab.to(acc)), idx_flat)
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
    grad_h = (grad_h * in_h).to(pos_h.dtype)
    grad_w = (grad_w * in_w).to(pos_w.dtype)
    return grad_h, grad_w


def _lerp_axis(x: Tensor, pos: Tensor, dim: int) -> Tensor:
    """Linear interpolation of ``x`` along ``dim`` at ``pos`` (pixel coordinates)."""
    length = x.shape[dim]
    # Clamp outside the input only: a point exactly on the border keeps its slope (as in
    # the fast paths), where torch.clamp's backward would give 0.
    inside = (pos >= 0) & (pos <= length - 1)
    p = torch.where(inside, pos, pos.detach().clamp(min=0.0, max=float(length - 1)))
    i0 = p.detach().floor().long()
    i1 = (i0 + 1).clamp(max=length - 1)
    shape = [1] * x.dim()
    shape[dim] = -1
    frac = (p - i0.to(p.dtype)).view(shape).to(x.dtype)
    return torch.lerp(x.index_select(dim, i0), x.index_select(dim, i1), frac)


def dynopool_sample_reference(x: Tensor, pos_h: Tensor, pos_w: Tensor,
                              aggregation: str = 'max') -> Tensor:
    """Reference implementation: gather-based bilinear samples, then 2x2 aggregation.

    Differentiable in ``x``, ``pos_h`` and ``pos_w`` through plain autograd.
    """
    z = _lerp_axis(_lerp_axis(x, pos_h, 2), pos_w, 3)
    if aggregation == 'max':
        return F.max_pool2d(z, 2)
    return F.avg_pool2d(z, 2)


def dynopool_sample(x: Tensor, pos_h: Tensor, pos_w: Tensor,
                    aggregation: str = 'max') -> Tensor:
    """Sample ``x`` at the query grid (``pos_h`` x ``pos_w``) and aggregate cells of 2x2.

    ``pos_h``/``pos_w`` hold the ``2 * H_out`` / ``2 * W_out`` query coordinates from
    :func:`query_positions`; the result has shape ``(N, C, H_out, W_out)``.
    """
    if aggregation == 'max':
        return _BilinearMaxQuery.apply(x, pos_h, pos_w)
    if aggregation == 'avg':
        if not (pos_h.requires_grad or pos_w.requires_grad):
            z = F.interpolate(x, size=(pos_h.numel(), pos_w.numel()), mode='bilinear',
                              align_corners=False)
            return F.avg_pool2d(z, 2)
        return dynopool_sample_reference(x, pos_h, pos_w, 'avg')
    raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
