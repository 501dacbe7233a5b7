"""The forward hooks that put a (shared) resizing layer in front of or behind a module.

Part of the converter's last pass (:mod:`.attach`): every pool hangs in these hooks
instead of wrapping modules, so the converted model's modules - and their state-dict
keys - stay the original's. :class:`PoolBefore` is Eq. 5.3 (``Conv_1 . Pool``),
:class:`PoolAfter` Eq. 5.2 (``Pool . ReLU . Conv_1``) or, on the ``nn.Identity`` left in
a pooling op's place, Eq. 5.1. Each hook object holds its pool as the attribute
``pool`` (the freeze tool replaces it there) and is a plain class, not a closure, so
``copy.deepcopy`` of the model re-targets it at the copied pool.

One hook object serves every module that its pool resizes. When several of them read
the same tensor in one forward (e.g. a ResNet block whose strided conv and shortcut
conv both read the block input, ``placement='before'``), the pool runs once and the
result is reused: the object remembers its last input and output (checked by identity,
version counter and grad mode) until :class:`ClearPoolCaches`, a forward hook on the
converted model, drops them at the end of its forward.
"""
from typing import List, Optional

import torch
from torch import Tensor, nn


class _PoolHook:
    """Shared part of :class:`PoolBefore` and :class:`PoolAfter`."""

    def __init__(self, pool: nn.Module) -> None:
        self.pool = pool
        self._last: Optional[tuple] = None

    def __repr__(self) -> str:
        return f'{type(self).__name__}({type(self.pool).__name__})'

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state['_last'] = None  # a copy never reuses the original's tensors
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def resize(self, x: Tensor) -> Tensor:
        """``self.pool(x)``, reusing the last result for the very same tensor."""
        # Under torch.compile the graph itself shares the work (and the identity /
        # version checks below are not traceable).
        if not isinstance(x, Tensor) or torch.compiler.is_compiling() or x.is_inference():
            return self.pool(x)
        last = self._last
        if last is not None:
            x_in, version_in, grad, pool_id, out, version_out = last
            if (x_in is x and x._version == version_in and out._version == version_out
                    and pool_id == id(self.pool) and grad == torch.is_grad_enabled()):
                return out
        out = self.pool(x)
        if isinstance(out, Tensor):
            self._last = (x, x._version, torch.is_grad_enabled(), id(self.pool), out,
                          out._version)
        return out

    def clear(self) -> None:
        """Forget the last input and output."""
        self._last = None


class PoolBefore(_PoolHook):
    """Forward pre-hook: the module's first input goes through ``pool`` first.

    ``Conv_s -> Conv_1 . Pool`` (Eq. 5.3) on a formerly strided conv.
    """

    def __call__(self, module: nn.Module, args: tuple) -> tuple:
        return (self.resize(args[0]), *args[1:])


class PoolAfter(_PoolHook):
    """Forward hook: the module's output goes through ``pool``.

    ``ReLU . Conv_s -> Pool . ReLU . Conv_1`` (Eq. 5.2) on the module that ends with the
    activation behind a formerly strided conv, or ``Pooling_s -> Pool`` (Eq. 5.1) on the
    ``nn.Identity`` that replaced a pooling op whose pool lives elsewhere.
    """

    def __call__(self, module: nn.Module, args: tuple, output: Tensor) -> Tensor:
        return self.resize(output)


class ClearPoolCaches:
    """Forward hook on a converted model: its pool hooks forget their last tensors."""

    def __init__(self, hooks: List[_PoolHook]) -> None:
        self.hooks = list(hooks)

    def __call__(self, module: nn.Module, args: tuple, output):
        for hook in self.hooks:
            hook.clear()
        return None
