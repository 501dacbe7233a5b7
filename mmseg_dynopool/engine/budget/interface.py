"""What the budget controller needs from a cost model and from the resizing layers.

**The cost** (:class:`BudgetCost`; today
:class:`~mmseg_dynopool.models.cost.GMACsProfile`, Eq. 4.7; issue 22's latency cost is
meant to plug in here):

* ``estimate(layers) -> Tensor``: the cost at the layers' current parameters,
  differentiable w.r.t. them (the term of Eq. 4.8 is ``lambda * estimate``);
* ``host_estimate(layers) -> float``: the same value computed on the host from the
  layers' host sizes (no device synchronisation; what is logged and what the dual step
  reads);
* ``initial_cost``: the cost at the initial ratios, for budgets given as a fraction of
  it;
* ``host_sizes(layers)``: every layer's integer output size at the profiled input size
  (for the projection);
* for the projection's integer-size refinement: the layer graph - ``pool_order``
  (parents first), ``pool_parents`` (index of the layer whose output size is a layer's
  input size, or None), ``pool_in_sizes`` (input sizes of the layers without a parent)
  - and ``cost_of_sizes(sizes) -> float``, the cost of a list of integer output sizes
  without a forward.

``GMACsProfile`` and ``models.latency.LatencyProfile`` implement all of it.

**The layers** (:class:`~mmseg_dynopool.layers.ResizingLayer`): ``ratio_parameter()``,
``scale_ratio(start, factor)``, ``host_output_size``, ``host_ratio``, ``last_size``,
``bounds_repr()``; for the refinement ``exact_sizes``,
``set_output_size(in_size, out_size)`` and ``output_size_bounds(in_lo, in_hi)``.
"""
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
    """The cost at the initial ratios (``cost.initial_cost``)."""
    value = getattr(cost, 'initial_cost', None)
    if value is None:
        raise TypeError(f'{type(cost).__name__} has no initial_cost, which a budget given '
                        'by target_ratio needs')
    return float(value)


def checked_cost(cost: BudgetCost, layers: Sequence[nn.Module]) -> float:
    """The cost as the budget check uses it: the larger of the host value (float64, the
    logged one) and the device value, so that both are within the budget when this is."""
    with torch.no_grad():
        return max(cost.host_estimate(layers), float(cost.estimate(layers)))


def host_sizes(cost: BudgetCost, layers: Sequence[nn.Module]) -> List[Size]:
    """Every layer's integer output size at the cost's input size, on the host."""
    return cost.host_sizes(layers)


def has_size_graph(cost: BudgetCost) -> bool:
    """Whether the cost offers what the integer-size refinement needs."""
    return all(hasattr(cost, name) for name in ('pool_order', 'pool_parents',
                                                 'pool_in_sizes', 'cost_of_sizes'))


def cost_of_sizes(cost: BudgetCost) -> Callable[[Sequence[Size]], float]:
    """The cost as a function of the layers' integer output sizes (no forward)."""
    return cost.cost_of_sizes


# -------------------------------------------------------------------- the layers
def exact_sizes(layer: nn.Module) -> bool:
    """Whether ``layer.set_output_size`` can give it any integer size per axis."""
    return bool(layer.exact_sizes)


def output_size_bounds(layer: nn.Module, in_lo: int, in_hi: int) -> Size:
    """The integer output sizes (one axis) the layer can produce for every input size
    in ``[in_lo, in_hi]`` (``layer.output_size_bounds``)."""
    return layer.output_size_bounds(in_lo, in_hi)


def bounds_repr(layer: nn.Module) -> Optional[str]:
    """The layer's allowed range for the log (``layer.bounds_repr()``), or None."""
    return layer.bounds_repr() or None
