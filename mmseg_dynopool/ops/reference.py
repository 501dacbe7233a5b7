"""Reference implementation of DynOPool's sampling (thesis Eq. 4.2): the specification.

Plain autograd, gathering the two neighbours of every query point along each axis: slow,
but every fast backend (the C++ CPU kernel, the Triton kernels, the native-op fallback)
is held to it by the tests, for the values and for all gradients (input and positions).
"""
import torch
import torch.nn.functional as F
from torch import Tensor

AGGREGATIONS = ('max', 'avg')


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

    ``pos_h``/``pos_w`` are the ``2 H_out`` / ``2 W_out`` query coordinates of Eq. 4.2
    (:func:`~mmseg_dynopool.ops.query_positions`); the result is ``(N, C, H_out, W_out)``:
    the max (or mean) of each cell's four bilinear samples. Differentiable in ``x``,
    ``pos_h`` and ``pos_w`` through plain autograd.
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f'aggregation must be one of {AGGREGATIONS}, got {aggregation!r}')
    z = _lerp_axis(_lerp_axis(x, pos_h, 2), pos_w, 3)
    if aggregation == 'max':
        return F.max_pool2d(z, 2)
    return F.avg_pool2d(z, 2)
