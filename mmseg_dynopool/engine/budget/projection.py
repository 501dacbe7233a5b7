"""Projection of the resizing layers' ratios onto a cost budget ``C <= T``
(docs/budget.md, step 2 of the rule): what the budget controller does when it locks
the ratios.

:func:`project_to_budget` works for any layers and any cost of :mod:`.interface`; with
layers that set exact integer sizes (DynOPool) and a cost that prices a list of sizes
(the GMACs profile, Eq. 4.7) it also searches the integer sizes around the common
scale, which brings the cost within 1 % of the budget where the sizes allow it.
"""
import itertools
import math
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from ...layers import ratio_parameter, scale_ratio
from .interface import (BudgetCost, Size, checked_cost, cost_of_sizes, exact_sizes,
                        has_size_graph, host_sizes, output_size_bounds)


@dataclass
class Projection:
    """What :func:`project_to_budget` reached.

    Attributes:
        cost (float): the estimate after the projection (device value).
        below (float): the chosen sizes' cost / ``T`` (at most 1 where reachable).
        above (float, optional): the cheapest cost / ``T`` the search saw above the
            budget; None if it saw none.
    """
    cost: float
    below: float
    above: Optional[float]


@torch.no_grad()
def project_to_budget(layers: Sequence[nn.Module], cost: BudgetCost,
                      target: float) -> Projection:
    """Set the layers' parameters so that ``cost <= target``, as close to it as the
    integer sizes allow, with no parameter on a rounding boundary.

    1. One common factor ``s`` on every ratio (both axes of every layer, clamped to each
       layer's allowed range): bisection for the largest ``s`` whose estimate (integer
       sizes) is within the budget. Its sizes are the starting point.
    2. The rounding of step 1 can leave a gap of several percent (one more row of the
       largest map may cost more than the gap). Layers with exact sizes and a cost with
       a size graph (DynOPool, GMACs): :func:`_refine_integer_sizes`. Otherwise: for each
       layer and axis in turn, the largest extra factor that keeps ``cost <= T``.
    3. No rounding ties: exact-size layers get ``r = n / in_size`` (the middle of the
       ratios that round to ``n``); the others' parameters are moved to the middle of
       the interval that keeps their sizes (:func:`_center_factors`).
    """
    layers = list(layers)
    start = [ratio_parameter(p).detach().clone() for p in layers]
    # One factor per axis of every layer's ratio (a layer with one scale for both axes
    # takes their geometric mean; see ResizingLayer.scale_ratio).
    factors = [torch.ones(2, dtype=a.dtype, device=a.device) for a in start]
    above = [math.inf]  # cheapest estimate seen above the budget

    def apply() -> float:
        for layer, param, factor in zip(layers, start, factors):
            scale_ratio(layer, param, factor)
        value = checked_cost(cost, layers)
        if value > target:
            above[0] = min(above[0], value)
        return value

    def largest(setter: Callable[[float], None], lo: float, hi: float) -> float:
        """Largest value in [lo, hi) with cost <= T (lo must be feasible)."""
        for _ in range(50):
            mid = math.sqrt(lo * hi)
            setter(mid)
            if apply() <= target:
                lo = mid
            else:
                hi = mid
        setter(lo)
        return lo

    def set_all(value: float) -> None:
        for f in factors:
            f.fill_(value)

    hi = 1.0
    set_all(hi)
    while apply() <= target and hi < 64:
        hi *= 2
        set_all(hi)
    common = largest(set_all, 1e-3, hi)
    apply()
    if has_size_graph(cost) and all(exact_sizes(p) for p in layers):
        below, nearest_above = _refine_integer_sizes(layers, cost, target)
        above[0] = min(above[0], nearest_above)
    else:
        for i in range(len(factors)):
            for axis in range(2):
                def set_one(value: float, i: int = i, axis: int = axis) -> None:
                    factors[i][axis] = common * value
                largest(set_one, 1.0, 4.0)
        below = apply()
        _center_factors(layers, cost, start, factors)
    return Projection(float(cost.estimate(layers)), below / target,
                      above[0] / target if math.isfinite(above[0]) else None)


def _set_sizes(layers: Sequence[nn.Module], cost: BudgetCost,
               plan: Sequence[Sequence[int]]) -> None:
    """Give every layer its planned integer size (``set_output_size``), parents first:
    a layer fed by another takes that layer's planned size as its input size."""
    for i in cost.pool_order:
        parent = cost.pool_parents[i]
        in_size = plan[parent] if parent is not None else cost.pool_in_sizes[i]
        layers[i].set_output_size(tuple(in_size), tuple(plan[i]))


def _refine_integer_sizes(layers: Sequence[nn.Module], cost: BudgetCost,
                          target: float) -> Tuple[float, float]:
    """Steps 2-3 of :func:`project_to_budget` for layers with exact sizes.

    Searches the integer sizes within one row / column of step 1's on every axis of
    every layer, for the sizes within 1 % of the budget (``0.99 T <= C <= T``) that
    change fewest rows and columns (then: the larger ``C``); if none is within 1 %, the
    largest ``C <= T``. With every ratio set to ``n / in_size`` the sizes are exactly the
    chosen ones, so the cost is a function of the sizes (``cost_of_sizes``) and the
    search needs no forward. Returns ``(C of the chosen sizes, cheapest C above T
    seen)``; leaves the layers set to the chosen sizes.
    """
    sizes = host_sizes(cost, layers)  # step 1's integer sizes
    # Allowed sizes per layer and axis: one row / column either way, within what the
    # layer can produce for any of its input's candidate sizes, so every combination
    # below can be realised.
    bounds: List[List[Size]] = [[] for _ in layers]
    for i in cost.pool_order:
        parent = cost.pool_parents[i]
        for axis in range(2):
            if parent is None:
                in_lo = in_hi = cost.pool_in_sizes[i][axis]
            else:
                in_lo, in_hi = bounds[parent][axis]
            n = sizes[i][axis]
            lo, hi = output_size_bounds(layers[i], in_lo, in_hi)
            lo, hi = max(n - 1, lo), min(n + 1, hi)
            bounds[i].append((min(lo, n), max(hi, n)))
    price = cost_of_sizes(cost)

    # Every combination of -1 / 0 / +1 on the 2L axes, fewest changes first; above
    # ~2e5 combinations only up to the number of changes that stays below that.
    axes = [(i, a) for i in range(len(layers)) for a in range(2)]
    steps: List[Tuple[Tuple[int, int], ...]] = []
    for changes in range(len(axes) + 1):
        count = math.comb(len(axes), changes) * 2 ** changes
        if steps and len(steps) + count > 200_000:
            break
        for chosen in itertools.combinations(range(len(axes)), changes):
            for signs in itertools.product((-1, 1), repeat=changes):
                steps.append(tuple(zip(chosen, signs)))
    band, best, nearest_above = [], [], math.inf
    for step in steps:
        plan = [list(s) for s in sizes]
        valid = True
        for k, sign in step:
            i, a = axes[k]
            plan[i][a] += sign
            lo, hi = bounds[i][a]
            if not lo <= plan[i][a] <= hi:
                valid = False
                break
        if not valid:
            continue
        value = price(plan)
        if value > target:
            nearest_above = min(nearest_above, value)
        elif value >= 0.99 * target:
            band.append((len(step), -value, plan))
        else:
            best.append((-value, len(step), plan))
    # Preferred: within 1 % with the fewest changes; else as close below as allowed.
    candidates = sorted(band, key=lambda t: t[:2]) + sorted(best, key=lambda t: t[:2])
    for entry in candidates[:50]:
        plan = entry[-1]
        _set_sizes(layers, cost, plan)
        if host_sizes(cost, layers) == [tuple(s) for s in plan]:
            value = checked_cost(cost, layers)
            if value <= target:
                return value, nearest_above
    # (not reached for DynOPool's size rule; kept as a safe fallback) step 1's sizes
    _set_sizes(layers, cost, [list(s) for s in sizes])
    return checked_cost(cost, layers), nearest_above


def _center_factors(layers: Sequence[nn.Module], cost: BudgetCost,
                    start: List[Tensor], factors: List[Tensor]) -> None:
    """Move each layer's factor (per axis where the layer has one parameter per axis,
    else both axes together) to the middle of the interval in which no size changes,
    so that no parameter sits on a rounding boundary. Sizes (hence the cost) are
    unchanged. Where the parameter reaches its clamp (allowed range) before any size
    changes, the clamp is that side's end of the interval."""
    sizes = host_sizes(cost, layers)
    for i, layer in enumerate(layers):
        groups = [(0, ), (1, )] if ratio_parameter(layer).numel() == 2 else [(0, 1)]
        for group in groups:
            base = factors[i].clone()

            def at(m: float, group=group, base=base, i=i) -> Tensor:
                for a in group:
                    factors[i][a] = base[a] * m
                scale_ratio(layers[i], start[i], factors[i])
                return ratio_parameter(layers[i]).detach().clone()

            def same(m: float) -> bool:
                at(m)
                return host_sizes(cost, layers) == sizes

            edges = []
            for limit in (64.0, 1 / 64):
                inside, out = 1.0, limit ** (1 / 6)
                while same(out) and abs(math.log(out)) < abs(math.log(limit)):
                    inside, out = out, out * limit ** (1 / 6)
                if not same(out):
                    test = same  # a size changes: bisect for where
                else:
                    # No size changes up to the limit: the parameter is clamped on this
                    # side; bisect for where the clamp starts.
                    clamped = at(limit)
                    if torch.equal(at(1.0), clamped):
                        edges.append(1.0)
                        continue
                    inside, out = 1.0, limit

                    def test(m: float, clamped=clamped) -> bool:
                        return not torch.equal(at(m), clamped)
                for _ in range(50):
                    mid = math.sqrt(inside * out)
                    if test(mid):
                        inside = mid
                    else:
                        out = mid
                edges.append(inside)
            if not same((edges[0] + edges[1]) / 2):  # (monotone size rules)
                same(1.0)
