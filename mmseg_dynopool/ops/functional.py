"""Functional core of DynOPool (thesis chapter 4, Eqs. 4.1-4.6): sizes, query positions,
and the dispatcher of the sampling op.

Geometry, in the normalised coordinates of Eq. 4.2 ((-1, -1) and (1, 1) are the outer
corners of the input map): the output grid has ``H_out x W_out`` cells; the cell centred at
``p`` is sampled at the four query points ``p +- (1/4) * (2 / H_out, 2 / W_out)``. Along one
axis the query points of all cells are therefore the ``2 * H_out`` equally spaced points
``-1 + (2k + 1) / (2 * H_out)``, which in pixel coordinates of the input are

    pos_k = (k + 0.5) * H_in / (2 * H_out) - 0.5,    k = 0 .. 2 * H_out - 1,

i.e. exactly the sample points of a bilinear resize to ``2 * H_out`` with
``align_corners=False``. The output is the 2x2 max (or mean) over each cell's four
bilinear samples. Outside the input, samples take the border value (replicate padding).

The op, one file per part (as torchvision's / mmcv's ops are laid out):

* this module - the front: :func:`output_size`, :func:`query_positions` and the dispatcher
  :func:`dynopool_sample` (CUDA -> Triton; CPU float32/float64 -> C++; else native ops);
* ``library.py`` - the registered operators ``mmseg_dynopool::sample`` (C++ kernel on
  CPU, Triton on CUDA; fake implementation, registered autograd) and
  ``mmseg_dynopool::query_positions`` (the straight-through alpha -> positions map);
* ``autograd.py`` - the autograd Function of the native-op fallback;
* ``cpu/`` (C++), ``triton/`` (Triton), ``native.py`` (PyTorch ops) - the kernels;
* ``geometry.py`` - the per-axis sampling tables, cached per input/output size;
* ``reference.py`` - :func:`dynopool_sample_reference`, plain autograd, the
  specification every backend is tested against (values and all gradients).
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from . import triton as triton_backend
from . import library
from .autograd import NativeMaxQuery
from .cpu import ext as _ext
from .geometry import AxisGeometry, axis_geometry
from .reference import AGGREGATIONS, _lerp_axis, dynopool_sample_reference  # noqa: F401

BACKENDS = ('cpu', 'triton', 'native', 'reference')


def fused_kernel_available() -> bool:
    """Whether the compiled CPU kernel (``mmseg_dynopool._C``) is importable."""
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

    The forward values come from the cached tables of :func:`~.geometry.axis_geometry`
    (no per-call arithmetic); the straight-through part is rebuilt from ``out_size`` on
    every call, so the gradient is that of
    ``(k + 0.5) * in_size / (2 * out_size) - 0.5``.
    """
    geom = axis_geometry(in_size, n_out, dtype, out_size.device)
    smooth = geom.grid_k() * (in_size / (2.0 * out_size.double())) - 0.5
    return geom.positions + (smooth - smooth.detach())


def select_backend(x: Tensor, aggregation: str = 'max') -> str:
    """Backend :func:`dynopool_sample` uses for ``x``: ``'triton'`` for CUDA tensors (when
    triton is importable), ``'cpu'`` (the C++ kernel) for CPU float32/float64 when it is
    built, ``'native'`` otherwise."""
    if x.device.type == 'cuda' and triton_backend.available():
        return 'triton'
    if x.device.type == 'cpu' and _ext is not None and x.dtype in (torch.float32,
                                                                   torch.float64):
        return 'cpu'
    return 'native'


def dynopool_sample(x: Tensor, pos_h: Tensor, pos_w: Tensor, aggregation: str = 'max',
                    geometry: Optional[Tuple[AxisGeometry, AxisGeometry]] = None,
                    backend: Optional[str] = None) -> Tensor:
    """Sample ``x`` at the query grid (``pos_h`` x ``pos_w``) and aggregate cells of 2x2.

    ``pos_h``/``pos_w`` hold the ``2 * H_out`` / ``2 * W_out`` query coordinates from
    :func:`query_positions`; the result has shape ``(N, C, H_out, W_out)``.

    Args:
        x (Tensor): ``(N, C, H, W)`` input.
        pos_h, pos_w (Tensor): query coordinates (Eq. 4.2), differentiable.
        aggregation (str): ``'max'`` or ``'avg'`` over each cell's four samples.
        geometry (tuple, optional): the positions' sampling tables
            (:func:`~.geometry.axis_geometry`), as :class:`~mmseg_dynopool.DynOPool`
            passes them; built from the positions when omitted (device ops; the Triton
            backward then reads one loop bound back from the device).
        backend (str, optional): force ``'cpu'``, ``'triton'`` (on CPU tensors: through
            Triton's interpreter), ``'native'`` or ``'reference'``. Default: chosen by
            :func:`select_backend`.
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f'aggregation must be one of {AGGREGATIONS}, got {aggregation!r}')
    if backend is None:
        backend = select_backend(x, aggregation)
    elif backend not in BACKENDS:
        raise ValueError(f'backend must be one of {BACKENDS}, got {backend!r}')
    if backend == 'reference':
        return dynopool_sample_reference(x, pos_h, pos_w, aggregation)
    if geometry is None:
        geometry = (AxisGeometry.from_positions(pos_h, x.shape[2]),
                    AxisGeometry.from_positions(pos_w, x.shape[3]))
    geom_h, geom_w = geometry
    if (geom_h.length, geom_w.length) != tuple(x.shape[2:]) or (
            2 * geom_h.n_out, 2 * geom_w.n_out) != (pos_h.numel(), pos_w.numel()):
        raise ValueError('dynopool_sample: geometry does not match the input size or the '
                         'number of query positions')
    is_max = aggregation == 'max'
    if backend == 'cpu' and (_ext is None or x.device.type != 'cpu'):
        raise RuntimeError('dynopool_sample: the compiled CPU kernel mmseg_dynopool._C '
                           'is not built (run `make setup` or `pip install -e .`)'
                           if _ext is None else
                           f'dynopool_sample: backend "cpu" got a {x.device.type} tensor')
    if backend in ('triton', 'cpu'):
        interpret = backend == 'triton' and x.device.type != 'cuda'
        tables = (library.table_args(geom_h, x.dtype, triton=interpret),
                  library.table_args(geom_w, x.dtype, triton=interpret))
        if interpret:  # Triton's interpreter on CPU tensors (tests)
            return library.EagerSample.apply(x, pos_h, pos_w, *tables, is_max,
                                             library.triton_kernels(interpret=True))
        if library.use_operators():  # traced / compiled: the registered operator
            out, _ = torch.ops.mmseg_dynopool.sample(x, pos_h, pos_w, *tables[0],
                                                     *tables[1], is_max)
            return out
        kernels = library.CPU_KERNELS if backend == 'cpu' else library.triton_kernels()
        return library.EagerSample.apply(x, pos_h, pos_w, *tables, is_max, kernels)
    if is_max:
        return NativeMaxQuery.apply(x, pos_h, pos_w, geom_h, geom_w)
    if not (pos_h.requires_grad or pos_w.requires_grad):
        z = F.interpolate(x, size=(pos_h.numel(), pos_w.numel()), mode='bilinear',
                          align_corners=False)
        return F.avg_pool2d(z, 2)
    return dynopool_sample_reference(x, pos_h, pos_w, 'avg')
