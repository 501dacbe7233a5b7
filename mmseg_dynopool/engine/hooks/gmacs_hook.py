"""``DynOPoolGMACsHook``: the GMACs term of Eq. 4.8 and the GMACs budget in mmengine's
Runner. The algorithm is :class:`~mmseg_dynopool.engine.budget.BudgetController`; this
hook profiles the model (Eq. 4.7), calls the controller, logs and checkpoints its state.
"""
import copy
import math
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmengine import dist
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS
from torch import nn

from ...layers import resizing_layers
from ...models.cost import GMACsProfile, profile_gmacs, reset_to_initial_ratios
from ..budget import BudgetController, check_budget_options
from ..budget.interface import bounds_repr, host_sizes


def _broadcast_from_rank0(state: torch.Tensor) -> None:
    dist.broadcast(state, src=0)  # a no-op without DDP


@HOOKS.register_module()
class DynOPoolGMACsHook(Hook):
    """Add ``loss_gmacs = lambda * GMACs^t`` to every training forward (Eq. 4.8), with a
    fixed lambda or one that holds a GMACs budget (docs/budget.md).

    The GMACs are profiled once (first batch, or ``input_shape``) on a copy of the model
    at its initial ratios; a :class:`~..budget.BudgetController` over the model's
    resizing layers gives the loss term, the dual step after every iteration and the
    lock after iteration ``ceil(lock_after * max_iters)``. Logged every iteration:
    ``gmacs``, ``gmacs_lambda``, ``gmacs_to_target`` and per layer ``<name>/h``, ``/w``,
    ``/r_h``, ``/r_w`` (at the lock: the locked model's). The controller's state is
    checkpointed (``dynopool_gmacs_hook``) and continued on a resume only.

    Args:
        loss_weight (float): lambda (budget mode: its starting value). 0 logs only.
        input_shape (tuple[int, int], optional): (H, W) to profile at. Default: the size
            of the first training batch after the data preprocessor.
        in_channels (int): input channels of the profiling tensor. Default: 3.
        target_ratio (float, optional): budget as a fraction of the initial GMACs (e.g.
            ``69.39 / 82.55``, Table 5.4's DP-S). None: fixed lambda.
        lambda_lr (float): dual step on ``mu = lambda * T``. Default: 0.02.
        lambda_p (float): proportional gain on the relative excess. Default: 0.5.
        lock_after (float): fraction of training after which the ratios are projected
            and locked (budget mode). Default: 1.0 (after the last iteration).
        target_gmacs (float, optional): budget in absolute GMACs per image at the
            profiled size, instead of ``target_ratio``. Default: None.
        freeze_after (float, optional): deprecated name of ``lock_after``.

    Example:
        >>> custom_hooks = [dict(type='DynOPoolGMACsHook', target_ratio=0.84,
        ...                      lambda_lr=0.02, lock_after=0.9)]
    """

    priority = 'NORMAL'
    _CKPT_KEY = 'dynopool_gmacs_hook'
    #: the cost's name in the loss and log keys (``loss_<name>``, ``<name>_lambda``,
    #: ...) and its unit in messages; a hook over another cost model overrides them
    cost_name, cost_unit = 'gmacs', 'GMACs'

    def __init__(self, loss_weight: float = 0.0,
                 input_shape: Optional[Sequence[int]] = None, in_channels: int = 3,
                 target_ratio: Optional[float] = None, lambda_lr: float = 0.02,
                 lambda_p: float = 0.5, lock_after: Optional[float] = None,
                 target_gmacs: Optional[float] = None,
                 freeze_after: Optional[float] = None) -> None:
        name = 'freeze_after' if freeze_after is not None else 'lock_after'
        if freeze_after is not None:
            if lock_after is not None:
                raise ValueError('give lock_after, not both lock_after and its '
                                 'deprecated name freeze_after')
            warnings.warn('DynOPoolGMACsHook: freeze_after is deprecated, use lock_after '
                          '(same meaning)', DeprecationWarning, stacklevel=2)
        lock_after = next((v for v in (lock_after, freeze_after) if v is not None), 1.0)
        if not isinstance(lock_after, (int, float)) or not 0 < lock_after <= 1:
            raise ValueError(f'{name} must be in (0, 1], got {lock_after!r}')
        check_budget_options(loss_weight, target_ratio, target_gmacs, lambda_lr, lambda_p,
                             target_name='target_gmacs', unit='GMACs')
        if input_shape is not None and (len(input_shape) != 2 or min(input_shape) < 1):
            raise ValueError(f'input_shape must be (H, W), got {input_shape!r}')
        self.loss_weight = float(loss_weight)
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.in_channels = in_channels
        self.target_ratio = None if target_ratio is None else float(target_ratio)
        self._target_abs = None if target_gmacs is None else float(target_gmacs)
        self.lambda_lr, self.lambda_p = float(lambda_lr), float(lambda_p)
        self.lock_after = float(lock_after)
        self.controller: Optional[BudgetController] = None  # built in before_train
        self._handle = None
        self._last_estimate: Optional[float] = None  # host GMACs of the last forward
        # checkpoint state, applied in before_train (resume) or dropped (load_from)
        self._loaded: Optional[Tuple[Dict, Optional[int]]] = None

    # ----------------------------------------------- the controller's state, read here
    @property
    def budget_mode(self) -> bool:
        """Whether a budget is set (``target_ratio`` or ``target_gmacs``)."""
        return self.target_ratio is not None or self._target_abs is not None

    @property
    def target_gmacs(self) -> float:
        """The budget ``T`` in GMACs (with ``target_ratio``: after profiling)."""
        if self._target_abs is not None:
            return self._target_abs
        if self.controller is None:
            raise RuntimeError('target_gmacs needs budget mode and a profiled model')
        return self.controller.target

    @property
    def lam(self) -> float:
        """The current lambda."""
        return self.controller.lam if self.controller else self.loss_weight

    @property
    def profile(self) -> Optional[GMACsProfile]:
        """The GMACs profile (Eq. 4.7), None before the first batch."""
        return self.controller.cost if self.controller else None

    @property
    def locked(self) -> Optional[List[torch.Tensor]]:
        """The locked ratio parameters, None before the lock."""
        return self.controller.locked if self.controller else None

    frozen = locked  # the former name of `locked`

    @property
    def _pools(self) -> List[nn.Module]:
        return self.controller.layers if self.controller else []

    def current_gmacs(self) -> float:
        """The estimate of Eq. 4.7 for the current ratios (no gradient)."""
        if self.profile is None:
            raise RuntimeError(f'{type(self).__name__} has not profiled the model yet')
        return self.controller.current_cost()

    @staticmethod
    def _model(runner) -> nn.Module:
        return runner.model.module if is_model_wrapper(runner.model) else runner.model

    # ----------------------------------------------------------------- set-up
    def before_train(self, runner) -> None:
        """Find the resizing layers, apply a resumed checkpoint's state, and profile now
        if ``input_shape`` is given."""
        state = self._resumed_state(runner)
        self._before_train(runner)
        if state is not None:
            self.controller.load_state_dict(state)
        if self.input_shape is not None:
            self._setup(runner, self.input_shape)

    def _before_train(self, runner) -> None:
        """Find the model's resizing layers and build the controller over them."""
        layers = [m for _, m in resizing_layers(self._model(runner))]
        if not layers:
            raise ValueError(
                f'{type(self).__name__}: the model has no DynOPool layer (nor a '
                'ShapeAdaptor or DiffStride); remove the hook from custom_hooks or use a '
                'DynOPool backbone (e.g. DynOPoolHRNet)')
        self.controller = BudgetController(
            layers, None, self.loss_weight, self.target_ratio, self._target_abs,
            self.lambda_lr, self.lambda_p, sync=_broadcast_from_rank0)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        """Profile the model at the first batch's input size (once)."""
        if self.profile is None:
            preprocess = self._model(runner).data_preprocessor
            with torch.no_grad():
                inputs = preprocess(data_batch, training=True)['inputs']
            self._setup(runner, (int(inputs.shape[-2]), int(inputs.shape[-1])))

    def _setup(self, runner, shape: Tuple[int, int]) -> None:
        """Profile the GMACs at ``shape`` (Eq. 4.7), log them, add the loss hook."""
        model = self._model(runner)
        reference = copy.deepcopy(model)
        reset_to_initial_ratios(reference)
        profile = self.controller.cost = profile_gmacs(reference, shape, self.in_channels)
        del reference
        if self.budget_mode:
            target, now = self.target_gmacs, self.controller.host_cost()
            mode = (f'budget {target / profile.total_gmacs:.4g} x initial = {target:.4g} '
                    f'GMACs, the model starts at {now:.4g} GMACs ({now / target:.4f} x '
                    f'budget), lambda starts at {self.lam:.4g}, lambda_lr='
                    f'{self.lambda_lr}, lock_after={self.lock_after}')
        else:
            mode = f'lambda={self.loss_weight}'
        runner.logger.info(
            f'DynOPoolGMACsHook: {profile.total_gmacs:.3f} GMACs per image at '
            f'{shape[0]}x{shape[1]} (initial state), {mode}; '
            + ', '.join(f'{n}: {g:.3f}' for n, g in zip(profile.pool_names,
                                                      profile.owned_gmacs))
            + f', fixed: {profile.fixed_gmacs:.3f}')
        for layer, name in zip(self._pools, profile.pool_names):
            if bounds_repr(layer):
                runner.logger.info(f'DynOPoolGMACsHook: {name} {bounds_repr(layer)}')
        self._handle = model.register_forward_hook(self._add_loss, with_kwargs=True)

    def _add_loss(self, module, args, kwargs, output):
        """Forward hook: add the controller's term to a training forward's losses."""
        mode = kwargs.get('mode', args[2] if len(args) > 2 else 'tensor')
        if mode != 'loss' or not module.training or not isinstance(output, dict):
            return output
        # Logged from the layers' host sizes (no device sync); the differentiable
        # estimate (Eq. 4.7) is built only when it enters the loss.
        self._last_estimate = self.controller.host_cost()
        loss = self.controller.loss()
        if loss is not None:
            output[f'loss_{self.cost_name}'] = loss
        return output

    # ----------------------------------------------------------------- training
    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        """Hold locked ratios, or take the dual step and lock at ``lock_after``; log."""
        ctrl = self.controller
        if ctrl is None or ctrl.cost is None:
            return
        if self.budget_mode:
            if ctrl.locked is not None:
                ctrl.restore_locked()  # undo the optimizer's step (momentum)
            elif self._last_estimate is not None:
                ctrl.step(self._last_estimate)
                if runner.iter + 1 >= math.ceil(self.lock_after * runner.max_iters):
                    self._lock(runner)
                    return
        hub, key = runner.message_hub, f'train/{self.cost_name}'
        if self._last_estimate is not None:
            hub.update_scalar(key, self._last_estimate)
        hub.update_scalar(f'{key}_lambda', ctrl.lam)
        if self.budget_mode:
            hub.update_scalar(f'{key}_to_target',
                              (self._last_estimate or 0.0) / self.target_gmacs)
        for layer, name in zip(self._pools, self.profile.pool_names):
            if layer.last_size is not None:
                values = self._layer_values(name, layer, layer.last_size)
                for key, value in values.items():
                    hub.update_scalar(f'train/{key}', value)

    @staticmethod
    def _layer_values(name: str, layer: nn.Module, size) -> Dict[str, float]:
        r_h, r_w = layer.host_ratio
        return {f'{name}/h': float(size[0]), f'{name}/w': float(size[1]),
                f'{name}/r_h': r_h, f'{name}/r_w': r_w}

    def _lock(self, runner) -> None:
        """Lock the ratios through the controller; log the locked model (message hub
        and one visualizer row, so ``scalars.json`` ends at the saved model)."""
        report, it = self.controller.lock(), runner.iter + 1
        target, after = report.target, report.after
        me, unit, name = type(self).__name__, self.cost_unit, self.cost_name
        if report.projection is not None:
            runner.logger.info(
                f'{me}: projected the ratios onto the budget at iteration {it}: '
                f'{report.before:.4g} -> {after:.4g} {unit} ({after / target:.4f} x '
                f'target {target:.4g}, lambda {self.lam:.4g}, exceeded during training: '
                f'{self.controller.exceeded})')
            if report.shortfall(unit):
                runner.logger.warning(f'{me}: {report.shortfall(unit)}')
        runner.logger.info(f'{me}: ratios locked at iteration {it} ({after:.4g} {unit}, '
                           f'{after / target:.4f} x target)')
        cost = self.controller.host_cost()
        values = {name: cost, f'{name}_lambda': self.lam,
                  f'{name}_to_target': cost / target}
        for layer, name, size in zip(self._pools, self.profile.pool_names,
                                     host_sizes(self.profile, self._pools)):
            values.update(self._layer_values(name, layer, size))
        for key, value in values.items():
            runner.message_hub.update_scalar(f'train/{key}', value)
        if getattr(runner, 'visualizer', None) is not None:
            runner.visualizer.add_scalars(dict(values, iter=it), step=it)

    def after_train(self, runner) -> None:
        """Remove the forward hook that adds the loss."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    # --------------------------------------------------------------- checkpoints
    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Save the controller's state and this run's budget."""
        state = self.controller.state_dict() if self.controller else dict(
            lam=self.loss_weight, mu=None, exceeded=False, locked=None)
        checkpoint[self._CKPT_KEY] = dict(state, target_ratio=self.target_ratio,
                                          target_gmacs=self._target_abs)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Keep the checkpoint's state for :meth:`before_train`, which applies it on a
        resume and drops it for ``load_from`` (mmengine calls this hook for both)."""
        state: Optional[Dict] = checkpoint.get(self._CKPT_KEY)
        self._loaded = None if state is None else (
            state, (checkpoint.get('meta') or {}).get('iter'))

    @staticmethod
    def _is_resume(runner, checkpoint_iter: Optional[int]) -> bool:
        """Resume or ``load_from``, as mmengine 0.10's ``Runner.load_or_resume`` decides:
        ``resume=True`` resumes; a direct ``runner.resume(path)`` is recognised by the
        train loop standing at the checkpoint's iteration."""
        if getattr(runner, '_resume', False):
            return True
        return bool(checkpoint_iter) and runner.iter == checkpoint_iter

    def _resumed_state(self, runner) -> Optional[Dict]:
        """The loaded checkpoint's state if this run resumes it, else None (logged)."""
        loaded, self._loaded = self._loaded, None
        if loaded is None:
            return None
        state, checkpoint_iter = loaded
        if not self._is_resume(runner, checkpoint_iter):
            runner.logger.info(
                f'{type(self).__name__}: load_from (not a resume): a new '
                + ('budget run' if self.budget_mode else 'run') + " starts from the "
                f"checkpoint's ratios; its lambda ({float(state.get('lam', 0.0)):.4g}), "
                f'controller state and lock state are not carried over (lambda starts '
                f'at {self.lam:.4g}; use --resume to continue that run)')
            return None
        if (state.get('target_ratio'), state.get('target_gmacs')) != (
                self.target_ratio, self._target_abs):
            runner.logger.warning(
                f'{type(self).__name__}: the checkpoint was trained with target_ratio='
                f"{state.get('target_ratio')}, target_gmacs={state.get('target_gmacs')}; "
                f'this run uses {self.target_ratio}, {self._target_abs}; '
                'lambda continues from the checkpoint')
        return state
