"""Host copies of the learnable resizing layers' parameters, refreshed all together.

DynOPool, ShapeAdaptor and DiffStride choose an integer output size from their learnable
parameter (DynOPool's and ShapeAdaptor's ``alpha``, DiffStride's ``stride``), and the
size decides tensor shapes, so the host must know the parameter. It changes only when
the parameter changes (once per optimizer step), so each layer keeps what it needs on
the host (``layer._host``), keyed by the parameter's version counter, storage and dtype
(:func:`param_key`). The first call that finds its copy stale refreshes the copies of
*all* stale live layers on that device - of all three types - in one device->host
transfer (:func:`refresh_host_copies`); every other call computes its sizes on the host.
One training iteration therefore reads the device at most once for all layers together,
however often they are called.

A layer takes part by

* registering itself in :data:`LIVE_LAYERS` (in ``__init__`` and ``__setstate__``, so a
  deep copy is a live layer of its own);
* keeping its copy in ``self._host``: None or an object with a ``key`` attribute;
* ``_host_param()``: the parameter whose :func:`param_key` and device count;
* ``_host_stale()``: whether ``self._host`` is missing or its key is not the
  parameter's current one;
* ``_host_read()``: called under ``no_grad`` right before the transfer; may guard the
  parameter in place (tensor ops only, no host read) and returns the device tensors to
  read;
* ``_host_store(values)``: sets ``self._host`` from the values read (Python floats, the
  tensors of ``_host_read`` flattened in order), keyed by the parameter's key *after*
  the guard.

:class:`HostCopyMixin` implements the registration, ``_host_stale``, ``_host_copy`` (the
copy, refreshed if stale), ``invalidate_sizes`` and the resynchronisation on a switch
between train and eval mode; all three layers use it.

Writes through ``param.data`` bypass the version counter: call ``invalidate_sizes()``
after them (mmengine's EMAHook swaps parameters through ``.data`` around validation and
switches the model to eval mode and back, which resynchronises).
"""
import math
import weakref
from numbers import Integral
from typing import Any, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

SizeLike = Union[int, Tensor]

#: Every live layer that keeps a host copy (DynOPool, ShapeAdaptor, DiffStride), so that
#: one transfer refreshes all stale ones.
LIVE_LAYERS: 'weakref.WeakSet' = weakref.WeakSet()


def param_key(param: Tensor) -> tuple:
    """Changes whenever ``param``'s value may have changed: every in-place update bumps
    ``_version``; ``.to()``/``.half()`` give it new storage."""
    return (param._version, param.data_ptr(), param.dtype)


def _transfer_dtype(device: torch.device) -> torch.dtype:
    # float64 holds float16/bfloat16/float32/float64 values exactly; MPS has no float64
    # (DynOPool, the one layer that runs there, reads float32 values).
    return torch.float32 if device.type == 'mps' else torch.float64


def refresh_host_copies(layer: Any) -> None:
    """Refresh the host copy of ``layer`` and of every stale live layer on its device,
    in one device->host transfer.

    Under a JIT trace (mmengine's FlopAnalyzer, ONNX export) only ``layer``: another
    model's parameter would enter the traced graph as a constant that requires grad.
    """
    device = layer._host_param().device
    batch = [layer]
    others = [] if torch.jit.is_tracing() else list(LIVE_LAYERS)
    for other in others:
        if other is not layer and other._host_stale() and \
                other._host_param().device == device:
            batch.append(other)
    dtype = _transfer_dtype(device)
    with torch.no_grad():
        parts: List[Sequence[Tensor]] = [member._host_read() for member in batch]
        flat = [t.detach().reshape(-1).to(dtype) for part in parts for t in part]
        values = torch.cat(flat).tolist()  # the one synchronisation
    offset = 0
    for member, part in zip(batch, parts):
        count = sum(t.numel() for t in part)
        member._host_store(values[offset:offset + count])
        offset += count


class HostCopyMixin:
    """Host-copy bookkeeping for a resizing layer (an ``nn.Module``; put this first in
    its bases). The layer implements ``_host_param``, ``_host_read`` and
    ``_host_store`` (see the module doc) and calls :meth:`_host_track` in
    ``__init__``."""

    _host: Any = None

    def _host_track(self) -> None:
        self._host = None
        LIVE_LAYERS.add(self)

    def __setstate__(self, state: dict) -> None:
        # copy.deepcopy / unpickling: a new layer, refreshed like the others.
        super().__setstate__(state)
        self._host_track()

    def _host_param(self) -> Tensor:
        raise NotImplementedError

    def _host_stale(self) -> bool:
        host = self._host
        return host is None or host.key != param_key(self._host_param())

    def _host_copy(self) -> Any:
        """The host copy, refreshed (with all other stale layers) if needed."""
        if self._host_stale():
            refresh_host_copies(self)
        return self._host

    def invalidate_sizes(self) -> None:
        """Forget the host copy; the next use reads the parameter again (batched).

        Needed only after writing the parameter through ``.data`` (which does not bump
        its version counter); in-place updates, optimizer steps, ``load_state_dict`` and
        device or dtype moves are detected.
        """
        self._host = None

    def train(self, mode: bool = True):
        # A switch between train and eval mode resynchronises (mmengine's EMAHook swaps
        # parameters through .data around validation). Only a switch: mmengine's loops
        # call train() every iteration, which must not cost a transfer each.
        if mode != self.training:
            self._host = None
        return super().train(mode)


def int_size(size: SizeLike, name: str = 'in_size') -> int:
    """The integer value of a size given as an int or a (straight-through) scalar tensor;
    a tensor is read from the device (pass the value as ``in_values`` where the host
    knows it, see :func:`in_size_values`)."""
    if isinstance(size, Tensor):
        if size.numel() != 1:
            raise ValueError(f'{name} entries must be scalars, got a tensor of shape '
                             f'{tuple(size.shape)}')
        value = float(size.detach())
        if not math.isfinite(value) or value < 1 or abs(value - round(value)) > 1e-3:
            raise ValueError(f'{name} entries must hold positive integer values, '
                             f'got {value!r}')
        return int(round(value))
    if isinstance(size, bool) or not isinstance(size, Integral) or size < 1:
        raise ValueError(f'{name} entries must be positive ints or tensors, got {size!r}')
    return int(size)


def in_size_values(in_size, in_values: Optional[Sequence[int]] = None
                   ) -> Tuple[int, int]:
    """The integer ``(H, W)`` of ``in_size`` (ints or straight-through tensors): the
    host-known ``in_values`` when given (the cost model passes them when it chains
    layers, so no tensor is read back), else read from ``in_size``."""
    if not isinstance(in_size, (tuple, list)) or len(in_size) != 2:
        raise ValueError(f'in_size must be a pair (H, W), got {in_size!r}')
    if in_values is not None:
        return int_size(int(in_values[0])), int_size(int(in_values[1]))
    return int_size(in_size[0]), int_size(in_size[1])
