"""The cost model: GMACs of a model with learnable resizing layers, in one place.

Everything that counts compute goes through this module: the GMACs hook's loss
(Eqs. 4.7-4.8), the report and plot tools (``analysis/``) and the freeze tool
(``deploy/``). It holds

* the probe forward (:func:`probe`): one ``1 x C x H x W`` zeros input, eval mode,
  ``no_grad``, the model's train/eval mode restored afterwards;
* the ``mmengine.analysis.FlopAnalyzer`` set-up (:func:`flop_count`; one multiply-add =
  one flop, its warnings off);
* **one rule for a resizing layer's own cost**: its ``count_macs`` method
  (:class:`~mmseg_dynopool.layers.ResizingLayer`; DynOPool: 4 MACs per bilinear sample,
  4 samples per output cell, as mmengine counts a bilinear resize), applied to each
  recorded call by :func:`resize_call_gmacs`. FlopAnalyzer does not see all of these
  ops (DynOPool's
  ``'max'`` sampling is a custom autograd function, DiffStride's FFT is unsupported), so
  whatever it attributes to a resizing layer is dropped and the rule is used instead -
  in :func:`profile_gmacs` (so the Eq. 4.7 estimate includes the layers' own cost) and
  in ``analysis.report.model_report`` alike;
* :class:`GMACsProfile` / :func:`profile_gmacs` (Eq. 4.7), :func:`count_gmacs` (what
  FlopAnalyzer alone counts, e.g. for a human-designed model) and
  :func:`reset_to_initial_ratios`.

Eq. 4.7: :meth:`GMACsProfile.estimate` gives, for the current parameters,

    GMACs^t = sum_l (H^t(l) W^t(l)) / (H^0(l) W^0(l)) * GMACs[l]        (Eq. 4.7)

differentiably through each layer's straight-through ``continuous_size``. Every layer is
owned by the resizing layer that sets the resolution of its output; a resizing layer
owns its own cost too (its output is at its resolution). For DynOPool the own cost is
exactly proportional to its output area; for ShapeAdaptor and DiffStride (whose cost
also depends on the input size) the scaling is an approximation away from the profiled
state.

Sizes are chained: a layer whose input comes from another layer's resolution (HRNet's
stream 2 pool takes stream 1's size) uses that layer's straight-through size as its
input size, so an upstream parameter also pays for the cost it causes downstream. Layers
whose resolution no resizing layer sets (e.g. before the first one) count as constant.
"""
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ..layers import ResizingLayer, resizing_layers
from ..utils.pairs import Size
#: One call of a resizing layer: ``(channels, input (h, w), output (h, w))``.
Call = Tuple[int, Size, Size]


# ------------------------------------------------------------------ probe + counting
def call_model(model: nn.Module, x: Tensor):
    """The tensor forward (mm models take ``mode='tensor'``, plain modules just ``x``)."""
    from mmengine.model import BaseModel
    if isinstance(model, BaseModel):
        return model(x, mode='tensor')
    return model(x)


@contextmanager
def probe(model: nn.Module, input_shape: Sequence[int], in_channels: int = 3
          ) -> Iterator[Tensor]:
    """Context giving the probe input: ``zeros(1, in_channels, H, W)`` on the model's
    device, with the model in eval mode and gradients off; the model's mode is restored
    on exit."""
    if len(input_shape) != 2 or min(input_shape) < 1:
        raise ValueError(f'input_shape must be (H, W) with positive sizes, got '
                         f'{input_shape!r}')
    device = next(model.parameters()).device
    x = torch.zeros(1, in_channels, *input_shape, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield x
    finally:
        model.train(was_training)


def flop_count(model: nn.Module, x: Tensor) -> Tuple[float, Dict[str, int]]:
    """Total and per-module flops (= MACs) of ``model(x)`` as ``mmengine.analysis``
    counts them (warnings off). Call it inside :func:`probe`."""
    from mmengine.analysis import FlopAnalyzer
    analyzer = FlopAnalyzer(model, (x, ))
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    return float(analyzer.total()), dict(analyzer.by_module())


def _spatial(t) -> Optional[Size]:
    if isinstance(t, Tensor) and t.dim() == 4:
        return int(t.shape[-2]), int(t.shape[-1])
    return None


def probe_and_count(model: nn.Module, input_shape: Sequence[int], in_channels: int = 3,
                    install: Optional[Callable[[], list]] = None
                    ) -> Tuple[Dict[int, List[Call]], float, Dict[str, int]]:
    """The probe forward once with forward hooks, then FlopAnalyzer once.

    Records every call of every resizing layer (:func:`~mmseg_dynopool.resizing_layers`)
    as ``{id(layer): [(channels, in_size, out_size), ...]}``; ``install`` may register
    extra hooks for the probe forward (it returns their handles). Returns
    ``(calls, total_flops, flops_by_module)``.
    """
    layers = resizing_layers(model)
    calls: Dict[int, List[Call]] = {id(m): [] for _, m in layers}

    def record(module, args, out):
        calls[id(module)].append((int(args[0].shape[1]), _spatial(args[0]),
                                  _spatial(out)))

    with probe(model, input_shape, in_channels) as x:
        handles = [m.register_forward_hook(record) for _, m in layers]
        try:
            handles += install() if install is not None else []
            call_model(model, x)
        finally:
            for h in handles:
                h.remove()
        total, by_module = flop_count(model, x)
    return calls, total, by_module


# ------------------------------------------------------------- a resizing layer's cost
def resize_call_gmacs(layer: ResizingLayer, channels: int, in_size: Sequence[int],
                      out_size: Sequence[int]) -> float:
    """GMACs of one recorded call of a resizing layer on one image: the layer's own
    rule, ``layer.count_macs((1, C, H, W)) / 1e9`` at its current parameter (which
    gives ``out_size`` for ``in_size`` right after the recorded forward)."""
    if not isinstance(layer, ResizingLayer):
        raise TypeError(f'{type(layer).__name__} is not a ResizingLayer: it has no cost '
                        'rule (count_macs)')
    return layer.count_macs((1, int(channels), int(in_size[0]), int(in_size[1]))) / 1e9


def dynopool_call_gmacs(channels: int, out_size: Sequence[int]) -> float:
    """Deprecated: :meth:`DynOPool.count_macs` is the rule (``4 C (2h) (2w)`` MACs)."""
    h, w = out_size
    return 4.0 * channels * (2 * h) * (2 * w) / 1e9


def calls_gmacs(layer: ResizingLayer, calls: Sequence[Call]) -> float:
    """GMACs of all recorded ``calls`` of ``layer`` (see :func:`resize_call_gmacs`)."""
    return sum(resize_call_gmacs(layer, c, i, o) for c, i, o in calls)


# ---------------------------------------------------------------------- Eq. 4.7
def _device(layer: nn.Module) -> torch.device:
    for p in layer.parameters():
        return p.device
    for b in layer.buffers():
        return b.device
    return torch.device('cpu')


@dataclass
class GMACsProfile:
    """Per-image GMACs of a model at the initial state, grouped by owning resizing
    layer (``owned_gmacs`` includes each layer's own cost, ``pool_gmacs``)."""
    input_shape: Tuple[int, int]
    pool_names: List[str]
    pool_in_sizes: List[Tuple[int, int]]
    pool_out_sizes: List[Tuple[int, int]]
    pool_parents: List[Optional[int]]
    pool_order: List[int]
    owned_gmacs: List[float]
    fixed_gmacs: float
    layer_owner: Dict[str, Optional[str]] = field(default_factory=dict)
    layer_gmacs: Dict[str, float] = field(default_factory=dict)
    pool_gmacs: List[float] = field(default_factory=list)

    @property
    def total_gmacs(self) -> float:
        """GMACs at the profiled (initial) state."""
        return self.fixed_gmacs + sum(self.owned_gmacs)

    @property
    def initial_cost(self) -> float:
        """The cost at the initial ratios (the budget controller's name for
        :attr:`total_gmacs`)."""
        return self.total_gmacs

    def host_sizes(self, pools: Sequence[nn.Module]) -> List[Tuple[int, int]]:
        """Integer (h, w) of every layer for the profiled input size, on the host."""
        return self._host_sizes(pools)

    def cost_of_sizes(self, sizes: Sequence[Tuple[int, int]]) -> float:
        """GMACs (Eq. 4.7) for the layers' integer output ``sizes``, without a forward."""
        total = self.fixed_gmacs
        for (h, w), (h0, w0), gmacs in zip(sizes, self.pool_out_sizes, self.owned_gmacs):
            total += (h * w) / float(h0 * w0) * gmacs
        return total

    def sizes(self, pools: Sequence[nn.Module]) -> List[Tuple[Tensor, Tensor]]:
        """Straight-through (h, w) of every layer for the profiled input size."""
        if len(pools) != len(self.pool_names):
            raise ValueError(f'profile has {len(self.pool_names)} resizing layers, '
                             f'got {len(pools)}')
        # The integer sizes from the layers' host copies, so a layer fed by another's
        # straight-through size does not read it back from the device.
        host = self._host_sizes(pools)
        sizes: List[Optional[Tuple[Tensor, Tensor]]] = [None] * len(pools)
        for i in self.pool_order:
            parent = self.pool_parents[i]
            in_size = sizes[parent] if parent is not None else self.pool_in_sizes[i]
            in_values = host[parent] if parent is not None else self.pool_in_sizes[i]
            sizes[i] = pools[i].continuous_size(in_size, in_values=in_values)
        return sizes  # type: ignore[return-value]

    def _host_sizes(self, pools: Sequence[nn.Module]) -> List[Tuple[int, int]]:
        """Integer (h, w) of every layer for the profiled input size, on the host."""
        sizes: List[Optional[Tuple[int, int]]] = [None] * len(pools)
        for i in self.pool_order:
            parent = self.pool_parents[i]
            in_size = sizes[parent] if parent is not None else self.pool_in_sizes[i]
            sizes[i] = pools[i].host_output_size(in_size)
        return sizes  # type: ignore[return-value]

    def host_estimate(self, pools: Sequence[nn.Module]) -> float:
        """The forward value of :meth:`estimate` computed on the host from each layer's
        host copy of its parameter (``host_output_size`` of DynOPool, ShapeAdaptor and
        DiffStride; ``ops/host_cache.py``): no device synchronisation beyond the one per
        parameter update all layers share."""
        return self.cost_of_sizes(self._host_sizes(pools))

    def estimate(self, pools: Sequence[nn.Module]) -> Tensor:
        """GMACs for the current parameters (Eq. 4.7); differentiable w.r.t. them."""
        sizes = self.sizes(pools)
        total = torch.zeros((), device=_device(pools[0]))
        for (h, w), (h0, w0), gmacs in zip(sizes, self.pool_out_sizes, self.owned_gmacs):
            total = total + (h * w) / float(h0 * w0) * gmacs
        return total + self.fixed_gmacs


def profile_gmacs(model: nn.Module, input_shape: Tuple[int, int],
                  in_channels: int = 3) -> GMACsProfile:
    """Count the per-image GMACs of ``model`` at ``input_shape`` and group them by
    resizing layer (each layer's own cost by :func:`resize_call_gmacs`).

    ``model`` is called with its tensor forward (:func:`call_model`). It is run in eval
    mode and restored afterwards; its parameters are used as they are (pass a model at
    its initial state for Eq. 4.7).
    """
    pools = resizing_layers(model)
    if not pools:
        raise ValueError('profile_gmacs: the model has no learnable resizing layer '
                         '(DynOPool, ShapeAdaptor or DiffStride)')
    pool_index = {id(m): i for i, (_, m) in enumerate(pools)}
    names = {id(m): n for n, m in model.named_modules()}

    latest_by_size: Dict[Tuple[int, int], int] = {}
    pool_in: Dict[int, Tuple[int, int]] = {}
    pool_out: Dict[int, Tuple[int, int]] = {}
    parents: Dict[int, Optional[int]] = {}
    order: List[int] = []
    owner_of: Dict[str, Optional[int]] = {}

    def pre_hook(module, args):
        i = pool_index.get(id(module))
        if i is not None and i not in pool_in:
            size = _spatial(args[0])
            pool_in[i] = size
            parents[i] = latest_by_size.get(size)

    def post_hook(module, args, output):
        i = pool_index.get(id(module))
        size = _spatial(output)
        if i is not None:
            if i not in pool_out:
                pool_out[i] = size
                order.append(i)
            latest_by_size[size] = i
            return
        name = names.get(id(module))
        if name is not None and name not in owner_of:
            owner_of[name] = latest_by_size.get(size) if size else None

    def install() -> list:
        handles = []
        for module in model.modules():
            handles.append(module.register_forward_pre_hook(pre_hook))
            handles.append(module.register_forward_hook(post_hook))
        return handles

    calls, _, counts = probe_and_count(model, input_shape, in_channels, install)

    uncalled = [pools[i][0] for i in range(len(pools)) if i not in pool_out]
    if uncalled:
        raise ValueError(f'profile_gmacs: resizing layers not used in the forward pass: '
                         f'{uncalled}')
    # A resizing layer's cost is counted by the rule, not by FlopAnalyzer.
    pool_names = [n for n, _ in pools]
    skip = tuple(pool_names)

    def in_pool(name: str) -> bool:
        return any(name == p or name.startswith(p + '.') for p in skip)

    own_cost = [calls_gmacs(m, calls[id(m)]) for _, m in pools]
    owned = list(own_cost)
    fixed = 0.0
    layer_owner: Dict[str, Optional[str]] = {}
    layer_gmacs: Dict[str, float] = {}
    children = {n: [f'{n}.{c}' if n else c for c, _ in m.named_children()]
                for n, m in model.named_modules()}
    for name, flops in counts.items():
        if in_pool(name):
            continue
        own = flops - sum(counts.get(c, 0) for c in children.get(name, []))
        if own <= 0:
            continue
        gmacs = own / 1e9
        owner = owner_of.get(name)
        layer_gmacs[name] = gmacs
        layer_owner[name] = pools[owner][0] if owner is not None else None
        if owner is None:
            fixed += gmacs
        else:
            owned[owner] += gmacs
    for name, cost in zip(pool_names, own_cost):
        layer_gmacs[name] = cost
        layer_owner[name] = name
    return GMACsProfile(
        input_shape=tuple(input_shape),
        pool_names=pool_names,
        pool_in_sizes=[pool_in[i] for i in range(len(pools))],
        pool_out_sizes=[pool_out[i] for i in range(len(pools))],
        pool_parents=[parents[i] for i in range(len(pools))],
        pool_order=order,
        owned_gmacs=owned,
        fixed_gmacs=fixed,
        layer_owner=layer_owner,
        layer_gmacs=layer_gmacs,
        pool_gmacs=own_cost)


def count_gmacs(model: nn.Module, input_shape: Tuple[int, int],
                in_channels: int = 3) -> float:
    """Per-image GMACs of ``model`` as ``mmengine.analysis`` alone counts them (no
    resizing-layer rule: the figure for human-designed models and Table 5.4)."""
    with probe(model, input_shape, in_channels) as x:
        total, _ = flop_count(model, x)
    return total / 1e9


def reset_to_initial_ratios(model: nn.Module) -> None:
    """Set every resizing layer back to its initial ratio (in place), through the
    layer's own ``reset_parameters_to_initial`` (DynOPool: ``alpha = 1 / init_ratio``)."""
    with torch.no_grad():
        for _, layer in resizing_layers(model):
            reset = getattr(layer, 'reset_parameters_to_initial', None)
            if reset is not None:
                reset()
            else:
                layer.alpha.copy_(torch.tensor([1.0 / r for r in layer.init_ratio]))
