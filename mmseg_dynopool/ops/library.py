"""DynOPool's two ops as registered PyTorch operators (``torch.library``), as torchvision
registers ``roi_align``.

* ``mmseg_dynopool::sample`` - the sampling of Eq. 4.2: the ``(N, C, H_out, W_out)``
  max (or mean) over each output cell's four bilinear samples, and the index of the
  selected sample. Kernels: the C++ kernel on CPU (float32/float64), the Triton kernels
  on CUDA. Its backward is the operator ``mmseg_dynopool::sample_backward`` (input
  gradient and the float64 gradient of every query row/column position).
* ``mmseg_dynopool::query_positions`` - the straight-through map alpha -> query
  positions (Eqs. 4.2-4.6); its backward, ``mmseg_dynopool::query_positions_backward``,
  is the gradient the unfused graph ``r = 1 / alpha`` (Eq. 4.6), ``n = round(clamp(L r,
  min_size))`` straight through (Eqs. 4.1, 4.3), ``clamp(n, max=max_size)``,
  ``pos_k = (k + 1/2) L / (2 n) - 1/2`` (Eq. 4.2) gives, in two reductions.

Each has a fake (meta) implementation, so ``torch.compile`` / ``torch.export`` put it in
the graph as one node, ``torch.jit.trace`` records it as one node (mmengine's FlopAnalyzer
traces models with it), and ``torch.library.opcheck`` can check it. Autograd is
registered with ``torch.library.register_autograd``; the backward operators have no
autograd of their own (no double backward, as before).

The sampling tables (``geometry.py``) travel as tensor arguments, their loop bound
``max_cells`` as an int; the host decides the integer sizes before the call, so every
output shape follows from the argument shapes.
"""
import functools
import math
from collections import OrderedDict
from typing import NamedTuple, Optional, Tuple

import numpy as np
import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from . import triton as triton_backend
from .cpu import ext as _ext
from .geometry import AxisGeometry, axis_geometry

LIB = 'mmseg_dynopool'


class _Tables(NamedTuple):
    """One axis' sampling tables as the kernels read them (the attributes of
    :class:`~.geometry.AxisGeometry` they use), rebuilt from the op's arguments."""
    n_out: int
    i0: Tensor
    i1: Tensor
    frac: Tensor       # in the kernels' accumulation dtype
    inside: Tensor
    cell_lo: Tensor
    cell_hi: Tensor
    max_cells: int

    def frac_as(self, dtype: torch.dtype) -> Tensor:
        return self.frac if self.frac.dtype == dtype else self.frac.to(dtype)


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    """Accumulation dtype of the kernels: float64 for float64 maps, else float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def table_args(geom: AxisGeometry, dtype: torch.dtype, triton: bool = False) -> tuple:
    """The op arguments of one axis' tables: ``i0, i1, frac, inside, cell_lo, cell_hi,
    max_cells`` (``frac`` in the accumulation dtype of a ``dtype`` map).

    ``max_cells``, the loop bound of the Triton backward, is -1 on CPU when the host does
    not know it (tables from arbitrary positions): the C++ kernel does not use it, and
    computing it would read the device. ``triton=True``: for the Triton kernels
    on CPU tensors (the interpreter), which do."""
    cpp = geom.positions.device.type == 'cpu' and not triton
    max_cells = geom.known_max_cells() if cpp else geom.max_cells
    return (geom.i0, geom.i1, geom.frac_as(acc_dtype(dtype)), geom.inside, geom.cell_lo,
            geom.cell_hi, max_cells)


def _dense_format(x: Tensor) -> torch.memory_format:
    """Memory format of the kernels' outputs for ``x``: the C++ kernel works on
    contiguous planes; the Triton kernels keep a dense channels_last layout."""
    if x.device.type != 'cpu' and not x.is_contiguous() and x.is_contiguous(
            memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


# ---------------------------------------------------------------------------- sample
@torch.library.custom_op(f'{LIB}::sample', mutates_args=())
def sample(x: Tensor, pos_h: Tensor, pos_w: Tensor,
           i0_h: Tensor, i1_h: Tensor, frac_h: Tensor, inside_h: Tensor,
           cell_lo_h: Tensor, cell_hi_h: Tensor, max_cells_h: int,
           i0_w: Tensor, i1_w: Tensor, frac_w: Tensor, inside_w: Tensor,
           cell_lo_w: Tensor, cell_hi_w: Tensor, max_cells_w: int,
           is_max: bool) -> Tuple[Tensor, Tensor]:
    """Eq. 4.2's sampling of ``x`` at the query grid; returns ``(out, arg)``: ``arg`` is
    the uint8 index ``2a + b`` of each cell's selected sample (``'max'``), an empty
    ``(0, C, H_out, W_out)`` tensor for ``'avg'``. ``pos_h``/``pos_w`` (the query
    coordinates the tables were built from) are arguments for the gradient only."""
    raise NotImplementedError(f'{LIB}::sample has no kernel for {x.device.type} tensors')


@sample.register_fake
def _(x, pos_h, pos_w, i0_h, i1_h, frac_h, inside_h, cell_lo_h, cell_hi_h, max_cells_h,
      i0_w, i1_w, frac_w, inside_w, cell_lo_w, cell_hi_w, max_cells_w, is_max):
    n, c = x.shape[:2]
    ho, wo = i0_h.shape[0] // 2, i0_w.shape[0] // 2
    fmt = _dense_format(x)
    out = torch.empty((n, c, ho, wo), dtype=x.dtype, device=x.device, memory_format=fmt)
    arg = torch.empty((n if is_max else 0, c, ho, wo), dtype=torch.uint8, device=x.device,
                      memory_format=fmt)
    return out, arg


def cpu_forward(x: Tensor, tables_h: tuple, tables_w: tuple, is_max: bool
                ) -> Tuple[Tensor, Tensor]:
    """The CPU kernel of ``sample`` (the C++ kernel, float32/float64)."""
    if _ext is None:
        raise RuntimeError(f'{LIB}::sample: the compiled CPU kernel mmseg_dynopool._C is '
                           'not built (run `make setup` or `pip install -e .`)')
    return tuple(_ext.query_forward(x.contiguous(), tables_h[0], tables_h[1], tables_h[2],
                                    tables_w[0], tables_w[1], tables_w[2], is_max))


@sample.register_kernel('cpu')
def _(x, pos_h, pos_w, i0_h, i1_h, frac_h, inside_h, cell_lo_h, cell_hi_h, max_cells_h,
      i0_w, i1_w, frac_w, inside_w, cell_lo_w, cell_hi_w, max_cells_w, is_max):
    return cpu_forward(x, (i0_h, i1_h, frac_h), (i0_w, i1_w, frac_w), is_max)


def _triton_tables(args: tuple) -> _Tables:
    return _Tables(args[0].shape[0] // 2, *args)


@sample.register_kernel('cuda')
def _(x, pos_h, pos_w, i0_h, i1_h, frac_h, inside_h, cell_lo_h, cell_hi_h, max_cells_h,
      i0_w, i1_w, frac_w, inside_w, cell_lo_w, cell_hi_w, max_cells_w, is_max):
    return triton_forward(x, (i0_h, i1_h, frac_h, inside_h, cell_lo_h, cell_hi_h,
                              max_cells_h),
                          (i0_w, i1_w, frac_w, inside_w, cell_lo_w, cell_hi_w,
                           max_cells_w), is_max, interpret=False)


def triton_forward(x: Tensor, tables_h: tuple, tables_w: tuple, is_max: bool,
                   interpret: bool) -> Tuple[Tensor, Tensor]:
    """The CUDA kernel of ``sample`` (also callable on CPU tensors through Triton's
    interpreter, ``interpret=True``)."""
    kernels = triton_backend.get_kernels(interpret)
    x, _ = triton_backend.layout(x)
    out, arg = triton_backend.forward(x, _triton_tables(tables_h), _triton_tables(tables_w),
                                      is_max, kernels)
    if arg is None:
        arg = torch.empty((0, ) + tuple(out.shape[1:]), dtype=torch.uint8,
                          device=out.device, memory_format=_dense_format(out))
    return out, arg


# ------------------------------------------------------------------- sample_backward
@torch.library.custom_op(f'{LIB}::sample_backward', mutates_args=())
def sample_backward(grad_out: Tensor, x: Tensor, arg: Tensor,
                    i0_h: Tensor, i1_h: Tensor, frac_h: Tensor, inside_h: Tensor,
                    cell_lo_h: Tensor, cell_hi_h: Tensor, max_cells_h: int,
                    i0_w: Tensor, i1_w: Tensor, frac_w: Tensor, inside_w: Tensor,
                    cell_lo_w: Tensor, cell_hi_w: Tensor, max_cells_w: int,
                    is_max: bool, need_x: bool, need_pos: bool
                    ) -> Tuple[Tensor, Tensor, Tensor]:
    """Backward of ``sample``: ``(grad_x, grad_pos_h, grad_pos_w)``, the positional
    gradients float64 and zero outside the input (where a sample is the constant border
    value). An output not asked for (``need_x``/``need_pos``) is an empty tensor."""
    raise NotImplementedError(f'{LIB}::sample_backward has no kernel for '
                              f'{x.device.type} tensors')


@sample_backward.register_fake
def _(grad_out, x, arg, i0_h, i1_h, frac_h, inside_h, cell_lo_h, cell_hi_h, max_cells_h,
      i0_w, i1_w, frac_w, inside_w, cell_lo_w, cell_hi_w, max_cells_w, is_max, need_x,
      need_pos):
    gx = torch.empty(x.shape, dtype=x.dtype, device=x.device,
                     memory_format=_dense_format(x)) if need_x else x.new_empty((0, ))
    f64 = dict(dtype=torch.float64)
    gh = x.new_empty((i0_h.shape[0] if need_pos else 0, ), **f64)
    gw = x.new_empty((i0_w.shape[0] if need_pos else 0, ), **f64)
    return gx, gh, gw


def _finish_backward(x: Tensor, gx: Optional[Tensor], gh: Optional[Tensor],
                     gw: Optional[Tensor], inside_h: Tensor, inside_w: Tensor,
                     need_x: bool, need_pos: bool) -> Tuple[Tensor, Tensor, Tensor]:
    """Mask the positional gradients and put empty tensors where nothing was asked."""
    empty = x.new_empty((0, ), dtype=torch.float64)
    gx = gx if need_x else x.new_empty((0, ))
    if need_pos:
        return gx, gh * inside_h, gw * inside_w
    return gx, empty, empty.clone()


def cpu_backward(grad_out: Tensor, x: Tensor, arg: Tensor, tables_h: tuple,
                 tables_w: tuple, is_max: bool, need_x: bool, need_pos: bool
                 ) -> Tuple[Tensor, Tensor, Tensor]:
    """The CPU kernel of ``sample_backward``."""
    if _ext is None:
        raise RuntimeError(f'{LIB}::sample_backward: the compiled CPU kernel '
                           'mmseg_dynopool._C is not built')
    gx, gh, gw = _ext.query_backward(grad_out, x.contiguous(), arg, tables_h[0],
                                     tables_h[1], tables_h[2], tables_w[0], tables_w[1],
                                     tables_w[2], is_max, need_x, need_pos)
    return _finish_backward(x, gx, gh, gw, tables_h[3], tables_w[3], need_x, need_pos)


@sample_backward.register_kernel('cpu')
def _(grad_out, x, arg, i0_h, i1_h, frac_h, inside_h, cell_lo_h, cell_hi_h, max_cells_h,
      i0_w, i1_w, frac_w, inside_w, cell_lo_w, cell_hi_w, max_cells_w, is_max, need_x,
      need_pos):
    return cpu_backward(grad_out, x, arg, (i0_h, i1_h, frac_h, inside_h),
                        (i0_w, i1_w, frac_w, inside_w), is_max, need_x, need_pos)


@sample_backward.register_kernel('cuda')
def _(grad_out, x, arg, i0_h, i1_h, frac_h, inside_h, cell_lo_h, cell_hi_h, max_cells_h,
      i0_w, i1_w, frac_w, inside_w, cell_lo_w, cell_hi_w, max_cells_w, is_max, need_x,
      need_pos):
    return triton_backward(grad_out, x, arg, (i0_h, i1_h, frac_h, inside_h, cell_lo_h,
                                              cell_hi_h, max_cells_h),
                           (i0_w, i1_w, frac_w, inside_w, cell_lo_w, cell_hi_w,
                            max_cells_w), is_max, need_x, need_pos, interpret=False)


def triton_backward(grad_out: Tensor, x: Tensor, arg: Tensor, tables_h: tuple,
                    tables_w: tuple, is_max: bool, need_x: bool, need_pos: bool,
                    interpret: bool) -> Tuple[Tensor, Tensor, Tensor]:
    """The CUDA kernel of ``sample_backward`` (CPU tensors: Triton's interpreter)."""
    kernels = triton_backend.get_kernels(interpret)
    x, _ = triton_backend.layout(x)
    gx, gh, gw = triton_backend.backward(
        grad_out, x, arg if is_max else None, _triton_tables(tables_h),
        _triton_tables(tables_w), is_max, need_x, need_pos, kernels)
    return _finish_backward(x, gx, gh, gw, tables_h[3], tables_w[3], need_x, need_pos)


# The tables are arguments 3-9 (rows) and 10-16 (columns) of both operators.
_TABLES = slice(3, 17)


def _sample_setup_context(ctx, inputs: tuple, output: tuple) -> None:
    x = inputs[0]
    ctx.save_for_backward(x, output[1], *(t for t in inputs[_TABLES]
                                          if isinstance(t, Tensor)))
    ctx.max_cells = (inputs[9], inputs[16])
    ctx.is_max = inputs[17]
    ctx.pos_dtypes = (inputs[1].dtype, inputs[2].dtype)
    ctx.mark_non_differentiable(output[1])


def _sample_autograd(ctx, grad_out: Tensor, grad_arg: Optional[Tensor]) -> tuple:
    x, arg, *t = ctx.saved_tensors
    need_x = ctx.needs_input_grad[0]
    need_pos = ctx.needs_input_grad[1] or ctx.needs_input_grad[2]
    tables_h = (*t[0:6], ctx.max_cells[0])
    tables_w = (*t[6:12], ctx.max_cells[1])
    gx, gh, gw = sample_backward(grad_out, x, arg, *tables_h, *tables_w, ctx.is_max,
                                 need_x, need_pos)
    grads = [gx if need_x else None,
             gh.to(ctx.pos_dtypes[0]) if need_pos else None,
             gw.to(ctx.pos_dtypes[1]) if need_pos else None]
    return tuple(grads) + (None, ) * 15


sample.register_autograd(_sample_autograd, setup_context=_sample_setup_context)


# -------------------------------------------------------------------- query_positions
@torch.library.custom_op(f'{LIB}::query_positions', mutates_args=())
def query_positions(alpha: Tensor, positions_h: Tensor, positions_w: Tensor,
                    length_h: int, length_w: int, min_size: float,
                    max_size: Optional[int]) -> Tuple[Tensor, Tensor, Tensor]:
    """The float64 query positions ``(pos_h, pos_w)`` of the sizes ``alpha`` gives for an
    input of ``length_h x length_w``, with the straight-through gradient of Eqs. 4.3-4.6
    (the forward values are the host-built ``positions_h``/``positions_w``, returned as
    new tensors: an operator's outputs never alias its inputs), and the float32 ratio
    ``1 / alpha`` of this forward (Eq. 4.6; what the backward needs, kept because
    alpha itself may be updated in place before the backward runs)."""
    return positions_h.clone(), positions_w.clone(), torch.reciprocal(alpha.float())


@query_positions.register_fake
def _(alpha, positions_h, positions_w, length_h, length_w, min_size, max_size):
    return (torch.empty_like(positions_h), torch.empty_like(positions_w),
            torch.empty_like(alpha, dtype=torch.float32))


@torch.library.custom_op(f'{LIB}::query_positions_backward', mutates_args=())
def query_positions_backward(grad_h: Tensor, grad_w: Tensor, ratio: Tensor,
                             length_h: int, length_w: int, min_size: float,
                             max_size: Optional[int]) -> Tensor:
    """d loss / d alpha (float32) of ``query_positions`` (:func:`positions_grad`)."""
    return positions_grad(grad_h, grad_w, ratio, length_h, length_w, min_size, max_size)


def positions_grad(grad_h: Tensor, grad_w: Tensor, ratio: Tensor, length_h: int,
                   length_w: int, min_size: float, max_size: Optional[int]) -> Tensor:
    """d loss / d alpha (float32) of the query positions, from the forward's float32
    ``ratio = 1 / alpha``: per axis

        d loss / d alpha = -(G * L) * r^2,   G = float32(-sum_k g_k (k + 1/2) * 2 L rec^2),

    ``rec = 1 / (2 n)``, with the dtype flow of the unfused graph (float64 from the
    positions to the size, float32 from the size to alpha), and zero where a clamp binds
    (PyTorch's clamp passes the gradient only strictly inside its bounds, so also at
    ``L r == min_size`` and ``n == max_size``)."""
    r = ratio
    n_h, n_w = grad_h.numel() // 2, grad_w.numel() // 2
    const = _position_constants(length_h, n_h, length_w, n_w, min_size, max_size, r.device)
    if const.lo > const.hi:  # the clamps leave no continuous size a gradient
        return torch.zeros_like(r)
    grid_h = axis_geometry(length_h, n_h, torch.float32, r.device).grid_k()
    grid_w = axis_geometry(length_w, n_w, torch.float32, r.device).grid_k()
    # d loss / d size, float64 (positions) rounded to float32 (the size's dtype).
    sums = torch.stack((torch.dot(grad_h.to(torch.float64), grid_h),
                        torch.dot(grad_w.to(torch.float64), grid_w)))
    g_size = (sums * const.coef).float()  # = -d loss / d size
    # Where the clamps pass the gradient: min_size < L r (< the max_size threshold).
    cont = r * const.in_f32
    live = cont.clamp(min=const.lo, max=const.hi) == cont
    # d size / d r = L, d r / d alpha = -r^2 (float32); the signs cancel with g_size's.
    return torch.where(live, (g_size * const.in_f32) * (r * r), 0.0)


@query_positions_backward.register_fake
def _(grad_h, grad_w, ratio, length_h, length_w, min_size, max_size):
    return torch.empty_like(ratio)


def _positions_setup_context(ctx, inputs: tuple, output: tuple) -> None:
    ctx.save_for_backward(output[2])
    ctx.mark_non_differentiable(output[2])
    ctx.alpha_dtype = inputs[0].dtype
    ctx.args = inputs[3:]  # length_h, length_w, min_size, max_size


def _positions_autograd(ctx, grad_h: Tensor, grad_w: Tensor, grad_ratio) -> tuple:
    (ratio, ) = ctx.saved_tensors
    grad = query_positions_backward(grad_h, grad_w, ratio, *ctx.args)
    return grad.to(ctx.alpha_dtype), None, None, None, None, None, None


query_positions.register_autograd(_positions_autograd,
                                  setup_context=_positions_setup_context)


class _PositionConstants(NamedTuple):
    """Host-known factors of the backward of ``query_positions`` for one pair of axes."""
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


def _position_constants(length_h: int, n_h: int, length_w: int, n_w: int,
                        min_size: float, max_size: Optional[int], device: torch.device
                        ) -> _PositionConstants:
    key = (length_h, n_h, length_w, n_w, float(min_size), max_size, device.type,
           device.index)
    const = _CONSTANTS.get(key)
    if const is not None:
        _CONSTANTS.move_to_end(key)
        return const
    coef = []
    for length, n_out in ((length_h, n_h), (length_w, n_w)):
        # query_positions differentiates (k + 1/2) * (L * (1 / (2 n))) through the float64
        # reciprocal: d/dn = -(k + 1/2) * L * rec^2 * 2 with rec = 1 / (2 n), in float64.
        rec = 1.0 / (2.0 * float(n_out))
        coef.append(float(length) * (rec * rec) * 2.0)
    host = (torch.tensor(coef, dtype=torch.float64),
            torch.tensor([length_h, length_w], dtype=torch.float32))
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


# ------------------------------------------------------------------ eager fast path
def use_operators() -> bool:
    """Whether a call must go through the registered operators: under
    ``torch.jit.trace`` (FLOP counters, ONNX) and ``torch.compile`` / ``torch.export``.

    Eager calls take :class:`EagerSample` / :class:`EagerPositions` instead: the same
    kernels, without ``torch.library``'s Python autograd wrapper, which costs ~0.2 ms
    per call for an 18-argument schema (measured on the 2-core CPU machine: a DynOPool
    forward+backward on a 16x16 map took 1.6-1.9 ms through the operators against
    0.8 ms before them)."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling()


@functools.lru_cache(maxsize=None)
def triton_kernels(interpret: bool = False) -> tuple:
    """``(forward, backward)`` of the Triton kernels, with the signatures of
    :func:`cpu_forward` / :func:`cpu_backward` (``interpret``: on CPU tensors). One pair
    per flag, made once (the dispatcher asks on every CUDA call)."""
    def forward(x, tables_h, tables_w, is_max):
        return triton_forward(x, tables_h, tables_w, is_max, interpret)

    def backward(grad_out, x, arg, tables_h, tables_w, is_max, need_x, need_pos):
        return triton_backward(grad_out, x, arg, tables_h, tables_w, is_max, need_x,
                               need_pos, interpret)
    return forward, backward


CPU_KERNELS = (cpu_forward, cpu_backward)


class EagerSample(torch.autograd.Function):
    """``mmseg_dynopool::sample`` with its registered autograd, for eager calls: the
    same kernels (``kernels``: :data:`CPU_KERNELS` or :func:`triton_kernels`), the same
    backward (``sample_backward``'s kernels)."""

    @staticmethod
    def forward(ctx, x: Tensor, pos_h: Tensor, pos_w: Tensor, tables_h: tuple,
                tables_w: tuple, is_max: bool, kernels: tuple) -> Tensor:
        out, arg = kernels[0](x, tables_h, tables_w, is_max)
        if any(ctx.needs_input_grad):
            ctx.save_for_backward(x, arg)
            ctx.tables = (tables_h, tables_w)
            ctx.is_max = is_max
            ctx.kernels = kernels
            ctx.pos_dtypes = (pos_h.dtype, pos_w.dtype)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor) -> tuple:
        x, arg = ctx.saved_tensors
        need_x = ctx.needs_input_grad[0]
        need_pos = ctx.needs_input_grad[1] or ctx.needs_input_grad[2]
        gx, gh, gw = ctx.kernels[1](grad_out, x, arg, *ctx.tables, ctx.is_max, need_x,
                                    need_pos)
        return (gx if need_x else None,
                gh.to(ctx.pos_dtypes[0]) if need_pos else None,
                gw.to(ctx.pos_dtypes[1]) if need_pos else None, None, None, None, None)


class EagerPositions(torch.autograd.Function):
    """``mmseg_dynopool::query_positions`` for eager calls: the host-built positions
    (views, no copy) with the gradient of :func:`positions_grad`."""

    @staticmethod
    def forward(ctx, alpha: Tensor, positions_h: Tensor, positions_w: Tensor,
                length_h: int, length_w: int, min_size: float,
                max_size: Optional[int]) -> Tuple[Tensor, Tensor]:
        # The ratio of this forward's alpha (Eq. 4.6): alpha may be updated in place
        # (guard, optimizer) before the backward runs.
        ctx.ratio = torch.reciprocal(alpha.detach().float())
        ctx.alpha_dtype = alpha.dtype
        ctx.args = (length_h, length_w, min_size, max_size)
        # Views, so the cached tables themselves never get a grad_fn.
        return positions_h.view_as(positions_h), positions_w.view_as(positions_w)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_h: Tensor, grad_w: Tensor) -> tuple:
        grad = positions_grad(grad_h, grad_w, ctx.ratio, *ctx.args)
        return grad.to(ctx.alpha_dtype), None, None, None, None, None, None


def positions(alpha: Tensor, geom_h: AxisGeometry, geom_w: AxisGeometry,
              min_size: float, max_size: Optional[int]) -> Tuple[Tensor, Tensor]:
    """The query positions of ``geom_h`` x ``geom_w`` with the straight-through gradient
    to ``alpha`` (Eqs. 4.2-4.6): the operator when tracing/compiling, else the eager
    Function."""
    args = (alpha, geom_h.positions, geom_w.positions, geom_h.length, geom_w.length,
            float(min_size), max_size)
    if use_operators():
        return torch.ops.mmseg_dynopool.query_positions(*args)[:2]
    return EagerPositions.apply(*args)
