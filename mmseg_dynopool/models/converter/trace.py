"""Pass 1, the tracer: one forward of a model, its module calls and the resolution levels
of its feature maps.

The converter needs to know, for every resizing operation, which feature maps must keep
one size whatever the learned ratios are. :func:`trace_forward` runs the model once on
a probe input (``probe_size``) and records

* every module call (module name, input and output tensors, nesting, order), through
  forward pre-/post-hooks, and
* every torch function call inside the model's forward (``conv2d``, ``add``, ``cat``,
  ``batch_norm``, ...), through a :class:`~torch.overrides.TorchFunctionMode`.

From the function calls the :class:`Trace` groups the model's 4-D activations into
**levels** (a union-find over tensors): two feature maps are in one level when a
size-preserving call couples them (an element-wise op, a concatenation, a stride-1
'same' convolution, a normalisation: any call except an explicit resize whose 4-D
inputs and outputs have the same spatial size). A residual addition thus puts the
residual path and the shortcut in one level, an HRNet fuse sum puts every path into a
stream in that stream's level, while a transformer's spatial-reduction conv (its output
only ever flattened into tokens) forms a level of its own even where its size happens
to equal a stage's. (:mod:`.levels` then groups the resizing ops by these levels.)

The traced forward runs on the ``meta`` device (shapes only, no memory, no arithmetic)
with the model's parameters substituted through :func:`torch.func.functional_call`; a
model with an op that has no meta kernel is traced on its own device with a zero input
instead. The model runs in eval mode and every module's ``training`` flag is restored.
"""
import itertools
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

Size = Tuple[int, int]

#: Torch functions whose output size is set by an argument (a target size, a scale
#: factor, a sampling grid): their inputs and outputs are never coupled into one level,
#: even when their sizes coincide in the traced forward.
RESIZE_FUNCTIONS = frozenset({
    'interpolate', 'upsample', 'upsample_bilinear', 'upsample_nearest',
    'adaptive_avg_pool2d', 'adaptive_max_pool2d', 'adaptive_max_pool2d_with_indices',
    'grid_sample', 'affine_grid', 'pixel_shuffle', 'pixel_unshuffle', 'fold', 'unfold'})


def flat_tensors(obj: Any) -> List[Tensor]:
    """Every tensor in ``obj`` (nested tuples, lists and dict values), in order."""
    if isinstance(obj, Tensor):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [t for item in obj for t in flat_tensors(item)]
    if isinstance(obj, dict):
        return [t for item in obj.values() for t in flat_tensors(item)]
    return []


def spatial(t: Any) -> Optional[Size]:
    """``(H, W)`` of a 4-D tensor, else None."""
    if isinstance(t, Tensor) and t.dim() == 4:
        return int(t.shape[-2]), int(t.shape[-1])
    return None


@dataclass(eq=False)
class ModuleCall:
    """One call of one module during the traced forward."""
    name: str
    module: nn.Module
    index: int                      # position among all module calls (start order)
    occurrence: int                 # earlier calls of the same module
    parent: Optional[int]           # index of the enclosing module call
    start: int                      # event counter when the call started ...
    inputs: List[Tensor]
    end: int = -1                   # ... and when it returned
    outputs: List[Tensor] = field(default_factory=list)

    @property
    def leaf(self) -> bool:
        return next(self.module.children(), None) is None


@dataclass(eq=False)
class FunctionCall:
    """One torch function call (outside nested torch functions) during the traced
    forward."""
    name: str
    seq: int                        # event counter
    module_call: Optional[int]      # innermost enclosing module call
    inputs: List[Tensor]
    outputs: List[Tensor]
    args: tuple
    kwargs: dict


class Trace:
    """What :func:`trace_forward` recorded. Tensors are identified by object identity
    (the trace keeps them alive); :meth:`level` gives a tensor's level id."""

    def __init__(self) -> None:
        self.calls: List[ModuleCall] = []
        self.functions: List[FunctionCall] = []
        self.calls_by_name: Dict[str, List[ModuleCall]] = {}
        self.input: Optional[Tensor] = None
        self.outputs: List[Tensor] = []
        self.device: str = 'meta'
        self._counter = itertools.count()
        self._stack: List[int] = []
        self._active = False
        self._activations: Dict[int, Tensor] = {}
        self._uf: Dict[int, int] = {}
        self._excluded: set = set()   # parameter/buffer tensors (never activations)
        self._seen: Dict[int, int] = {}

    # ------------------------------------------------------------------ levels
    def _find(self, key: int) -> int:
        root = key
        while self._uf.get(root, root) != root:
            root = self._uf[root]
        while self._uf.get(key, key) != root:
            self._uf[key], key = root, self._uf[key]
        return root

    def union(self, a: int, b: int) -> bool:
        """Merge two levels (tensor ids or level ids); True if they were distinct."""
        ra, rb = self._find(a), self._find(b)
        if ra == rb:
            return False
        # Keep the older (first seen) tensor as the representative: stable ids.
        if self._order(ra) > self._order(rb):
            ra, rb = rb, ra
        self._uf[rb] = ra
        return True

    def _order(self, key: int) -> int:
        return self._seen.get(key, 1 << 62)

    def level(self, t: Optional[Tensor]) -> Optional[int]:
        """Level id of an activation (4-D tensor seen in the traced forward), else
        None."""
        if t is None or id(t) not in self._activations or spatial(t) is None:
            return None
        return self._find(id(t))

    def find(self, level: int) -> int:
        """Current id of a level (ids change when :meth:`union` merges levels)."""
        return self._find(level)

    def level_size(self, level: int) -> Size:
        """Spatial size of a level in the traced forward."""
        return spatial(self._activations[self._find(level)])  # type: ignore[return-value]

    # ------------------------------------------------------------------ queries
    def consumers(self, t: Tensor, after: int = -1) -> List[FunctionCall]:
        """Function calls that read ``t`` and return a tensor, after event ``after``."""
        return [f for f in self.functions if f.seq > after and f.outputs
                and any(x is t for x in f.inputs)]

    def enclosing(self, call: ModuleCall) -> Iterable[ModuleCall]:
        """The module calls around ``call``, innermost first."""
        parent = call.parent
        while parent is not None:
            yield self.calls[parent]
            parent = self.calls[parent].parent

    def num_calls(self, module: nn.Module) -> int:
        """How many times ``module`` was called in the traced forward."""
        return sum(1 for c in self.calls if c.module is module)

    # ------------------------------------------------------------------ recording
    def _activation(self, t: Tensor) -> None:
        if id(t) not in self._activations and id(t) not in self._excluded:
            self._activations[id(t)] = t
            self._seen[id(t)] = len(self._seen)

    def _couple(self, tensors: Sequence[Tensor]) -> None:
        by_size: Dict[Size, List[int]] = {}
        for t in tensors:
            size = spatial(t)
            if size is not None and id(t) in self._activations:
                by_size.setdefault(size, []).append(id(t))
        for ids in by_size.values():
            for other in ids[1:]:
                self.union(ids[0], other)

    def record_function(self, func: Callable, args: tuple, kwargs: dict,
                        out: Any) -> None:
        outputs = flat_tensors(out)
        if not outputs:  # metadata queries (x.shape, x.dim(), ...) read, don't produce
            return
        inputs = flat_tensors(args) + flat_tensors(kwargs)
        for t in outputs:
            self._activation(t)
        name = getattr(func, '__name__', str(func))
        self.functions.append(FunctionCall(
            name=name, seq=next(self._counter),
            module_call=self._stack[-1] if self._stack else None,
            inputs=inputs, outputs=outputs, args=args, kwargs=dict(kwargs)))
        if name not in RESIZE_FUNCTIONS:
            self._couple(inputs + outputs)


def _is_meta(t: Any) -> bool:
    return isinstance(t, Tensor) and t.device.type == 'meta'


def _interpolate_on_meta(input: Tensor, *args, **kwargs) -> Tensor:
    """``F.interpolate`` of a meta tensor, shape only. On ``meta`` the upsampling kernels
    run as Python decompositions (8-25 ms a call, most of a small HRNet's trace); the
    same call on a one-channel CPU zero map gives the output size in microseconds, by
    PyTorch's own size rule."""
    proxy = F.interpolate(torch.zeros(1, 1, *input.shape[2:]), *args, **kwargs)
    return input.new_empty((*input.shape[:2], *proxy.shape[2:]))


class _Recorder(TorchFunctionMode):
    """Records every top-level torch function call while the traced model runs."""

    def __init__(self, trace: Trace) -> None:
        super().__init__()
        self.trace = trace

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is F.interpolate and _is_meta(args[0] if args else kwargs.get('input')):
            out = _interpolate_on_meta(*args, **kwargs)
        else:
            out = func(*args, **kwargs)
        if self.trace._active:
            self.trace.record_function(func, args, kwargs, out)
        return out


def _register_hooks(model: nn.Module, trace: Trace) -> list:
    handles = []
    for name, module in model.named_modules():
        def pre(mod, args, kwargs, name=name):
            if mod is model:
                trace._active = True
                for t in flat_tensors(args):
                    trace._activation(t)
            occurrence = len(trace.calls_by_name.get(name, []))
            call = ModuleCall(name=name, module=mod, index=len(trace.calls),
                              occurrence=occurrence,
                              parent=trace._stack[-1] if trace._stack else None,
                              start=next(trace._counter),
                              inputs=flat_tensors(args) + flat_tensors(kwargs))
            trace.calls.append(call)
            trace.calls_by_name.setdefault(name, []).append(call)
            trace._stack.append(call.index)

        def post(mod, args, output, name=name):
            call = trace.calls[trace._stack.pop()]
            call.end = next(trace._counter)
            call.outputs = flat_tensors(output)
            if mod is model:
                trace._active = False
                trace.outputs = call.outputs

        handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
        handles.append(module.register_forward_hook(post))
    return handles


def _run(model: nn.Module, x: Tensor, trace: Trace,
         state: Optional[Dict[str, Tensor]]) -> None:
    trace.input = x
    handles = _register_hooks(model, trace)
    try:
        with torch.no_grad(), _Recorder(trace):
            if state is None:
                model(x)
            else:
                torch.func.functional_call(model, state, (x, ), strict=False)
    finally:
        for handle in handles:
            handle.remove()


def trace_forward(model: nn.Module, input_size: Size, in_channels: int,
                  device: Optional[str] = None) -> Trace:
    """Run ``model`` once on a ``1 x in_channels x H x W`` probe and trace it.

    Args:
        model: the model; called as ``model(x)``.
        input_size: ``(H, W)`` of the probe.
        in_channels: channels of the probe.
        device: ``'meta'`` (shapes only) or None to try meta first and fall back to the
            model's own device with a zero input when an op has no meta kernel.

    Returns:
        Trace: the module and function calls and the levels of the activations.

    Raises:
        RuntimeError: the forward fails on the probe (the message says which input
            was tried and what to pass instead).
    """
    flags = {m: m.training for m in model.modules()}
    model.eval()
    try:
        if device in (None, 'meta'):
            try:
                state = {}
                excluded = set()
                for name, tensor in itertools.chain(
                        model.named_parameters(remove_duplicate=False),
                        model.named_buffers(remove_duplicate=False)):
                    state[name] = torch.empty_like(tensor, device='meta')
                    excluded.add(id(state[name]))
                trace = Trace()
                trace._excluded = excluded
                trace._keep = state  # keep ids unique while the trace lives
                _run(model, torch.zeros(1, in_channels, *input_size, device='meta'),
                     trace, state)
                return trace
            except Exception:  # an op without a meta kernel: trace for real
                if device == 'meta':
                    raise
        param = next(itertools.chain(model.parameters(), model.buffers()), None)
        real_device = param.device if param is not None else torch.device('cpu')
        trace = Trace()
        trace.device = str(real_device)
        trace._excluded = {id(t) for t in itertools.chain(model.parameters(),
                                                          model.buffers())}
        try:
            _run(model, torch.zeros(1, in_channels, *input_size, device=real_device),
                 trace, None)
        except Exception as err:
            raise RuntimeError(
                f'the probe forward model(x) with x of shape (1, {in_channels}, '
                f'{input_size[0]}, {input_size[1]}) failed ({type(err).__name__}: '
                f'{err}); pass probe_size / in_channels that the model accepts, or '
                'convert the submodule that takes one image tensor') from err
        return trace
    finally:
        for module, flag in flags.items():
            module.training = flag


def infer_in_channels(model: nn.Module) -> int:
    """Input channels of the first ``nn.Conv2d`` of ``model`` (the probe's channels).

    Raises:
        ValueError: ``model`` has no ``nn.Conv2d``.
    """
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            return module.in_channels
    raise ValueError('cannot infer the input channels (no nn.Conv2d); pass in_channels')

