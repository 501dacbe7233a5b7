"""The cost term of Eq. 4.8 and the budget controller: lambda by projected dual ascent,
the projection onto the budget and the lock of the ratios (docs/budget.md).

:class:`BudgetController` knows nothing of mmengine's Runner: it takes the resizing
layers and a cost (:mod:`.interface`), so it runs on a toy model. The hook
(``engine/hooks/gmacs_hook.py``) profiles the model, calls it and logs.
"""
import math
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

import torch
from torch import Tensor, nn

from ...layers import ratio_parameter
from .interface import BudgetCost, initial_cost
from .projection import Projection, project_to_budget


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_budget_options(loss_weight: float = 0.0, target_ratio: Optional[float] = None,
                         target: Optional[float] = None, lambda_lr: float = 0.02,
                         lambda_p: float = 0.5, target_name: str = 'target',
                         unit: str = 'cost') -> None:
    """Raise a ``ValueError`` naming the option if one of the controller's options is
    invalid (``target_name`` / ``unit``: how the caller calls the absolute budget)."""
    if not _is_number(loss_weight) or loss_weight < 0:
        raise ValueError(f'loss_weight must be a number >= 0, got {loss_weight!r}')
    if target_ratio is not None and not (_is_number(target_ratio) and target_ratio > 0
                                         and math.isfinite(target_ratio)):
        raise ValueError(f'target_ratio must be a positive number (the {unit} budget as '
                         f'a fraction of the initial {unit}), got {target_ratio!r}')
    if target is not None and not (_is_number(target) and math.isfinite(target)
                                   and target > 0):
        raise ValueError(f'{target_name} must be a positive number (the {unit} budget '
                         f'per image), got {target!r}')
    if target_ratio is not None and target is not None:
        raise ValueError(f'give target_ratio (a fraction of the initial {unit}) or '
                         f'{target_name} (absolute {unit}), not both')
    if not _is_number(lambda_lr) or not lambda_lr > 0:
        raise ValueError(f'lambda_lr must be a number > 0, got {lambda_lr!r}')
    if not _is_number(lambda_p) or lambda_p < 0:
        raise ValueError(f'lambda_p must be a number >= 0, got {lambda_p!r}')


@dataclass
class LockReport:
    """What :meth:`BudgetController.lock` did.

    Attributes:
        before (float): the cost when the lock was called.
        after (float): the cost of the locked ratios.
        target (float): the budget ``T``.
        projection (Projection, optional): the projection's result; None when the budget
            did not bind (the ratios were locked as they were).
    """
    before: float
    after: float
    target: float
    projection: Optional[Projection]

    def shortfall(self, unit: str = 'cost') -> Optional[str]:
        """Why a projection did not end within 1 % below the budget, or None."""
        if self.projection is None:
            return None
        if self.after > self.target * (1 + 1e-6):  # e.g. DiffStride's 2 * ceil(R) + 1
            return (f'the budget of {self.target:.4g} {unit} is not reachable: the '
                    f'smallest sizes the layers allow cost {self.after:.4g} {unit}; the '
                    'model is left there')
        below, above = self.projection.below, self.projection.above
        if below < 0.99:
            return ('the budget is not met within 1 %: the nearest sizes below / above '
                    f'the budget give {below:.4f}x / '
                    + (f'{above:.4f}x' if above is not None else '(none found)')
                    + ' of the target (the projection searched the sizes within one '
                    'row / column of the common scale); the model is left at '
                    f'{below:.4f}x')
        return None


class BudgetController:
    """The cost term of Eq. 4.8, ``lambda * C^t``, and, in budget mode, the lambda that
    holds ``C^t <= T``.

    ``C^t`` is the cost of the layers' current sizes (``cost.estimate``: Eq. 4.7's GMACs
    for the GMACs profile). Fixed lambda (no target): ``lambda = loss_weight`` throughout,
    Eq. 4.8 as the thesis writes it. Budget mode (``target_ratio`` or ``target``): with
    ``T = target_ratio * C^0`` (or ``target``), ``e = C^t / T - 1`` and ``mu = lambda T``
    (the term's value at the budget, in units of the task loss), :meth:`step` applies

        mu <- max(0, mu + lambda_lr * e),   lambda = max(0, mu + lambda_p * e) / T

    (projected dual ascent plus a proportional term): lambda grows while over budget and
    decays to 0, never below, while under. :meth:`lock` ends the search: if the layers are
    over budget or ever were (the budget binds) it projects them onto the budget
    (:func:`~.projection.project_to_budget`), then holds their parameters
    (:attr:`locked`, put back by :meth:`restore_locked` after each optimizer step); no
    loss is added once locked.

    Args:
        layers (Sequence[nn.Module]): the resizing layers (``ResizingLayer``), in the
            order the cost expects them.
        cost (BudgetCost, optional): the cost model (:mod:`.interface`). May be set
            later (:attr:`cost`): the hook profiles the model on the first batch.
        loss_weight (float): lambda (budget mode: lambda's starting value). Default: 0.
        target_ratio (float, optional): budget as a fraction of the initial cost.
        target (float, optional): budget in the cost's unit (not with ``target_ratio``).
        lambda_lr (float): dual step on ``mu`` per iteration and unit of relative excess.
            Default: 0.02.
        lambda_p (float): proportional gain on the relative excess. Default: 0.5.
        sync (callable, optional): called with a float64 tensor ``[mu, e]`` after each
            dual update, to make it identical on every process (e.g. a broadcast from
            rank 0). Default: None (one process).

    Example:
        >>> from mmseg_dynopool.layers import DynOPool, resizing_layers
        >>> from mmseg_dynopool.models.cost import profile_gmacs
        >>> model = nn.Sequential(DynOPool(0.5), nn.Conv2d(3, 8, 3, padding=1))
        >>> layers = [m for _, m in resizing_layers(model)]
        >>> ctrl = BudgetController(layers, profile_gmacs(model, (32, 32)),
        ...                         target_ratio=0.8, lambda_lr=0.1)
        >>> ctrl.step(ctrl.host_cost()) > 0  # 25 % over the budget: lambda rises
        True
        >>> report = ctrl.lock()  # projected onto the budget, then held
        >>> report.after <= ctrl.target
        True
    """

    def __init__(self, layers: Sequence[nn.Module], cost: Optional[BudgetCost] = None,
                 loss_weight: float = 0.0, target_ratio: Optional[float] = None,
                 target: Optional[float] = None, lambda_lr: float = 0.02,
                 lambda_p: float = 0.5,
                 sync: Optional[Callable[[Tensor], None]] = None) -> None:
        check_budget_options(loss_weight, target_ratio, target, lambda_lr, lambda_p)
        self.layers: List[nn.Module] = list(layers)
        if not self.layers:
            raise ValueError('BudgetController needs at least one resizing layer')
        self.cost = cost
        self.loss_weight = float(loss_weight)
        self.target_ratio = None if target_ratio is None else float(target_ratio)
        self._target = None if target is None else float(target)
        self.lambda_lr = float(lambda_lr)
        self.lambda_p = float(lambda_p)
        self.sync = sync
        self.lam = self.loss_weight  # lambda (fixed unless in budget mode)
        self.mu: Optional[float] = None  # dual state, set at the first step
        self.exceeded = False  # C^t was above the budget at some step
        self.locked: Optional[List[Tensor]] = None  # parameters held after lock()
        self.projection: Optional[Projection] = None  # the last projection's result

    # ---------------------------------------------------------------- the budget
    @property
    def budget_mode(self) -> bool:
        """Whether a budget is set (else lambda stays ``loss_weight``)."""
        return self.target_ratio is not None or self._target is not None

    @property
    def target(self) -> float:
        """The budget ``T`` in the cost's unit."""
        if self._target is not None:
            return self._target
        if self.target_ratio is None:
            raise RuntimeError('BudgetController has no budget (fixed lambda mode)')
        return self.target_ratio * initial_cost(self._need_cost())

    def _need_cost(self) -> BudgetCost:
        if self.cost is None:
            raise RuntimeError('BudgetController has no cost model yet (set .cost)')
        return self.cost

    # ------------------------------------------------------------------ the cost
    def loss(self) -> Optional[Tensor]:
        """``lambda * C^t`` (Eq. 4.8's term, differentiable w.r.t. the layers'
        parameters); None when lambda is 0 or the ratios are locked."""
        if self.lam > 0 and self.locked is None:
            return self._need_cost().estimate(self.layers) * self.lam
        return None

    def host_cost(self) -> float:
        """``C^t`` from the layers' host sizes (no device synchronisation)."""
        return self._need_cost().host_estimate(self.layers)

    def current_cost(self) -> float:
        """``C^t`` computed on the parameters' device, without gradient."""
        with torch.no_grad():
            return float(self._need_cost().estimate(self.layers))

    # ---------------------------------------------------------------- dual ascent
    def step(self, cost: float) -> float:
        """One dual update with the observed cost ``C^t`` (see the class doc); returns
        the new lambda."""
        target = self.target
        if self.mu is None:
            self.mu = self.lam * target
        error = cost / target - 1.0
        state = torch.tensor([max(0.0, self.mu + self.lambda_lr * error), error],
                             dtype=torch.float64)
        if self.sync is not None:
            self.sync(state)  # identical on every process
        self.mu = float(state[0])
        self.exceeded = self.exceeded or bool(state[1] > 0)
        self.lam = max(0.0, self.mu + self.lambda_p * float(state[1])) / target
        return self.lam

    # ------------------------------------------------------------- projection, lock
    def project(self) -> float:
        """Project the ratios onto the budget (:func:`~.projection.project_to_budget`);
        returns the cost after it (:attr:`projection` holds the details)."""
        self.projection = project_to_budget(self.layers, self._need_cost(), self.target)
        return self.projection.cost

    def lock(self) -> LockReport:
        """Project onto the budget if it binds (over budget now or at some step), then
        hold the parameters for the rest of training."""
        before, target = self.current_cost(), self.target
        binds = before > target or self.exceeded
        after = self.project() if binds else before
        self.locked = [ratio_parameter(p).detach().clone() for p in self.layers]
        return LockReport(before, after, target, self.projection if binds else None)

    def restore_locked(self) -> None:
        """Put the locked parameters back (undoes an optimizer step, momentum)."""
        if self.locked is None:
            return
        with torch.no_grad():
            for layer, value in zip(self.layers, self.locked):
                ratio_parameter(layer).copy_(value)

    # ---------------------------------------------------------------------- state
    def state_dict(self) -> Dict:
        """``lam``, ``mu``, ``exceeded`` and ``locked`` (CPU tensors or None)."""
        return dict(lam=self.lam, mu=self.mu, exceeded=self.exceeded,
                    locked=None if self.locked is None else
                    [a.detach().cpu().clone() for a in self.locked])

    def load_state_dict(self, state: Dict) -> None:
        """Continue from :meth:`state_dict`'s output (also the older key ``frozen`` for
        ``locked``); locked parameters are put back on the layers at once."""
        locked = state['locked'] if 'locked' in state else state.get('frozen')
        if locked is not None and len(locked) != len(self.layers):
            raise ValueError(f'the saved budget state locked {len(locked)} resizing '
                             f'layers, the model has {len(self.layers)}')
        self.lam = float(state['lam'])
        self.mu = state.get('mu')
        self.exceeded = bool(state.get('exceeded', False))
        self.locked = None if locked is None else [
            a.to(ratio_parameter(p).device).clone() for a, p in zip(locked, self.layers)]
        self.restore_locked()
