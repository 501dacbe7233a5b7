"""What the budget controller needs from a cost model and from the resizing layers.

**The cost** (:class:`BudgetCost`; today
:class:`~mmseg_dynopool.models.cost.GMACsProfile`, Eq. 4.7; issue 22's latency cost is
meant to plug in here):

* ``estimate(layers) -> Tensor``: the cost at the layers' current parameters,
  differentiable w.r.t. them (the term of Eq. 4.8 is ``lambda * estimate``);
* ``host_estimate(layers) -> float``: the same value computed on the host from the
  layers' host sizes (no device synchronisation; what is logged and what the dual step
  reads);
* the cost at the initial ratios, for budgets given as a fraction of it:
  ``initial_cost`` (``GMACsProfile`` calls it ``total_gmacs``).

For the projection: ``host_sizes(layers)``, every layer's integer output size at the
profiled input size (``GMACsProfile``: ``_host_sizes``). Optional, for its integer-size
refinement (a cost without them gets the generic projection): the layer graph -
``pool_order`` (parents first), ``pool_parents`` (index of the layer whose output size
is a layer's input size, or None), ``pool_in_sizes`` (input sizes of the layers without
a parent) - and ``cost_of_sizes(sizes) -> float``, the cost of a list of integer output
sizes without a forward (``GMACsProfile`` has no such method: :func:`cost_of_sizes`
builds it from Eq. 4.7 on integer sizes, ``fixed + sum_l c_l h_l w_l``).

**The layers** (:class:`~mmseg_dynopool.layers.ResizingLayer`): ``ratio_parameter()``,
``scale_ratio(start, factor)``, ``host_output_size``, ``host_ratio``, ``last_size``;
for the refinement ``exact_sizes`` and ``set_output_size(in_size, out_size)``, and
``output_size_bounds(in_lo, in_hi)`` (the helper below falls back to the layer's
``min_size`` / ``min_ratio`` / ``max_ratio`` / ``max_size`` without it).
"""
import math
from typing import Callable, List, Optional, Protocol, Sequence, Tuple

import torch
from torch import Tensor, nn

Size = Tuple[int, int]


class BudgetCost(Protocol):
    """A differentiable cost of the resizing layers' sizes (see the module doc)."""

    def estimate(self, layers: Sequence[nn.Module]) -> Tensor:
        """The cost at the current parameters, differentiable w.r.t. them."""

    def host_estimate(self, layers: Sequence[nn.Module]) -> float:
        """The value of :meth:`estimate`, computed on the host."""


# ---------------------------------------------------------------------- the cost
def initial_cost(cost: BudgetCost) -> float:
    """The cost at the initial ratios: ``cost.initial_cost``, else ``total_gmacs``."""
    for name in ('initial_cost', 'total_gmacs'):
        value = getattr(cost, name, None)
        if value is not None:
            return float(value)
    raise TypeError(f'{type(cost).__name__} gives no initial cost (initial_cost or '
                    'total_gmacs), which a budget given by target_ratio needs')


def checked_cost(cost: BudgetCost, layers: Sequence[nn.Module]) -> float:
    """The cost as the budget check uses it: the larger of the host value (float64, the
    logged one) and the device value, so that both are within the budget when this is."""
    with torch.no_grad():
        return max(cost.host_estimate(layers), float(cost.estimate(layers)))


def host_sizes(cost: BudgetCost, layers: Sequence[nn.Module]) -> List[Size]:
    """Every layer's integer output size at the cost's input size, on the host."""
    method = getattr(cost, 'host_sizes', None) or getattr(cost, '_host_sizes')
    return method(layers)


def has_size_graph(cost: BudgetCost) -> bool:
    """Whether the cost offers what the integer-size refinement needs."""
    return all(hasattr(cost, name) for name in ('pool_order', 'pool_parents',
                                                 'pool_in_sizes')) and (
        hasattr(cost, 'cost_of_sizes') or hasattr(cost, 'owned_gmacs'))


def cost_of_sizes(cost: BudgetCost) -> Callable[[Sequence[Size]], float]:
    """A function from the layers' integer output sizes to the cost (no forward): the
    cost's own ``cost_of_sizes``, else Eq. 4.7 on integer sizes from a GMACs profile."""
    method = getattr(cost, 'cost_of_sizes', None)
    if method is not None:
        return method
    fixed = cost.fixed_gmacs
    coef = [g / float(h0 * w0) for g, (h0, w0) in zip(cost.owned_gmacs,
                                                      cost.pool_out_sizes)]

    def gmacs(sizes: Sequence[Size]) -> float:
        total = fixed
        for (h, w), c in zip(sizes, coef):
            total += h * w * c
        return total
    return gmacs


# -------------------------------------------------------------------- the layers
def exact_sizes(layer: nn.Module) -> bool:
    """Whether ``layer.set_output_size`` can give it any integer size per axis."""
    return bool(getattr(layer, 'exact_sizes', False))


def output_size_bounds(layer: nn.Module, in_lo: int, in_hi: int) -> Size:
    """The integer output sizes (one axis) the layer can produce for every input size
    in ``[in_lo, in_hi]``: ``layer.output_size_bounds`` where the layer has it, else
    from its ``min_size`` (rounded half up), ``min_ratio``, ``max_ratio`` and
    ``max_size`` (DynOPool's size rule, Eq. 4.1 with section 5.2.2's bounds)."""
    method = getattr(layer, 'output_size_bounds', None)
    if method is not None:
        return method(in_lo, in_hi)
    lo = max(int(math.floor(layer.min_size + 0.5)), math.ceil(in_hi * layer.min_ratio))
    hi = math.floor(in_lo * layer.max_ratio)
    if layer.max_size is not None:
        hi = min(hi, layer.max_size)
    return lo, hi


def bounds_repr(layer: nn.Module) -> Optional[str]:
    """The layer's allowed range for the log (``layer.bounds_repr()``), or None."""
    method = getattr(layer, 'bounds_repr', None)
    text = method() if method is not None else ''
    return text or None
