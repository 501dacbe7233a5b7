"""Sampling tables of one axis of DynOPool's query grid (thesis Eq. 4.2).

Along one axis the ``2 * n_out`` query points of an input of length ``L`` sit at the pixel
coordinates

    pos_k = (k + 0.5) * L / (2 * n_out) - 0.5,        k = 0 .. 2 * n_out - 1,

(the sample points of a bilinear resize to ``2 * n_out`` with ``align_corners=False``).
Every backend needs, per query point, its lower/upper neighbour, the fraction between
them and whether it lies inside the input; the gather-form backward of the Triton kernels
also needs, per input pixel, the range of output cells whose query points touch it.

Those tables depend only on ``(L, n_out)`` and on how the positions are rounded, so
:func:`axis_geometry` builds them once on the host - with the same float operations
:func:`~mmseg_dynopool.ops.functional.query_positions` uses - and keeps them on the
device: a DynOPool call looks them up instead of rebuilding them, and the host knows the
loop bounds of the backward without reading anything back from the device.
:meth:`AxisGeometry.from_positions` builds the same tables from arbitrary positions
(the public :func:`~mmseg_dynopool.ops.dynopool_sample` API).
"""
import contextlib
from collections import OrderedDict
from typing import Dict, Iterator, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

# (length, n_out, float64 rounding?, device) -> AxisGeometry. Bounded: input sizes vary
# with multi-scale test-time inputs; every entry is a few small tensors.
_CACHE: 'OrderedDict[tuple, AxisGeometry]' = OrderedDict()
_CACHE_SIZE = 1024


@contextlib.contextmanager
def _untraced() -> Iterator[None]:
    """Pause torch.jit's tracer (mmengine's FlopAnalyzer traces models): tables made
    here are constants of any trace, like tensors that existed before it."""
    state = torch._C._get_tracing_state()
    if state is None:  # not tracing (inside an operator's kernel the tracer is off)
        yield
        return
    torch._C._set_tracing_state(None)
    try:
        yield
    finally:
        torch._C._set_tracing_state(state)


def _grid_positions_np(length: int, n_out: int, wide: bool) -> np.ndarray:
    k = np.arange(2 * n_out, dtype=np.float64)
    if wide:
        return (k + 0.5) * (float(length) / float(2 * n_out)) - 0.5
    scale = np.float32(length) / np.float32(2 * n_out)  # float32, as PyTorch's resize
    return (float(scale) * (k + 0.5) - 0.5).astype(np.float32).astype(np.float64)


def grid_positions(length: int, n_out: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """Forward values of the ``2 * n_out`` query coordinates along one axis (Eq. 4.2).

    Rounded the way PyTorch's bilinear resize rounds them for inputs of ``dtype``: a
    float32 scale and one multiply-add for float32/16 maps, float64 throughout for
    float64 maps. Returned as a float64 CPU tensor.
    """
    return torch.from_numpy(_grid_positions_np(length, n_out, dtype == torch.float64))


class AxisGeometry:
    """Neighbour/fraction tables of one axis and the cell ranges of the gather backward.

    Attributes:
        length (int): input size ``L`` along the axis.
        n_out (int): output cells along the axis (``2 * n_out`` query points).
        positions (Tensor): float64 ``(2 n_out,)`` query coordinates (forward values).
        i0, i1 (Tensor): int64 lower / upper neighbour of each query point (PyTorch's
            bilinear convention: negative positions clamp to 0, ``i1`` to ``L - 1``).
        frac (Tensor): float64 fraction ``pos - i0`` of the clamped position.
        inside (Tensor): bool, ``0 <= pos <= L - 1`` (outside, the sample is the
            constant border value and the position gets no gradient).
        cell_lo, cell_hi (Tensor): int64 ``(L,)``: output cells ``[cell_lo, cell_hi)``
            have a query point with pixel ``h`` as neighbour.
        max_cells (int, optional): ``max(cell_hi - cell_lo)`` (host value), the loop
            bound of the gather backward; ``None`` until known.
    """

    def __init__(self, length: int, n_out: int, positions: Tensor, i0: Tensor, i1: Tensor,
                 frac: Tensor, inside: Tensor, cell_lo: Tensor, cell_hi: Tensor,
                 max_cells: Optional[int]) -> None:
        self.length = length
        self.n_out = n_out
        self.positions = positions
        self.i0 = i0
        self.i1 = i1
        self.frac = frac
        self.inside = inside
        self.cell_lo = cell_lo
        self.cell_hi = cell_hi
        self._max_cells = max_cells
        self._frac_as: Dict[torch.dtype, Tensor] = {torch.float64: frac}
        self._grid_k: Optional[Tensor] = None

    @classmethod
    def from_positions(cls, pos: Tensor, length: int) -> 'AxisGeometry':
        """Tables for arbitrary (detached) query coordinates ``pos`` on ``pos``'s device.

        Pure device ops; ``max_cells`` is read back from the device (one host sync) only
        if a gather backward asks for it.
        """
        pos = pos.detach().double()
        p = pos.clamp(min=0.0, max=float(length - 1))
        i0 = p.floor().long()
        i1 = (i0 + 1).clamp(max=length - 1)
        frac = p - i0.double()
        inside = (pos >= 0) & (pos <= length - 1)
        lo, hi = _cell_ranges(i0, length)
        return cls(length, pos.numel() // 2, pos, i0, i1, frac, inside, lo, hi, None)

    @property
    def max_cells(self) -> int:
        """Most output cells any one input pixel contributes to (loop bound).

        Raises:
            ValueError: the positions are not non-decreasing (the cell ranges of the
                gather backward assume the order :func:`grid_positions` has).
        """
        if self._max_cells is None:
            span = (self.cell_hi - self.cell_lo).max()
            unsorted = (self.i0[1:] < self.i0[:-1]).any()
            span, unsorted = torch.stack((span, unsorted.long())).tolist()
            if unsorted:
                raise ValueError('DynOPool: query positions must be non-decreasing '
                                 '(as query_positions() returns them)')
            self._max_cells = int(span)
        return self._max_cells

    def known_max_cells(self) -> int:
        """:attr:`max_cells` if the host knows it, else -1 (reads nothing)."""
        return -1 if self._max_cells is None else self._max_cells

    def frac_as(self, dtype: torch.dtype) -> Tensor:
        """``frac`` converted to ``dtype`` (memoised: the tables are constants)."""
        out = self._frac_as.get(dtype)
        if out is None:
            with _untraced():
                out = self._frac_as[dtype] = self.frac.to(dtype)
        return out

    def grid_k(self) -> Tensor:
        """``k + 0.5`` for ``k = 0 .. 2 n_out - 1`` (float64, on the tables' device)."""
        if self._grid_k is None:
            with _untraced():
                self._grid_k = torch.arange(2 * self.n_out, dtype=torch.float64,
                                            device=self.positions.device) + 0.5
        return self._grid_k


def _cell_ranges(i0: Tensor, length: int) -> Tuple[Tensor, Tensor]:
    """Per input pixel ``h``, the output cells whose query points have ``h`` as neighbour.

    A query point with lower neighbour ``i0`` touches pixels ``i0`` and ``i0 + 1`` (or
    only ``i0`` on the last pixel), so pixel ``h`` is touched by the points with
    ``i0 in {h - 1, h}``: a contiguous run because ``i0`` is non-decreasing. Query point
    ``k`` belongs to cell ``k // 2``.
    """
    h = torch.arange(length, device=i0.device, dtype=i0.dtype)
    first = torch.searchsorted(i0, h - 1, right=False)
    end = torch.searchsorted(i0, h, right=True)
    lo = first // 2
    hi = torch.maximum((end + 1) // 2, lo)
    return lo, hi


def _host_geometry(length: int, n_out: int, wide: bool) -> AxisGeometry:
    """The tables of :func:`grid_positions`, computed with numpy (IEEE operations as the
    device's) - building them reads no tensor."""
    pos = _grid_positions_np(length, n_out, wide)
    p = np.clip(pos, 0.0, float(length - 1))
    i0 = np.floor(p).astype(np.int64)
    i1 = np.minimum(i0 + 1, length - 1)
    frac = p - i0
    inside = (pos >= 0) & (pos <= length - 1)
    h = np.arange(length, dtype=np.int64)
    lo = np.searchsorted(i0, h - 1, side='left') // 2
    hi = np.maximum((np.searchsorted(i0, h, side='right') + 1) // 2, lo)
    t = {name: torch.from_numpy(np.ascontiguousarray(a)) for name, a in
         dict(positions=pos, i0=i0, i1=i1, frac=frac, inside=inside, cell_lo=lo,
              cell_hi=hi).items()}
    return AxisGeometry(length, n_out, max_cells=int((hi - lo).max()), **t)


def axis_geometry(length: int, n_out: int, dtype: torch.dtype,
                  device: torch.device) -> AxisGeometry:
    """Cached tables of the query grid of :func:`grid_positions` on ``device``.

    Built on the host (exactly the values the positions have on any device: IEEE
    operations, no fused arithmetic) and copied to ``device`` once per
    ``(length, n_out, rounding, device)``; later calls only look them up.
    """
    device = torch.device(device)
    wide = dtype == torch.float64
    key = (int(length), int(n_out), wide, device.type, device.index)
    geom = _CACHE.get(key)
    if geom is not None:
        _CACHE.move_to_end(key)
        return geom
    with _untraced():
        geom = _host_geometry(int(length), int(n_out), wide)
        if device.type != 'cpu':
            # Pinned + non_blocking: a plain copy from pageable memory would synchronise
            # the stream (new tables appear whenever an integer size changes).
            pin = device.type == 'cuda'
            move = {name: (getattr(geom, name).pin_memory() if pin else getattr(geom, name))
                    .to(device, non_blocking=pin)
                    for name in ('positions', 'i0', 'i1', 'frac', 'inside', 'cell_lo',
                                 'cell_hi')}
            geom = AxisGeometry(length, n_out, max_cells=geom.max_cells, **move)
    _CACHE[key] = geom
    if len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return geom


def clear_geometry_cache() -> None:
    """Drop every cached table (e.g. to free device memory)."""
    _CACHE.clear()
