"""engine/budget: the budget controller (Eq. 4.8's term, dual ascent on lambda, the lock,
state) and the projection onto the budget, on toy models without a Runner."""
import math

import pytest
import torch
from torch import nn

from mmseg_dynopool.engine.budget import BudgetController, project_to_budget
from mmseg_dynopool.layers import (DynOPool, ShapeAdaptor, ratio_parameter,
                                   resizing_layers)
from mmseg_dynopool.models.cost import profile_gmacs

SHAPE = (64, 64)


class _Scalar:
    """A cost that is a given number: what the dual step sees, nothing else."""

    def __init__(self, initial: float) -> None:
        self.initial_cost = initial


def _chain(*ratios) -> nn.Sequential:
    """conv - DynOPool - conv - DynOPool - conv: the second layer's input size is the
    first one's output size (a chained layer, as HRNet's streams)."""
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), DynOPool(ratios[0]),
                         nn.Conv2d(8, 16, 3, padding=1), DynOPool(ratios[1]),
                         nn.Conv2d(16, 16, 3, padding=1))


def _layers(model):
    return [m for _, m in resizing_layers(model)]


def _controller(model, **kwargs) -> BudgetController:
    return BudgetController(_layers(model), profile_gmacs(model, SHAPE), **kwargs)


def _set_ratios(model, ratios) -> None:
    with torch.no_grad():
        for layer, (r_h, r_w) in zip(_layers(model), ratios):
            layer.alpha.copy_(torch.tensor([1 / r_h, 1 / r_w]))


def _rounding_offsets(model):
    """Per layer and axis, ``in_size * r - n`` from a real forward (0: the middle of the
    ratios that round to ``n``, +-0.5: a rounding tie)."""
    with torch.no_grad():
        model(torch.zeros(1, 3, *SHAPE))
    return [in_n * r - n for layer in _layers(model) for in_n, r, n in
            zip(layer.last_input_size, layer.host_ratio, layer.last_size)]


class _AreaCost:
    """A cost that is not GMACs (as issue 22's latency cost will not be):
    ``c0 + sum_l k_l h_l w_l`` in its own unit, on a GMACs profile's layer graph."""

    def __init__(self, profile, k=(3.0, 20.0), c0=500.0) -> None:
        self.profile, self.k, self.c0 = profile, k, c0
        for name in ('pool_order', 'pool_parents', 'pool_in_sizes'):
            setattr(self, name, getattr(profile, name))
        self.initial_cost = self.cost_of_sizes(profile.pool_out_sizes)

    def cost_of_sizes(self, sizes) -> float:
        return self.c0 + sum(k * h * w for k, (h, w) in zip(self.k, sizes))

    def host_sizes(self, layers):
        return self.profile._host_sizes(layers)

    def host_estimate(self, layers) -> float:
        return self.cost_of_sizes(self.host_sizes(layers))

    def estimate(self, layers) -> torch.Tensor:
        return self.c0 + sum(k * h * w for k, (h, w) in zip(self.k,
                                                            self.profile.sizes(layers)))


# ---------------------------------------------------------------------- options


@pytest.mark.parametrize('kwargs, match', [
    (dict(loss_weight=-1), 'loss_weight'),
    (dict(target_ratio=0), 'target_ratio'),
    (dict(target_ratio=float('nan')), 'target_ratio'),
    (dict(target_ratio='0.8'), 'target_ratio'),
    (dict(target=-2.0), 'target'),
    (dict(target=1.0, target_ratio=0.8), 'not both'),
    (dict(target_ratio=0.8, lambda_lr=0), 'lambda_lr'),
    (dict(target_ratio=0.8, lambda_p=-1), 'lambda_p'),
])
def test_bad_options_name_the_option(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BudgetController(_layers(_chain(0.5, 0.5)), **kwargs)


def test_needs_layers_and_a_cost_before_using_it():
    with pytest.raises(ValueError, match='at least one resizing layer'):
        BudgetController([], target=1.0)
    ctrl = BudgetController(_layers(_chain(0.5, 0.5)), target_ratio=0.8)
    with pytest.raises(RuntimeError, match='no cost model'):
        ctrl.target
    with pytest.raises(RuntimeError, match='no budget'):
        BudgetController(_layers(_chain(0.5, 0.5)), _Scalar(1.0)).target


# ------------------------------------------------------------------ dual ascent


def test_dual_step_follows_the_documented_rule_and_never_goes_negative():
    ctrl = BudgetController(_layers(_chain(0.5, 0.5)), _Scalar(2.0), target_ratio=0.5,
                            lambda_lr=0.1, lambda_p=0.0)  # T = 1
    assert ctrl.target == 1.0 and not ctrl.exceeded
    assert ctrl.step(1.5) == pytest.approx(0.05) and ctrl.exceeded  # mu = 0.1 * 0.5
    assert ctrl.step(1.2) == pytest.approx(0.07)  # mu = 0.05 + 0.1 * 0.2
    assert ctrl.step(0.2) == 0.0  # mu would be 0.07 - 0.08 < 0: projected to 0
    assert ctrl.mu == 0.0
    ctrl.step(0.5)
    assert ctrl.lam == 0.0 and ctrl.exceeded  # the excess is remembered


def test_lambda_rises_over_budget_and_falls_under_it():
    ctrl = BudgetController(_layers(_chain(0.5, 0.5)), _Scalar(1.0), loss_weight=0.2,
                            target_ratio=1.0)
    over = [ctrl.step(1.2) for _ in range(5)]
    assert all(b > a for a, b in zip([0.2] + over, over))
    under = [ctrl.step(0.9) for _ in range(5)]
    assert all(b < a for a, b in zip([over[-1]] + under, under))
    assert under[-1] >= 0


def test_dual_step_starts_from_loss_weight_and_adds_the_proportional_term():
    ctrl = BudgetController(_layers(_chain(0.5, 0.5)), _Scalar(2.0), loss_weight=0.4,
                            target_ratio=0.5, lambda_lr=0.1, lambda_p=1.0)  # mu_0 = 0.4
    ctrl.step(0.9)  # e = -0.1: mu = 0.39, lambda = 0.39 - 0.1
    assert ctrl.mu == pytest.approx(0.39) and ctrl.lam == pytest.approx(0.29)
    assert not ctrl.exceeded
    ctrl.step(0.5)  # e = -0.5: mu = 0.34, lambda = max(0, 0.34 - 0.5) = 0
    assert ctrl.mu == pytest.approx(0.34) and ctrl.lam == 0.0


def test_an_absolute_target_ignores_the_initial_cost():
    ctrl = BudgetController(_layers(_chain(0.5, 0.5)), _Scalar(2.0), target=1.5,
                            lambda_lr=0.1, lambda_p=0.0)
    assert ctrl.target == 1.5
    ctrl.step(3.0)  # 100 % over T = 1.5: mu = 0.1, lambda = mu / T
    assert ctrl.lam == pytest.approx(0.1 / 1.5)


def test_sync_makes_every_process_use_the_first_ones_values():
    seen = []

    def from_rank0(state):  # as a broadcast from a rank that saw another cost
        seen.append(state.clone())
        state.copy_(torch.tensor([0.3, 0.5], dtype=torch.float64))

    ctrl = BudgetController(_layers(_chain(0.5, 0.5)), _Scalar(1.0), target_ratio=1.0,
                            lambda_lr=0.1, lambda_p=1.0, sync=from_rank0)
    ctrl.step(0.5)  # this process is under budget ...
    assert seen[0].tolist() == pytest.approx([0.0, -0.5])
    # ... but takes the broadcast values: mu = 0.3, e = +0.5
    assert ctrl.mu == 0.3 and ctrl.lam == pytest.approx(0.8) and ctrl.exceeded


def test_fixed_lambda_never_moves_and_has_no_target():
    ctrl = _controller(_chain(0.5, 0.5), loss_weight=0.3)
    assert not ctrl.budget_mode and ctrl.lam == 0.3
    with pytest.raises(RuntimeError, match='no budget'):
        ctrl.step(1.0)


# ------------------------------------------------------------------ the loss term


def test_loss_is_lambda_times_the_cost_with_a_gradient_to_every_layer():
    model = _chain(0.5, 0.6)
    ctrl = _controller(model, loss_weight=0.5)
    loss = ctrl.loss()
    assert float(loss) == pytest.approx(0.5 * ctrl.current_cost(), rel=1e-6)
    assert ctrl.host_cost() == pytest.approx(ctrl.current_cost(), rel=1e-6)
    loss.backward()
    for layer in _layers(model):
        grad = layer.alpha.grad
        # a larger alpha (1 / r) gives smaller maps, a lower cost: descent shrinks them
        assert grad is not None and (grad < 0).all()
    assert _controller(model, loss_weight=0.0).loss() is None


# ------------------------------------------------------------------ projection


@pytest.mark.parametrize('ratio', [0.5, 0.6, 0.7, 0.84])
@pytest.mark.parametrize('start', [[(0.6, 0.45), (0.55, 0.7)], [(0.3, 0.35), (0.4, 0.3)]])
def test_projection_lands_within_1_percent_below_the_budget_off_ties(ratio, start):
    model = _chain(0.5, 0.5)
    ctrl = _controller(model, target_ratio=ratio)
    _set_ratios(model, start)
    before = ctrl.current_cost()
    after = ctrl.project()
    assert abs(before / ctrl.target - 1) > 0.02  # the projection had work to do
    assert after == pytest.approx(ctrl.current_cost())
    assert 0.99 * ctrl.target <= after <= ctrl.target
    assert ctrl.host_cost() <= ctrl.target  # the logged value too
    assert ctrl.projection.below == pytest.approx(ctrl.host_cost() / ctrl.target)
    # every ratio in the middle of its size's rounding interval, not near a tie
    assert max(abs(d) for d in _rounding_offsets(model)) < 1e-3


def test_projection_with_another_cost_model():
    """A cost in its own unit (not GMACs), with its own price of a list of sizes: the
    same projection, the same 1 % (issue 22's latency cost plugs in this way)."""
    model = _chain(0.5, 0.5)
    cost = _AreaCost(profile_gmacs(model, SHAPE))
    ctrl = BudgetController(_layers(model), cost, target_ratio=0.6)
    assert ctrl.target == pytest.approx(0.6 * (500 + 3 * 32 * 32 + 20 * 16 * 16))
    _set_ratios(model, [(0.7, 0.7), (0.6, 0.6)])
    assert ctrl.host_cost() > ctrl.target
    after = ctrl.project()
    assert 0.99 * ctrl.target <= after <= ctrl.target
    assert after == pytest.approx(cost.cost_of_sizes(cost.host_sizes(_layers(model))))


def test_projection_of_layers_without_exact_sizes_stays_within_the_budget():
    """ShapeAdaptor: one scale for both axes, no exact sizes: the generic path (common
    factor, then per layer and axis), each parameter moved off its rounding boundary."""
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), ShapeAdaptor(0.9),
                          nn.Conv2d(8, 8, 3, padding=1))
    layers = _layers(model)
    ctrl = BudgetController(layers, profile_gmacs(model, SHAPE), target_ratio=0.7)
    assert ctrl.host_cost() > ctrl.target
    after = ctrl.project()
    assert after <= ctrl.target * (1 + 1e-9)
    sizes = ctrl.cost._host_sizes(layers)
    param = ratio_parameter(layers[0]).detach().clone()
    for nudge in (0.999, 1.001):  # no size changes either way: off the boundary
        layers[0].scale_ratio(param, torch.full((2, ), nudge, dtype=torch.float64))
        assert ctrl.cost._host_sizes(layers) == sizes
    # one more row and column of output (a bigger scale) would break the budget
    layers[0].scale_ratio(param, torch.full((2, ), 1.2, dtype=torch.float64))
    assert ctrl.current_cost() > ctrl.target


def test_projection_says_how_close_integer_sizes_come_when_1_percent_is_impossible():
    """One layer on an 8x8 input: every cost is proportional to h * w (16 at the start).
    A budget of 0.8 x initial is 12.8 cells: no product of sizes >= 2 lies in
    [0.99 * 12.8, 12.8], so the best is 12 (3x4 or 4x3) and the report says so."""
    model = nn.Sequential(DynOPool(init_ratio=0.5), nn.Conv2d(3, 4, 3, padding=1))
    products = {h * w for h in range(2, 33) for w in range(2, 33)}
    assert not [p for p in products if 0.99 <= p / 12.8 <= 1.0]
    ctrl = BudgetController(_layers(model), profile_gmacs(model, (8, 8)),
                            target_ratio=0.8)
    ctrl.exceeded = True
    report = ctrl.lock()
    with torch.no_grad():
        model(torch.zeros(1, 3, 8, 8))
    h, w = model[0].last_size
    assert h * w == 12
    assert report.after == pytest.approx(12 / 16 * ctrl.cost.total_gmacs, rel=1e-6)
    below, above = report.projection.below, report.projection.above
    assert below == pytest.approx(12 / 12.8) and above is not None and above > 1.0
    text = report.shortfall('GMACs')
    assert 'not met within 1 %' in text and f'{below:.4f}x' in text
    assert f'{above:.4f}x' in text


def test_project_to_budget_reports_an_unreachable_budget():
    model = _chain(0.5, 0.5)
    profile = profile_gmacs(model, SHAPE)
    result = project_to_budget(_layers(model), profile, 1e-3 * profile.total_gmacs)
    assert result.cost > 1e-3 * profile.total_gmacs  # the smallest sizes cost more
    assert profile._host_sizes(_layers(model)) == [(2, 2), (2, 2)]


# ---------------------------------------------------------------------- lock


def test_lock_projects_a_binding_budget_and_holds_the_parameters():
    model = _chain(0.6, 0.6)
    ctrl = _controller(model, loss_weight=1.0, target_ratio=0.8)
    assert ctrl.current_cost() > ctrl.target
    report = ctrl.lock()
    assert report.projection is not None and report.before > ctrl.target
    assert 0.99 * ctrl.target <= report.after <= ctrl.target
    assert report.shortfall() is None
    assert ctrl.loss() is None  # no cost term once locked
    locked = [a.clone() for a in ctrl.locked]
    with torch.no_grad():
        for layer in _layers(model):
            layer.alpha.add_(0.3)  # an optimizer step
    ctrl.restore_locked()
    assert all(torch.equal(layer.alpha, a) for layer, a in zip(_layers(model), locked))


def test_lock_leaves_a_model_that_never_exceeded_the_budget_alone():
    model = _chain(0.5, 0.5)
    ctrl = _controller(model, target_ratio=1.0)
    _set_ratios(model, [(0.45, 0.4), (0.45, 0.5)])  # below the initial cost
    ctrl.step(ctrl.host_cost())
    assert not ctrl.exceeded
    before = [layer.alpha.detach().clone() for layer in _layers(model)]
    report = ctrl.lock()
    assert report.projection is None and report.after == report.before < ctrl.target
    assert all(torch.equal(a, b) for a, b in zip(before, ctrl.locked))
    # The same model after one step over the budget: the budget binds, it is moved up.
    ctrl = BudgetController(_layers(model), ctrl.cost, target_ratio=1.0)
    ctrl.step(1.01 * ctrl.target)
    report = ctrl.lock()
    assert report.projection is not None and report.after > report.before
    assert report.after <= ctrl.target


# ---------------------------------------------------------------------- state


def test_state_dict_round_trip_continues_the_same_lambda_sequence():
    model = _chain(0.6, 0.6)
    ctrl = _controller(model, loss_weight=0.1, target_ratio=0.8, lambda_lr=0.5)
    costs = [1.3, 1.1, 0.9, 0.95, 1.02]
    for c in costs[:2]:
        ctrl.step(c * ctrl.target)
    state = ctrl.state_dict()
    assert state['locked'] is None and state['exceeded'] and state['lam'] > 0
    other = _controller(_chain(0.6, 0.6), target_ratio=0.8, lambda_lr=0.5)
    other.load_state_dict(state)
    assert (other.lam, other.mu, other.exceeded) == (ctrl.lam, ctrl.mu, ctrl.exceeded)
    for c in costs[2:]:
        assert other.step(c * other.target) == ctrl.step(c * ctrl.target)


def test_state_dict_round_trip_of_a_locked_controller_puts_the_ratios_back():
    model = _chain(0.6, 0.6)
    ctrl = _controller(model, target_ratio=0.8)
    ctrl.step(ctrl.host_cost())
    ctrl.lock()
    state = ctrl.state_dict()
    assert all(a.device.type == 'cpu' for a in state['locked'])
    fresh = _chain(0.6, 0.6)
    other = _controller(fresh, target_ratio=0.8)
    other.load_state_dict(state)
    assert all(torch.equal(a.alpha, b.alpha) for a, b in zip(_layers(fresh),
                                                             _layers(model)))
    assert other.loss() is None and other.current_cost() == ctrl.current_cost()


def test_load_state_dict_reads_the_old_frozen_key_and_checks_the_layer_count():
    model = _chain(0.6, 0.6)
    ctrl = _controller(model, target_ratio=0.8)
    values = [torch.tensor([2.5, 3.0]), torch.tensor([2.0, 2.2])]
    ctrl.load_state_dict(dict(lam=0.25, mu=0.1, exceeded=True, frozen=values))
    assert ctrl.lam == 0.25 and ctrl.exceeded
    assert all(torch.equal(layer.alpha.detach(), v)
               for layer, v in zip(_layers(model), values))
    with pytest.raises(ValueError, match='locked 1 resizing layers, the model has 2'):
        ctrl.load_state_dict(dict(lam=0.0, locked=values[:1]))
    assert math.isclose(ctrl.lam, 0.25)  # a rejected state changes nothing
