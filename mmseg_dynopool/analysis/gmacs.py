"""Layer-wise GMACs of a DynOPool model and the differentiable estimate of Eq. 4.7.

:func:`profile_gmacs` counts every layer's MACs once (with ``mmengine.analysis``, one
multiply-add = one flop) and assigns each layer to the DynOPool that sets the resolution
of its output. :meth:`GMACsProfile.estimate` then gives, for the current scale factors,

    GMACs^t = sum_l (H^t(l) W^t(l)) / (H^0(l) W^0(l)) * GMACs[l]        (Eq. 4.7)

differentiably w.r.t. every alpha through the straight-through sizes (Eq. 4.3).

Sizes are chained: a DynOPool whose input comes from another DynOPool's resolution
(HRNet's stream 2 pool takes stream 1's size) uses that pool's straight-through size as
its input size, so an upstream alpha also pays for the cost it causes downstream. The
forward value equals the sizes the network really produces for the profiled input size.
Layers whose resolution no DynOPool sets (e.g. before the first one) count as constant.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.analysis import FlopAnalyzer
from torch import Tensor, nn

from ..ops import DynOPool, dynopool_layers


@dataclass
class GMACsProfile:
    """Per-image GMACs of a model at the initial state, grouped by owning DynOPool."""
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

    @property
    def total_gmacs(self) -> float:
        """GMACs at the profiled (initial) state."""
        return self.fixed_gmacs + sum(self.owned_gmacs)

    def sizes(self, pools: Sequence[DynOPool]) -> List[Tuple[Tensor, Tensor]]:
        """Straight-through (h, w) of every pool for the profiled input size."""
        if len(pools) != len(self.pool_names):
            raise ValueError(f'profile has {len(self.pool_names)} DynOPool layers, '
                             f'got {len(pools)}')
        sizes: List[Optional[Tuple[Tensor, Tensor]]] = [None] * len(pools)
        for i in self.pool_order:
            parent = self.pool_parents[i]
            in_size = sizes[parent] if parent is not None else self.pool_in_sizes[i]
            sizes[i] = pools[i].continuous_size(in_size)
        return sizes  # type: ignore[return-value]

    def host_estimate(self, pools: Sequence[DynOPool]) -> float:
        """The forward value of :meth:`estimate` computed on the host from each pool's
        host copy of alpha (``DynOPool.host_output_size``): no device synchronisation
        beyond the one per step the pools already share."""
        if not all(hasattr(p, 'host_output_size') for p in pools):
            return float(self.estimate(pools))
        sizes: List[Optional[Tuple[int, int]]] = [None] * len(pools)
        for i in self.pool_order:
            parent = self.pool_parents[i]
            in_size = sizes[parent] if parent is not None else self.pool_in_sizes[i]
            sizes[i] = pools[i].host_output_size(in_size)
        total = self.fixed_gmacs
        for (h, w), (h0, w0), gmacs in zip(sizes, self.pool_out_sizes, self.owned_gmacs):
            total += (h * w) / float(h0 * w0) * gmacs
        return total

    def estimate(self, pools: Sequence[DynOPool]) -> Tensor:
        """GMACs for the current alphas (Eq. 4.7); differentiable w.r.t. each alpha."""
        sizes = self.sizes(pools)
        total = torch.zeros((), device=pools[0].alpha.device)
        for (h, w), (h0, w0), gmacs in zip(sizes, self.pool_out_sizes, self.owned_gmacs):
            total = total + (h * w) / float(h0 * w0) * gmacs
        return total + self.fixed_gmacs


def _spatial(t) -> Optional[Tuple[int, int]]:
    if isinstance(t, Tensor) and t.dim() == 4:
        return int(t.shape[-2]), int(t.shape[-1])
    return None


@torch.no_grad()
def profile_gmacs(model: nn.Module, input_shape: Tuple[int, int],
                  in_channels: int = 3) -> GMACsProfile:
    """Count the per-image GMACs of ``model`` at ``input_shape`` and group them by pool.

    ``model`` is called as ``model(x)`` (mmseg segmentors and mmpretrain classifiers
    return their tensors that way). It is run in eval mode and restored afterwards; its
    alphas are used as they are (pass a model at its initial state for Eq. 4.7).
    """
    pools = dynopool_layers(model)
    if not pools:
        raise ValueError('profile_gmacs: the model has no DynOPool layer')
    pool_index = {id(m): i for i, (_, m) in enumerate(pools)}
    names = {id(m): n for n, m in model.named_modules()}
    device = next(model.parameters()).device
    x = torch.zeros(1, in_channels, *input_shape, device=device)

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

    handles = []
    for module in model.modules():
        handles.append(module.register_forward_pre_hook(pre_hook))
        handles.append(module.register_forward_hook(post_hook))
    was_training = model.training
    model.eval()
    try:
        model(x)
        for h in handles:
            h.remove()
        handles = []
        analyzer = FlopAnalyzer(model, (x, ))
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        counts = analyzer.by_module()
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)

    uncalled = [pools[i][0] for i in range(len(pools)) if i not in pool_out]
    if uncalled:
        raise ValueError(f'profile_gmacs: DynOPool layers not used in the forward pass: '
                         f'{uncalled}')
    owned = [0.0] * len(pools)
    fixed = 0.0
    layer_owner: Dict[str, Optional[str]] = {}
    layer_gmacs: Dict[str, float] = {}
    children = {n: [f'{n}.{c}' if n else c for c, _ in m.named_children()]
                for n, m in model.named_modules()}
    for name, flops in counts.items():
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
    return GMACsProfile(
        input_shape=tuple(input_shape),
        pool_names=[n for n, _ in pools],
        pool_in_sizes=[pool_in[i] for i in range(len(pools))],
        pool_out_sizes=[pool_out[i] for i in range(len(pools))],
        pool_parents=[parents[i] for i in range(len(pools))],
        pool_order=order,
        owned_gmacs=owned,
        fixed_gmacs=fixed,
        layer_owner=layer_owner,
        layer_gmacs=layer_gmacs)


def count_gmacs(model: nn.Module, input_shape: Tuple[int, int],
                in_channels: int = 3) -> float:
    """Per-image GMACs of ``model`` as ``mmengine.analysis`` counts them."""
    device = next(model.parameters()).device
    x = torch.zeros(1, in_channels, *input_shape, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            analyzer = FlopAnalyzer(model, (x, ))
            analyzer.unsupported_ops_warnings(False)
            analyzer.uncalled_modules_warnings(False)
            return analyzer.total() / 1e9
    finally:
        model.train(was_training)


def reset_to_initial_ratios(model: nn.Module) -> None:
    """Set every DynOPool's alpha back to ``1 / init_ratio`` (in place)."""
    with torch.no_grad():
        for _, pool in dynopool_layers(model):
            pool.alpha.copy_(torch.tensor([1.0 / r for r in pool.init_ratio]))
