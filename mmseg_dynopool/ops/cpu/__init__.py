"""CPU backend of DynOPool: the fused C++ kernel ``dynopool_cpu.cpp``.

Compiled in place as ``mmseg_dynopool._C`` by ``make setup`` / ``pip install -e .``
(``setup.py``); :data:`ext` is ``None`` when it is not built (or is an older build
without this API), and the native-op fallback is used instead.
"""
from types import ModuleType
from typing import Optional


def _load() -> Optional[ModuleType]:
    try:
        from ... import _C
    except ImportError:  # pragma: no cover - not built: native-op fallback
        return None
    # A stale build from before the kernel took both aggregations: treat as not built.
    return _C if hasattr(_C, 'query_forward') else None


ext: Optional[ModuleType] = _load()

__all__ = ['ext']
