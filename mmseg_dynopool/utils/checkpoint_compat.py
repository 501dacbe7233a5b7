"""Load checkpoints with ``torch.load(weights_only=True)`` and a minimal allow-list.

mmengine 0.10.7 loads local checkpoints with ``torch.load(filename, map_location=...)``.
Since torch 2.6 that means ``weights_only=True`` without any extra globals, and mmengine's
own checkpoints (``--resume``, ``load_from``) fail with "Unsupported global": their
message hub holds ``HistoryBuffer`` objects with numpy arrays inside.

:func:`install_checkpoint_compat` (called by ``import mmseg_dynopool``) registers
:func:`load_checkpoint_file` as mmengine's loader for local paths. It unpickles with
``weights_only=True`` and allows, only for the duration of that one call, the globals
listed by :func:`checkpoint_safe_globals` - each one checked against a real checkpoint
of a Runner run with our hooks (docs/reliability.md, "Safe checkpoints"). Any other
global is refused with :class:`UnsafeCheckpointError`, which names it. Files you trust
load unrestricted with ``MMSEG_DYNOPOOL_TRUSTED_CHECKPOINTS=1`` in the environment or
``load_checkpoint_file(..., trusted=True)``.
"""
import os
import os.path as osp
import pickle
import re
import zipfile
from typing import Any, List, Optional

import torch
from mmengine.runner.checkpoint import CheckpointLoader

TRUSTED_ENV = 'MMSEG_DYNOPOOL_TRUSTED_CHECKPOINTS'
_TRUE = ('1', 'true', 'yes', 'y')
# torch's wordings for a global, class or function outside its allow-list, and for a
# blocked module (the name is what the refusal reports).
_GLOBAL_PATTERNS = (re.compile(r'GLOBAL (\S+) was not an allowed global'),
                    re.compile(r'unsupported GLOBAL (\S+) whose module'),
                    re.compile(r"via `add_safe_globals`,? but got <class '([^']+)'>"),
                    re.compile(r'unrecognized function ([^\n]+?)(?: which belongs|$)',
                               re.M))

_INSTALLED = False


class UnsafeCheckpointError(pickle.UnpicklingError, RuntimeError):
    """A checkpoint needs a Python global outside the allow-list of safe contents.

    Also a ``RuntimeError``, so callers that report loading failures as such (the
    tools) print it instead of a traceback."""


class CheckpointReadError(RuntimeError):
    """A checkpoint file is truncated or not a file written by ``torch.save``."""


def _history_buffer_attr(owner: Any, name: str) -> Any:
    """Stands in for ``getattr`` while unpickling: a ``HistoryBuffer`` pickles its
    statistics functions (``HistoryBuffer.min`` ...) as ``getattr(HistoryBuffer, 'min')``.
    The real ``getattr`` would let a file walk from any object it can build to any other
    (torch never allows it); this one returns public functions of ``HistoryBuffer`` only.
    """
    from mmengine.logging import HistoryBuffer
    value = vars(HistoryBuffer).get(name) if owner is HistoryBuffer else None
    if not isinstance(name, str) or name.startswith('_') or not callable(value) or \
            isinstance(value, (staticmethod, classmethod, property)):
        owner_name = getattr(owner, '__qualname__', type(owner).__name__)
        raise pickle.UnpicklingError(
            f'GLOBAL builtins.getattr({owner_name},{name}) was not an allowed global '
            '(getattr is allowed for the public functions of HistoryBuffer only)')
    return value


def checkpoint_safe_globals() -> List[Any]:
    """The globals, beyond torch's defaults, that our and mmengine's checkpoints need
    (each found in a real checkpoint; tests/test_utils/test_checkpoint_compat.py keeps the list
    equal to what a Runner run with validation and ``save_best`` writes).

    * ``mmengine.logging.HistoryBuffer``: the message hub's logged scalars (``resume``
      restores them). Unpickling calls its ``__setstate__``, which sets attributes and
      its table of statistics functions.
    * ``builtins.getattr``, restricted to the public functions of ``HistoryBuffer``
      (:func:`_history_buffer_attr`): that table, pickled as ``getattr(HistoryBuffer,
      'min')`` etc.
    * ``numpy.core.multiarray._reconstruct``, ``numpy.ndarray``, ``numpy.dtype`` and
      ``numpy.dtypes.Float64DType`` / ``Int64DType`` (the classes whose state a
      float64 / int64 dtype restores): the arrays inside a ``HistoryBuffer`` and numpy
      scalars, rebuilt from raw bytes.
    * ``numpy.core.multiarray.scalar``: numpy scalars (the metric ``save_best`` keeps as
      ``best_score`` in the message hub), rebuilt from a dtype and raw bytes.
    """
    import numpy as np
    from mmengine.logging import HistoryBuffer
    from numpy.core.multiarray import _reconstruct, scalar
    return [HistoryBuffer, (_history_buffer_attr, 'builtins.getattr'), _reconstruct,
            np.ndarray, np.dtype, type(np.dtype(np.float64)), type(np.dtype(np.int64)),
            scalar]


def trusted_by_env() -> bool:
    """Whether ``MMSEG_DYNOPOOL_TRUSTED_CHECKPOINTS`` asks for unrestricted loading."""
    return os.environ.get(TRUSTED_ENV, '').strip().lower() in _TRUE


def _unsafe_global(message: str) -> Optional[str]:
    for pattern in _GLOBAL_PATTERNS:
        found = pattern.search(message)
        if found:
            return found.group(1)
    return None


def load_checkpoint_file(filename: str, map_location: Any = None, *,
                         trusted: Optional[bool] = None) -> Any:
    """``torch.load`` a local checkpoint safely (see the module docstring).

    Args:
        filename: path of the file (``~`` is expanded).
        map_location: as for ``torch.load``.
        trusted: unpickle without restrictions (arbitrary code can run: only for files
            you trust). Default: ``MMSEG_DYNOPOOL_TRUSTED_CHECKPOINTS`` in the
            environment.

    Raises:
        FileNotFoundError: no such file.
        UnsafeCheckpointError: the file needs a global outside the allow-list.
        CheckpointReadError: the file is truncated or not written by ``torch.save``.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint {filename} can not be found.')
    if trusted is None:
        trusted = trusted_by_env()
    try:
        if trusted:
            return torch.load(filename, map_location=map_location, weights_only=False)
        # Allowed only around this call, not for every later torch.load.
        with torch.serialization.safe_globals(checkpoint_safe_globals()):
            return torch.load(filename, map_location=map_location, weights_only=True)
    except Exception as err:
        name = _unsafe_global(str(err)) if isinstance(
            err, pickle.UnpicklingError) and not trusted else None
        if name is not None:
            raise UnsafeCheckpointError(
                f'refusing to load checkpoint {filename}: it needs the Python global '
                f'{name}, which is not on the allow-list of safe checkpoint contents '
                '(tensors, numbers, strings, containers, numpy arrays, mmengine '
                'HistoryBuffer). Unpickling it could run arbitrary code. If you trust '
                f'this file, load it with {TRUSTED_ENV}=1 in the environment (or '
                'load_checkpoint_file(..., trusted=True)).') from None
        # Only blame the file when it is damaged: other errors (e.g. a CUDA tensor on
        # a machine without CUDA) keep torch's own message.
        if isinstance(err, EOFError) or not _intact(filename):
            detail = str(err).strip().splitlines()[0] if str(err).strip() else \
                type(err).__name__
            raise CheckpointReadError(
                f'checkpoint {filename} is truncated or unreadable (not a complete '
                f'file written by torch.save): {detail}') from err
        raise


def _intact(filename: str) -> bool:
    """A complete zip archive (torch.save's format since torch 1.6, checked entry by
    entry), or a file that starts like the legacy format."""
    try:
        if zipfile.is_zipfile(filename):
            with zipfile.ZipFile(filename) as archive:
                return archive.testzip() is None
        with open(filename, 'rb') as f:
            head = f.read(14)
    except Exception:  # noqa: BLE001 - any failure to read it means it is damaged
        return False
    # pickle protocol 2, then LONG1 of torch's 10-byte magic number.
    return len(head) == 14 and head[:4] == b'\x80\x02\x8a\x0a' and int.from_bytes(
        head[4:], 'little') == torch.serialization.MAGIC_NUMBER


def install_checkpoint_compat() -> None:
    """Make :func:`load_checkpoint_file` mmengine's loader for local paths
    (idempotent)."""
    global _INSTALLED
    if _INSTALLED:
        return
    CheckpointLoader.register_scheme(prefixes='', loader=load_checkpoint_file,
                                     force=True)
    _INSTALLED = True
