"""Triton backend of DynOPool (thesis Eq. 4.2): launchers of the kernels in ``kernels.py``.

Used for CUDA tensors (float32, bfloat16, float16 and float64; float32 accumulation below
float64). Triton is imported lazily, on the first call, so importing ``mmseg_dynopool``
stays cheap and works without it.

The same kernels run on CPU tensors under Triton's interpreter: :func:`get_kernels` with
``interpret=True`` loads a second copy of ``kernels.py`` with ``TRITON_INTERPRET=1`` set
while its ``@triton.jit`` decorators run (that is when Triton reads the variable), so the
interpreted copy and the compiled kernels coexist in one process and nothing else is
affected. The CPU tests use it; with a GPU the same tests run the compiled kernels.
"""
import importlib.util
import os
import os.path as osp
from types import ModuleType
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor

from ..geometry import AxisGeometry

_KERNELS: Dict[bool, ModuleType] = {}
_AVAILABLE: Optional[bool] = None
_INT32_LIMIT = 2**31 - 1

# Launch configuration: lanes per program (forward, input gradient), the tile of the
# positional-gradient kernel (planes x output columns) and warps per program. One element
# per thread (128 lanes = 4 warps x 32): 40-56 registers per thread on sm_90 instead of
# 127-152 at 4 elements per thread, i.e. >= 50 % theoretical occupancy for these
# gather-bound kernels (table in docs/gpu.md, `tools/analysis/triton_resources.py`).
# The interpreter pays per program (it runs them one after another, each vectorised with
# numpy), so it gets large blocks.
BLOCK = 128
BLOCK_GRAD = 128
BLOCK_NC = 4
BLOCK_J = 32
NUM_WARPS = 4
INTERPRETER_BLOCK = 4096
INTERPRETER_BLOCK_NC = 64
INTERPRETER_BLOCK_J = 64


def _launch_config(kernels: ModuleType) -> Tuple[int, int, int, int]:
    """``(block, block_grad, block_nc, block_j)`` for compiled or interpreted kernels."""
    if getattr(kernels, 'INTERPRETED', False):
        return (INTERPRETER_BLOCK, INTERPRETER_BLOCK, INTERPRETER_BLOCK_NC,
                INTERPRETER_BLOCK_J)
    return BLOCK, BLOCK_GRAD, BLOCK_NC, BLOCK_J


def available() -> bool:
    """Whether ``import triton`` works (it comes with the CUDA builds of torch)."""
    global _AVAILABLE
    if _AVAILABLE is None:
        try:
            import triton  # noqa: F401
            import triton.language  # noqa: F401
            _AVAILABLE = True
        except ImportError:
            _AVAILABLE = False
    return _AVAILABLE


def get_kernels(interpret: bool = False) -> ModuleType:
    """The kernel module: compiled (``interpret=False``) or run by Triton's interpreter.

    Raises:
        RuntimeError: triton is not importable.
    """
    mod = _KERNELS.get(interpret)
    if mod is not None:
        return mod
    if not available():
        raise RuntimeError('DynOPool: the Triton backend needs the `triton` package '
                           '(installed with the CUDA builds of torch)')
    if not interpret:
        from . import kernels as mod
    else:
        path = osp.join(osp.dirname(osp.abspath(__file__)), 'kernels.py')
        spec = importlib.util.spec_from_file_location(f'{__name__}._interpreted_kernels',
                                                      path)
        mod = importlib.util.module_from_spec(spec)
        saved = os.environ.get('TRITON_INTERPRET')
        os.environ['TRITON_INTERPRET'] = '1'
        try:
            spec.loader.exec_module(mod)
        finally:
            if saved is None:
                os.environ.pop('TRITON_INTERPRET', None)
            else:
                os.environ['TRITON_INTERPRET'] = saved
        mod._sum = _interpreted_sum
        mod.INTERPRETED = True
    _KERNELS[interpret] = mod
    return mod


def _interpreted_sum(x, axis=None):
    """``tl.sum`` for the interpreter, which runs ``tl.reduce`` (patched while a kernel
    runs) but not triton's own ``@jit`` helpers unless triton was imported with
    ``TRITON_INTERPRET=1``."""
    import triton.language as tl
    return tl.reduce(x, axis, tl.standard._sum_combine)


def _cdiv(a: int, b: int) -> int:
    return (a + b - 1) // b


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def layout(x: Tensor) -> Tuple[Tensor, bool]:
    """``x`` as a dense NCHW or NHWC tensor, and whether it is NHWC (``channels_last``)."""
    if x.is_contiguous():
        return x, False
    if x.is_contiguous(memory_format=torch.channels_last):
        return x, True
    return x.contiguous(), False


def forward(x: Tensor, geom_h: AxisGeometry, geom_w: AxisGeometry, is_max: bool,
            kernels: ModuleType) -> Tuple[Tensor, Optional[Tensor]]:
    """Samples at the query grid, 2x2 max (with the selected index) or mean.

    ``x`` must be dense (:func:`layout`); the output has ``x``'s memory format.
    """
    n, c = x.shape[:2]
    ho, wo = geom_h.n_out, geom_w.n_out
    channels_last = not x.is_contiguous() and x.is_contiguous(
        memory_format=torch.channels_last)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    out = torch.empty((n, c, ho, wo), dtype=x.dtype, device=x.device, memory_format=fmt)
    arg = torch.empty_like(out, dtype=torch.uint8) if is_max else None
    total = out.numel()
    if total == 0:
        return out, arg
    acc = _acc_dtype(x.dtype)
    block = _launch_config(kernels)[0]
    kernels.forward_kernel[(_cdiv(total, block), )](
        x, out, arg if is_max else out, geom_h.i0, geom_h.i1, geom_h.frac_as(acc),
        geom_w.i0, geom_w.i1, geom_w.frac_as(acc), total, c, ho, wo, *x.stride(),
        *out.stride(), IS_MAX=is_max, CHANNELS_LAST=channels_last,
        INT64=max(x.numel(), total) > _INT32_LIMIT, BLOCK=block, num_warps=NUM_WARPS)
    return out, arg


def backward(grad_out: Tensor, x: Tensor, arg: Optional[Tensor], geom_h: AxisGeometry,
             geom_w: AxisGeometry, is_max: bool, need_x: bool, need_pos: bool,
             kernels: ModuleType) -> Tuple[Optional[Tensor], Optional[Tensor],
                                           Optional[Tensor]]:
    """Input gradient (gathered, no atomics) and float64 positional gradients.

    The positional gradients are per query row/column, not yet masked by
    ``geometry.inside``.
    """
    n, c, h, w = x.shape
    ho, wo = geom_h.n_out, geom_w.n_out
    channels_last = not x.is_contiguous() and x.is_contiguous(
        memory_format=torch.channels_last)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    # The output gradient in the output's (and arg's) layout: one set of strides for both.
    grad_out = grad_out.contiguous(memory_format=fmt)
    if arg is None:
        arg = grad_out
    acc = _acc_dtype(x.dtype)
    _, block_grad, block_nc, block_j_max = _launch_config(kernels)
    int64 = x.numel() > _INT32_LIMIT
    fr, fc = geom_h.frac_as(acc), geom_w.frac_as(acc)
    grad_x = grad_h = grad_w = None
    if need_x:
        grad_x = torch.empty_like(x)
        total = x.numel()
        if total:
            kernels.input_grad_kernel[(_cdiv(total, block_grad), )](
                grad_out, arg, grad_x, geom_h.i0, geom_h.i1, fr, geom_w.i0, geom_w.i1, fc,
                geom_h.cell_lo, geom_h.cell_hi, geom_w.cell_lo, geom_w.cell_hi,
                total, c, h, w, geom_h.max_cells, geom_w.max_cells, *grad_out.stride(),
                *x.stride(), IS_MAX=is_max, CHANNELS_LAST=channels_last, INT64=int64,
                BLOCK=block_grad, num_warps=NUM_WARPS)
    if need_pos:
        nc = n * c
        block_j = min(block_j_max, max(16, 1 << (max(wo, 1) - 1).bit_length()))
        n_j, n_p = _cdiv(wo, block_j), _cdiv(nc, block_nc)
        part_h = torch.empty((n_p * n_j, 2 * ho), dtype=acc, device=x.device)
        part_w = torch.empty((n_p, ho, 2 * wo), dtype=acc, device=x.device)
        if nc and ho and wo:
            kernels.position_grad_kernel[(ho, n_j, n_p)](
                x, grad_out, arg, part_h, part_w, geom_h.i0, geom_h.i1, fr, geom_w.i0,
                geom_w.i1, fc, nc, c, wo, n_j, part_h.stride(0), part_w.stride(0),
                part_w.stride(1), *x.stride(), *grad_out.stride(), IS_MAX=is_max,
                INT64=int64, BLOCK_NC=block_nc, BLOCK_J=block_j, num_warps=NUM_WARPS)
            grad_h = part_h.sum(0, dtype=torch.float64)
            grad_w = part_w.sum((0, 1), dtype=torch.float64)
        else:
            grad_h = torch.zeros(2 * ho, dtype=torch.float64, device=x.device)
            grad_w = torch.zeros(2 * wo, dtype=torch.float64, device=x.device)
    return grad_x, grad_h, grad_w
