"""Hook adding the GMACs loss of Eqs. 4.7-4.8 to a DynOPool model's training loss.

Two modes:

* fixed lambda (``target_ratio=None``, ``target_gmacs=None``): Eq. 4.8 as the thesis writes it,
  ``L = L_task + lambda * GMACs^t``.
* budget (``target_ratio=t`` or ``target_gmacs=T``): the same loss, but lambda is a Lagrange multiplier of the
  constraint ``GMACs^t <= t * GMACs^0`` updated by projected dual ascent after every
  iteration, and the alphas are projected onto the budget once, at ``freeze_after``
  (see :class:`DynOPoolGMACsHook` and docs/budget.md).
"""
import copy
import itertools
import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmengine import dist
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS
from torch import nn

from ...models.cost import GMACsProfile, profile_gmacs, reset_to_initial_ratios
from ...ops import DynOPool, dynopool_layers, ratio_parameter, scale_ratio


@HOOKS.register_module()
class DynOPoolGMACsHook(Hook):
    """Add ``loss_gmacs = loss_weight * GMACs^t`` to every training forward (Eq. 4.8).

    Before the first training iteration the hook counts every layer's GMACs once, with
    ``mmengine.analysis``, on a copy of the model reset to its initial ratios (so a resumed
    run measures the same reference), at the training input size (taken from the first
    batch unless ``input_shape`` is given). On each forward in ``'loss'`` mode it adds the
    differentiable estimate of Eq. 4.7 times ``loss_weight`` to the loss dict, no
    re-profiling. It logs through the message hub, every iteration: ``gmacs`` (current
    estimate) and per DynOPool ``<name>/h``, ``/w``, ``/r_h``, ``/r_w``.

    Works with models wrapped by (MM)DistributedDataParallel and with any model that has
    learnable resizing layers - DynOPool, ShapeAdaptor or DiffStride, found by
    :func:`~mmseg_dynopool.dynopool_layers` (mmseg segmentors, mmpretrain classifiers).
    The estimate and its gradient go through each layer's ``continuous_size``; the cost
    model (``models/cost.py``) counts each layer's own cost by one rule, shared with the
    report. The budget projection and freezing act on each layer's own parameter
    (``alpha``, or DiffStride's ``stride``) through ``ops.resizing.scale_ratio``.

    **Budget mode** (``target_ratio`` or ``target_gmacs`` set): the user sets the cost,
    lambda follows (docs/budget.md). With ``T = target_ratio * GMACs^0`` (the profiled
    initial cost; or ``T = target_gmacs``),
    ``e = GMACs^t / T - 1`` and ``mu = lambda * T`` (the GMACs term's value at the
    budget, in units of the task loss), after every training iteration

        mu <- max(0, mu + lambda_lr * e),   lambda = max(0, mu + lambda_p * e) / T

    (projected dual ascent, optionally with a proportional term): lambda grows while the
    model is over budget and decays to 0, never below, while it is under. After
    iteration ``ceil(freeze_after * max_iters)`` the alphas are projected onto the budget
    and held fixed for the rest of training: if the model is over budget, or was over it
    at any earlier iteration (the budget binds), the sizes are projected onto the budget
    (:meth:`project_to_budget`: a common factor on every ratio, then the integer sizes
    within 1 % of ``T`` where they allow it, every ratio in the middle of its size's
    rounding interval), so it ends at the budget from below; a model that never
    exceeded it is left alone. The values logged at that iteration are the projected
    model's. lambda, mu, the excess flag and the frozen alphas are saved in checkpoints
    and restored on resume (``resume=True``: the lambda sequence continues exactly);
    ``load_from`` without resume starts a new budget run from the checkpoint's alphas
    (lambda from ``loss_weight``, no frozen sizes). mu is broadcast from rank 0 under
    DDP. Logged every iteration: ``gmacs_lambda`` and ``gmacs_to_target``.

    Args:
        loss_weight (float): lambda of Eq. 4.8 (budget mode: lambda's starting value).
            0 logs the estimate without adding a loss.
        input_shape (tuple[int, int], optional): (H, W) to profile at. Default: the
            spatial size of the first training batch after the data preprocessor.
        in_channels (int): input channels of the profiling tensor. Default: 3.
        target_ratio (float, optional): budget as a fraction of the initial GMACs
            (e.g. ``69.39 / 82.55`` for Table 5.4's DP-S). None: fixed lambda.
        lambda_lr (float): step of the dual update of ``mu = lambda * T`` per iteration
            and unit of relative excess. Default: 0.02.
        lambda_p (float): proportional gain on the relative excess. Default: 0.5.
        freeze_after (float): fraction of training after which the alphas are projected
            onto the budget and frozen (budget mode only). Default: 1.0 (at the end).
        target_gmacs (float, optional): budget in absolute GMACs per image at the
            profiled input size, instead of ``target_ratio`` (not both). Useful to hold
            models whose initial costs differ to one cost, e.g. DiffStride, whose layers
            start larger than the strided ops they replace. Default: None.

    Example:
        >>> custom_hooks = [dict(type='DynOPoolGMACsHook', target_ratio=0.84,
        ...                      lambda_lr=0.02, freeze_after=0.9)]
        >>> # the same budget for any model, in GMACs per image at the training size
        >>> custom_hooks = [dict(type='DynOPoolGMACsHook', target_gmacs=0.0772)]
    """

    priority = 'NORMAL'
    _CKPT_KEY = 'dynopool_gmacs_hook'

    def __init__(self, loss_weight: float = 0.0,
                 input_shape: Optional[Sequence[int]] = None,
                 in_channels: int = 3,
                 target_ratio: Optional[float] = None,
                 lambda_lr: float = 0.02,
                 lambda_p: float = 0.5,
                 freeze_after: float = 1.0,
                 target_gmacs: Optional[float] = None) -> None:
        if not isinstance(loss_weight, (int, float)) or loss_weight < 0:
            raise ValueError(f'loss_weight must be a number >= 0, got {loss_weight!r}')
        if input_shape is not None and (len(input_shape) != 2 or
                                        min(input_shape) < 1):
            raise ValueError(f'input_shape must be (H, W), got {input_shape!r}')
        if target_ratio is not None and not (
                isinstance(target_ratio, (int, float)) and math.isfinite(target_ratio)
                and target_ratio > 0):
            raise ValueError('target_ratio must be a positive number (the GMACs budget '
                             f'as a fraction of the initial GMACs), got {target_ratio!r}')
        if target_gmacs is not None and not (
                isinstance(target_gmacs, (int, float)) and math.isfinite(target_gmacs)
                and target_gmacs > 0):
            raise ValueError('target_gmacs must be a positive number (the GMACs budget '
                             f'per image), got {target_gmacs!r}')
        if target_ratio is not None and target_gmacs is not None:
            raise ValueError('give target_ratio (a fraction of the initial GMACs) or '
                             'target_gmacs (absolute GMACs), not both')
        if not isinstance(lambda_lr, (int, float)) or not lambda_lr > 0:
            raise ValueError(f'lambda_lr must be a number > 0, got {lambda_lr!r}')
        if not isinstance(lambda_p, (int, float)) or lambda_p < 0:
            raise ValueError(f'lambda_p must be a number >= 0, got {lambda_p!r}')
        if not isinstance(freeze_after, (int, float)) or not 0 < freeze_after <= 1:
            raise ValueError(f'freeze_after must be in (0, 1], got {freeze_after!r}')
        self.loss_weight = float(loss_weight)
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.in_channels = in_channels
        self.target_ratio = float(target_ratio) if target_ratio is not None else None
        self._target_abs = float(target_gmacs) if target_gmacs is not None else None
        self.lambda_lr = float(lambda_lr)
        self.lambda_p = float(lambda_p)
        self.freeze_after = float(freeze_after)
        self.lam = self.loss_weight  # current lambda (fixed unless in budget mode)
        self.mu = None  # integral state of the dual update (budget mode, set at setup)
        self.exceeded = False  # GMACs^t was above the budget at some iteration
        self.frozen: Optional[List[torch.Tensor]] = None  # alphas held after freezing
        self.profile: Optional[GMACsProfile] = None
        self._pools = []
        self._handle = None
        self._last_estimate: Optional[float] = None
        # (chosen G / T, cheapest G / T seen above T) of the last projection
        self.projection_gap: Optional[Tuple[float, Optional[float]]] = None
        # hook state of a checkpoint, applied in before_train (resume) or dropped
        # (load_from): (state, the checkpoint's iteration)
        self._loaded: Optional[Tuple[Dict, Optional[int]]] = None

    @property
    def budget_mode(self) -> bool:
        return self.target_ratio is not None or self._target_abs is not None

    @property
    def target_gmacs(self) -> float:
        """The budget ``T`` in GMACs (budget mode; with ``target_ratio``, after
        profiling)."""
        if self._target_abs is not None:
            return self._target_abs
        if self.profile is None or self.target_ratio is None:
            raise RuntimeError('target_gmacs needs budget mode and a profiled model')
        return self.target_ratio * self.profile.total_gmacs

    @staticmethod
    def _unwrap(model: nn.Module) -> nn.Module:
        return model.module if is_model_wrapper(model) else model

    def _before_train(self, runner) -> None:
        model = self._unwrap(runner.model)
        self._pools = [m for _, m in dynopool_layers(model)]
        if not self._pools:
            raise ValueError(
                'DynOPoolGMACsHook: the model has no DynOPool layer (nor a ShapeAdaptor '
                'or DiffStride); remove the hook from custom_hooks or use a DynOPool '
                'backbone (e.g. DynOPoolHRNet)')
        if self.input_shape is not None:
            self._setup(runner, self.input_shape)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        if self.profile is None:
            shape = self._batch_shape(runner, data_batch)
            self._setup(runner, shape)

    def _batch_shape(self, runner, data_batch) -> Tuple[int, int]:
        model = self._unwrap(runner.model)
        with torch.no_grad():
            data = model.data_preprocessor(data_batch, training=True)
        inputs = data['inputs']
        return int(inputs.shape[-2]), int(inputs.shape[-1])

    def _setup(self, runner, shape: Tuple[int, int]) -> None:
        model = self._unwrap(runner.model)
        reference = copy.deepcopy(model)
        reset_to_initial_ratios(reference)
        self.profile = profile_gmacs(reference, shape, self.in_channels)
        del reference
        ratio = self.target_gmacs / self.profile.total_gmacs if self.budget_mode else 0
        now = self.profile.host_estimate(self._pools)
        mode = (f'budget {ratio:.4g} x initial = {self.target_gmacs:.4g} '
                f'GMACs, the model starts at {now:.4g} GMACs '
                f'({now / self.target_gmacs:.4f} x budget), lambda starts at '
                f'{self.lam:.4g}, lambda_lr={self.lambda_lr}, '
                f'freeze_after={self.freeze_after}' if self.budget_mode
                else f'lambda={self.loss_weight}')
        runner.logger.info(
            f'DynOPoolGMACsHook: {self.profile.total_gmacs:.3f} GMACs per image at '
            f'{shape[0]}x{shape[1]} (initial state), {mode}; '
            + ', '.join(f'{n}: {g:.3f}' for n, g in zip(self.profile.pool_names,
                                                      self.profile.owned_gmacs))
            + f', fixed: {self.profile.fixed_gmacs:.3f}')
        for pool, name in zip(self._pools, self.profile.pool_names):
            if isinstance(pool, DynOPool):
                runner.logger.info(
                    f'DynOPoolGMACsHook: {name} allowed ratio range '
                    f'[{pool.min_ratio}, {pool.max_ratio}], max_size={pool.max_size}')
        self._handle = model.register_forward_hook(self._add_loss, with_kwargs=True)

    def _add_loss(self, module, args, kwargs, output):
        mode = kwargs.get('mode', args[2] if len(args) > 2 else 'tensor')
        if mode != 'loss' or not module.training or not isinstance(output, dict):
            return output
        # The logged value comes from the pools' host sizes (no extra device sync); the
        # differentiable estimate (Eq. 4.7) is built only when it enters the loss.
        self._last_estimate = self.profile.host_estimate(self._pools)
        if self.lam > 0 and self.frozen is None:
            output['loss_gmacs'] = self.profile.estimate(self._pools) * self.lam
        return output

    # ----------------------------------------------------------------- budget mode
    def _dual_step(self, gmacs: float) -> None:
        """``mu <- max(0, mu + lambda_lr * e)``, ``lambda = max(0, mu + lambda_p * e) / T``
        with ``e = G / T - 1`` (projected dual ascent plus a proportional term)."""
        target = self.target_gmacs
        if self.mu is None:
            self.mu = self.lam * target
        error = gmacs / target - 1.0
        state = torch.tensor([max(0.0, self.mu + self.lambda_lr * error), error],
                             dtype=torch.float64)
        dist.broadcast(state, src=0)  # identical on every rank (no-op without DDP)
        self.mu = float(state[0])
        self.exceeded = self.exceeded or bool(state[1] > 0)
        self.lam = max(0.0, self.mu + self.lambda_p * float(state[1])) / target

    @torch.no_grad()
    def project_to_budget(self) -> float:
        """Scale the pools' ratios so that ``GMACs^t <= T`` (Eq. 4.7 estimate at the
        profiled input size, ``T`` the budget of the constraint on Eq. 4.8's term), as
        close to ``T`` as the integer sizes allow, with no ratio on a rounding tie.

        1. One common factor ``s`` for every ratio (both axes of every pool, clamped to
           each pool's allowed range): bisection for the largest ``s`` whose estimate
           (integer sizes) is within the budget. Its sizes are the starting point.
        2. The rounding of step 1 can leave a gap of several percent (one more row of
           the largest map may cost more than the gap). DynOPool models: a search over
           the integer sizes within one row / column of step 1's on every axis of every
           pool, for the sizes within 1 % of the budget (``0.99 T <= G <= T``) that
           change fewest rows and columns (then: the larger ``G``); if none is within
           1 %, the largest ``G <= T``. Other layers (ShapeAdaptor, DiffStride): for
           each pool and axis in turn, the largest extra factor that keeps ``G <= T``.
        3. No rounding ties: every DynOPool ratio is set to ``r = n / in_size`` for its
           integer size ``n`` (the middle of the interval of ratios that give ``n``:
           ``in_size * r = n``, half a row from either rounding boundary); other layers'
           parameters are set to the middle of the interval that keeps their sizes.
           Steps 1-2 alone end just below a boundary, where the size depends on the
           last bit of float arithmetic.

        :attr:`projection_gap` then holds ``(G_below / T, G_above / T)``: the chosen
        sizes and the cheapest sizes the search saw above the budget (None if it saw
        none). Returns the GMACs after the projection.
        """
        target = self.target_gmacs
        pools = self._pools
        start = [ratio_parameter(p).detach().clone() for p in pools]
        # One factor per axis of every layer's ratio (ShapeAdaptor, one scale for both
        # axes, takes their geometric mean; see ops.resizing.scale_ratio).
        factors = [torch.ones(2, dtype=a.dtype, device=a.device) for a in start]
        above = [math.inf]  # cheapest estimate seen above the budget

        def apply() -> float:
            for pool, param, factor in zip(pools, start, factors):
                scale_ratio(pool, param, factor)
            gmacs = self._checked_gmacs()
            if gmacs > target:
                above[0] = min(above[0], gmacs)
            return gmacs

        def largest(setter, lo: float, hi: float) -> float:
            """Largest value in [lo, hi) with GMACs <= T (lo must be feasible)."""
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
        if all(isinstance(p, DynOPool) for p in pools):
            below, nearest_above = self._refine_dynopool_sizes(target)
            above[0] = min(above[0], nearest_above)
        else:
            for i in range(len(factors)):
                for axis in range(2):
                    def set_one(value: float, i=i, axis=axis) -> None:
                        factors[i][axis] = common * value
                    largest(set_one, 1.0, 4.0)
            below = apply()
            self._center_factors(start, factors)
        self.projection_gap = (below / target,
                               above[0] / target if math.isfinite(above[0]) else None)
        return float(self.profile.estimate(pools))

    def _refine_dynopool_sizes(self, target: float) -> Tuple[float, float]:
        """Step 2-3 of :meth:`project_to_budget` for DynOPool layers.

        Works on the integer sizes: with every ratio set to ``n / in_size`` (a pool fed
        by another takes that pool's size as ``in_size``) the sizes are exactly the
        chosen ones, so the estimate of Eq. 4.7 is ``fixed + sum_l c_l h_l w_l`` and the
        search needs no forward. Returns ``(G of the chosen sizes, cheapest G above T
        seen)``; leaves the ratios set to the chosen sizes.
        """
        prof, pools = self.profile, self._pools
        sizes = prof._host_sizes(pools)  # step 1's integer sizes
        # Allowed sizes per pool and axis: one row / column either way, within what the
        # pool can produce for any of its input's candidate sizes (min_size, ratio
        # range, max_size), so every combination below can be realised.
        bounds: List[List[Tuple[int, int]]] = [[] for _ in pools]
        for i in prof.pool_order:
            pool, parent = pools[i], prof.pool_parents[i]
            for axis in range(2):
                if parent is None:
                    in_lo = in_hi = prof.pool_in_sizes[i][axis]
                else:
                    in_lo, in_hi = bounds[parent][axis]
                n = sizes[i][axis]
                lo = max(n - 1, int(math.floor(pool.min_size + 0.5)),
                         math.ceil(in_hi * pool.min_ratio))
                hi = min(n + 1, math.floor(in_lo * pool.max_ratio))
                if pool.max_size is not None:
                    hi = min(hi, pool.max_size)
                bounds[i].append((min(lo, n), max(hi, n)))
        coef = [g / float(h0 * w0) for g, (h0, w0) in zip(prof.owned_gmacs,
                                                          prof.pool_out_sizes)]

        def cost(plan: Sequence[Tuple[int, int]]) -> float:
            total = prof.fixed_gmacs
            for (h, w), c in zip(plan, coef):
                total += h * w * c
            return total

        # Every combination of -1 / 0 / +1 on the 2P axes, fewest changes first; above
        # ~2e5 combinations only up to the number of changes that stays below that.
        axes = [(i, a) for i in range(len(pools)) for a in range(2)]
        steps: List[Tuple[int, ...]] = []
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
            gmacs = cost(plan)
            if gmacs > target:
                nearest_above = min(nearest_above, gmacs)
            elif gmacs >= 0.99 * target:
                band.append((len(step), -gmacs, plan))
            else:
                best.append((-gmacs, len(step), plan))
        # Preferred: within 1 % with the fewest changes; else as close below as allowed.
        candidates = sorted(band, key=lambda t: t[:2]) + sorted(best,
                                                                key=lambda t: t[:2])
        for entry in candidates[:50]:
            plan = entry[-1]
            self._set_dynopool_sizes(plan)
            if prof._host_sizes(pools) == [tuple(s) for s in plan]:
                gmacs = self._checked_gmacs()
                if gmacs <= target:
                    return gmacs, nearest_above
        # (not reached for DynOPool's size rule; kept as a safe fallback) step 1's sizes
        self._set_dynopool_sizes([list(s) for s in sizes])
        return self._checked_gmacs(), nearest_above

    def _checked_gmacs(self) -> float:
        """The estimate of Eq. 4.7 as the budget check uses it: the larger of the host
        value (float64, the logged one) and the float32 device value, so that both are
        within the budget when this is."""
        return max(self.profile.host_estimate(self._pools), self.current_gmacs())

    def _set_dynopool_sizes(self, plan: Sequence[Sequence[int]]) -> None:
        """Set every DynOPool's ``alpha = in_size / n`` (``r = n / in_size``, the middle of
        the ratios that round to ``n``) for the planned integer sizes ``plan``."""
        prof = self.profile
        for i in prof.pool_order:
            pool, parent = self._pools[i], prof.pool_parents[i]
            in_size = plan[parent] if parent is not None else prof.pool_in_sizes[i]
            alpha = torch.tensor([in_size[0] / plan[i][0], in_size[1] / plan[i][1]],
                                 dtype=torch.float64)
            pool.alpha.copy_(alpha.to(pool.alpha))
            pool.guard_alpha()  # clamps to the allowed range (a no-op by the bounds)

    def _center_factors(self, start: List[torch.Tensor],
                        factors: List[torch.Tensor]) -> None:
        """Move each layer's factor (per axis where the layer has one parameter per
        axis, else both axes together) to the middle of the interval in which no size
        changes, so that no parameter sits on a rounding boundary. Sizes (hence GMACs)
        are unchanged. Where the parameter reaches its clamp (allowed range) before any
        size changes, the clamp is that side's end of the interval."""
        prof, pools = self.profile, self._pools
        sizes = prof._host_sizes(pools)
        for i, pool in enumerate(pools):
            groups = [(0, ), (1, )] if ratio_parameter(pool).numel() == 2 else [(0, 1)]
            for group in groups:
                base = factors[i].clone()

                def at(m: float, group=group, base=base, i=i) -> torch.Tensor:
                    for a in group:
                        factors[i][a] = base[a] * m
                    scale_ratio(pools[i], start[i], factors[i])
                    return ratio_parameter(pools[i]).detach().clone()

                def same(m: float) -> bool:
                    at(m)
                    return prof._host_sizes(pools) == sizes

                edges = []
                for limit in (64.0, 1 / 64):
                    inside, out = 1.0, limit ** (1 / 6)
                    while same(out) and abs(math.log(out)) < abs(math.log(limit)):
                        inside, out = out, out * limit ** (1 / 6)
                    if not same(out):
                        test = same  # a size changes: bisect for where
                    else:
                        # No size changes up to the limit: the parameter is clamped on
                        # this side; bisect for where the clamp starts.
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

    def _freeze(self, runner) -> None:
        gmacs = self.current_gmacs()
        target = self.target_gmacs
        # The budget binds if the model was above it at some iteration: then it ends at
        # the budget (from below); a model that never exceeded it is left alone.
        if gmacs > target or self.exceeded:
            after = self.project_to_budget()
            runner.logger.info(
                f'DynOPoolGMACsHook: projected the ratios onto the budget at iteration '
                f'{runner.iter + 1}: {gmacs:.4g} -> {after:.4g} GMACs '
                f'({after / target:.4f} x target {target:.4g}, lambda {self.lam:.4g}, '
                f'exceeded during training: {self.exceeded})')
            below, above = self.projection_gap
            if after > target * (1 + 1e-6):
                # e.g. DiffStride never goes below 2*ceil(R)+1 per axis
                runner.logger.warning(
                    f'DynOPoolGMACsHook: the budget of {target:.4g} GMACs is not '
                    f'reachable: the smallest sizes the layers allow cost {after:.4g} '
                    'GMACs; the model is left there')
            elif below < 0.99:
                runner.logger.warning(
                    'DynOPoolGMACsHook: the budget is not met within 1 %: the nearest '
                    f'sizes below / above the budget give {below:.4f}x / '
                    + (f'{above:.4f}x' if above is not None else '(none found)')
                    + ' of the target (the projection searched the sizes within one '
                    'row / column of the common scale); the model is left at '
                    f'{below:.4f}x')
        self.frozen = [ratio_parameter(p).detach().clone() for p in self._pools]
        runner.logger.info(
            f'DynOPoolGMACsHook: alphas frozen at iteration {runner.iter + 1} '
            f'({self.current_gmacs():.4g} GMACs, {self.current_gmacs() / target:.4f} x '
            'target)')

    def _restore_frozen(self) -> None:
        with torch.no_grad():
            for pool, value in zip(self._pools, self.frozen):
                ratio_parameter(pool).copy_(value)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        hub = runner.message_hub
        projected = False
        if self.budget_mode and self.profile is not None:
            if self.frozen is not None:
                self._restore_frozen()  # undo the optimizer's step (momentum) on alpha
            elif self._last_estimate is not None:
                self._dual_step(self._last_estimate)
                if runner.iter + 1 >= math.ceil(self.freeze_after * runner.max_iters):
                    self._freeze(runner)
                    projected = True
        if projected:
            # This iteration's values are the projected model's (the one that is saved),
            # not the ones of the forward before the projection.
            self._log_projection(runner)
            return
        if self._last_estimate is not None:
            hub.update_scalar('train/gmacs', self._last_estimate)
        if self.budget_mode and self.profile is not None:
            hub.update_scalar('train/gmacs_lambda', self.lam)
            hub.update_scalar('train/gmacs_to_target',
                              (self._last_estimate or 0.0) / self.target_gmacs)
        elif self.profile is not None:
            hub.update_scalar('train/gmacs_lambda', self.lam)
        for pool, name in zip(self._pools, self.profile.pool_names):
            if pool.last_size is None:
                continue
            r_h, r_w = pool.host_ratio
            hub.update_scalar(f'train/{name}/h', float(pool.last_size[0]))
            hub.update_scalar(f'train/{name}/w', float(pool.last_size[1]))
            hub.update_scalar(f'train/{name}/r_h', r_h)
            hub.update_scalar(f'train/{name}/r_w', r_w)

    def _log_projection(self, runner) -> None:
        """Log the model after the projection at the iteration of the projection: GMACs,
        ``GMACs / T``, lambda, and each pool's sizes (at the profiled input size) and
        ratios, to the message hub (so the logger's line of this iteration has them) and
        as one row to the visualizer (so ``scalars.json`` has it even when the logger
        does not log this iteration)."""
        gmacs = self.profile.host_estimate(self._pools)
        sizes = self.profile._host_sizes(self._pools)
        values = {'gmacs': gmacs, 'gmacs_lambda': self.lam,
                  'gmacs_to_target': gmacs / self.target_gmacs}
        for pool, name, (h, w) in zip(self._pools, self.profile.pool_names, sizes):
            r_h, r_w = pool.host_ratio
            values.update({f'{name}/h': float(h), f'{name}/w': float(w),
                           f'{name}/r_h': r_h, f'{name}/r_w': r_w})
        for key, value in values.items():
            runner.message_hub.update_scalar(f'train/{key}', value)
        visualizer = getattr(runner, 'visualizer', None)
        if visualizer is not None:
            step = runner.iter + 1
            visualizer.add_scalars(dict(values, iter=step), step=step)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint[self._CKPT_KEY] = dict(
            lam=self.lam, mu=self.mu, exceeded=self.exceeded,
            target_ratio=self.target_ratio, target_gmacs=self._target_abs,
            frozen=None if self.frozen is None else [a.cpu() for a in self.frozen])

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Keep the checkpoint's hook state for :meth:`before_train`, which applies it on
        a resume and drops it for ``load_from`` (mmengine calls this hook for both)."""
        state: Optional[Dict] = checkpoint.get(self._CKPT_KEY)
        meta = checkpoint.get('meta') or {}
        self._loaded = None if state is None else (state, meta.get('iter'))

    @staticmethod
    def _is_resume(runner, checkpoint_iter: Optional[int]) -> bool:
        """Whether the checkpoint was loaded by a resume, as mmengine 0.10's
        ``Runner.load_or_resume`` decides it: ``resume=True`` (``--resume``) resumes
        (from ``load_from`` or the latest checkpoint), ``load_from`` alone only loads the
        weights. A direct ``runner.resume(path)`` call is recognised by the train loop
        standing at the checkpoint's iteration."""
        if getattr(runner, '_resume', False):
            return True
        return bool(checkpoint_iter) and runner.iter == checkpoint_iter

    def _apply_loaded_state(self, runner) -> None:
        loaded, self._loaded = self._loaded, None
        if loaded is None:
            return
        state, checkpoint_iter = loaded
        if not self._is_resume(runner, checkpoint_iter):
            # load_from: a new run. The model's (loaded) alphas are the starting point;
            # lambda, the dual state, the excess flag and the frozen sizes start afresh,
            # so the new budget is enforced and projected like any other run's.
            runner.logger.info(
                'DynOPoolGMACsHook: load_from (not a resume): a new '
                + ('budget run' if self.budget_mode else 'run')
                + ' starts from the checkpoint\'s alphas; its lambda '
                f"({float(state.get('lam', 0.0)):.4g}), controller state and "
                + ('frozen sizes' if state.get('frozen') is not None else 'freeze state')
                + f' are not carried over (lambda starts at {self.lam:.4g}; use '
                '--resume to continue that run)')
            return
        if (state.get('target_ratio'), state.get('target_gmacs')) != (
                self.target_ratio, self._target_abs):
            runner.logger.warning(
                'DynOPoolGMACsHook: the checkpoint was trained with target_ratio='
                f"{state.get('target_ratio')}, target_gmacs={state.get('target_gmacs')}; "
                f'this run uses {self.target_ratio}, {self._target_abs}; '
                'lambda continues from the checkpoint')
        self.lam = float(state['lam'])
        self.mu = state.get('mu')
        self.exceeded = bool(state.get('exceeded', False))
        frozen = state.get('frozen')
        self.frozen = None if frozen is None else [a.clone() for a in frozen]

    def before_train(self, runner) -> None:
        self._apply_loaded_state(runner)
        self._before_train(runner)
        if self.frozen is not None:
            if len(self.frozen) != len(self._pools):
                raise ValueError('DynOPoolGMACsHook: the checkpoint froze '
                                 f'{len(self.frozen)} pools, the model has '
                                 f'{len(self._pools)}')
            self.frozen = [a.to(ratio_parameter(p).device)
                           for a, p in zip(self.frozen, self._pools)]
            self._restore_frozen()

    def after_train(self, runner) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    def current_gmacs(self) -> float:
        """The estimate of Eq. 4.7 for the current alphas (no gradient)."""
        if self.profile is None:
            raise RuntimeError('DynOPoolGMACsHook has not profiled the model yet')
        with torch.no_grad():
            return float(self.profile.estimate(self._pools))
