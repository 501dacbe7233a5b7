"""``DynOPoolLatencyHook``: the budget of ``DynOPoolGMACsHook`` held in predicted time
instead of GMACs (issue 22; docs/budget.md, "Latency budgets").

The cost is :class:`~mmseg_dynopool.models.latency.LatencyProfile`, the latency model
of one device (``tools/analysis/calibrate_cost.py``) in the form of Eq. 4.7: ms of one
forward of the frozen model, differentiable in the resizing layers' parameters. The
budget controller, the projection and the lock are the GMACs hook's, unchanged.
"""
import copy
import os.path as osp
from typing import Optional, Sequence, Tuple

import torch
from mmengine.registry import HOOKS

from ...layers import resizing_layers
from ...models.cost import reset_to_initial_ratios
from ...models.latency import LatencyModel, predict_latency, profile_latency
from ..budget import BudgetController, check_budget_options
from ..budget.interface import bounds_repr
from .gmacs_hook import DynOPoolGMACsHook, _broadcast_from_rank0


@HOOKS.register_module()
class DynOPoolLatencyHook(DynOPoolGMACsHook):
    """Add ``loss_latency = lambda * t^t`` to every training forward (Eq. 4.8 with the
    predicted latency ``t^t`` in ms in place of the GMACs), with a fixed lambda or one
    that holds a latency budget, exactly as :class:`DynOPoolGMACsHook` does for GMACs.

    ``t^t`` is the latency model's time of one forward of the frozen model at the
    profiled input size (``latency_model.batch`` images, the device it was fitted on),
    ``t_fixed + sum_l (h_l w_l) / (h0_l w0_l) * t_owned(l)``
    (:class:`~mmseg_dynopool.models.latency.LatencyProfile`). Logged every iteration:
    ``latency`` (ms), ``latency_lambda``, ``latency_to_target``, ``gmacs`` (Eq. 4.7, for
    comparison) and the layers' sizes and ratios. The controller's state is checkpointed
    under ``dynopool_latency_hook``.

    Args:
        latency_model (str): JSON file of the fitted latency model (read at once, so a
            missing file fails when the config is built).
        target_latency_ratio (float, optional): the budget as a fraction of the initial
            model's predicted latency, or of ``reference_config``'s when given.
        target_latency (float, optional): the budget in ms (not with the ratio).
        reference_config (str, optional): a model config (e.g. the human-designed model
            this one replaces) whose predicted latency at the same input size
            ``target_latency_ratio`` is relative to.
        loss_weight, input_shape, in_channels, lambda_lr, lambda_p, lock_after: as in
            :class:`DynOPoolGMACsHook` (``loss_weight`` is lambda per ms).

    Example:
        >>> custom_hooks = [dict(type='DynOPoolLatencyHook',
        ...                      latency_model='work_dirs/latency/cpu.json',
        ...                      reference_config='configs/synthetic/fcn_hr18tiny_...py',
        ...                      target_latency_ratio=0.84, lock_after=0.9)]
    """

    _CKPT_KEY = 'dynopool_latency_hook'
    cost_name = 'latency'
    cost_unit = 'ms'

    def __init__(self, latency_model: str, target_latency_ratio: Optional[float] = None,
                 target_latency: Optional[float] = None,
                 reference_config: Optional[str] = None, loss_weight: float = 0.0,
                 input_shape: Optional[Sequence[int]] = None, in_channels: int = 3,
                 lambda_lr: float = 0.02, lambda_p: float = 0.5,
                 lock_after: Optional[float] = None) -> None:
        check_budget_options(loss_weight, target_latency_ratio, target_latency, lambda_lr,
                             lambda_p, target_name='target_latency', unit='ms')
        if reference_config is not None:
            if target_latency_ratio is None:
                raise ValueError('reference_config says what target_latency_ratio is '
                                 'relative to: give target_latency_ratio with it')
            if not osp.isfile(reference_config):
                raise FileNotFoundError(f'reference_config {reference_config!r} not found')
        if not isinstance(latency_model, str):
            raise TypeError(f'latency_model must be the path of a JSON file written by '
                            f'tools/analysis/calibrate_cost.py, got {latency_model!r}')
        super().__init__(loss_weight=loss_weight, input_shape=input_shape,
                         in_channels=in_channels, target_ratio=target_latency_ratio,
                         lambda_lr=lambda_lr, lambda_p=lambda_p, lock_after=lock_after,
                         target_gmacs=target_latency)
        self.latency_model_path = latency_model
        self.latency_model = LatencyModel.load(latency_model)
        self.reference_config = reference_config
        self.reference_ms: Optional[float] = None  # predicted, after profiling

    @property
    def target_latency(self) -> float:
        """The budget ``T`` in ms (after profiling when given as a ratio)."""
        return self.target_gmacs

    def current_latency(self) -> float:
        """The estimate for the current ratios in ms (no gradient)."""
        return self.current_gmacs()

    def _reference_ms(self, shape: Tuple[int, int]) -> float:
        from ...models.build import build_model_from_config
        device = next(p for l in self._pools for p in l.parameters()).device
        reference = build_model_from_config(self.reference_config).to(device)
        return predict_latency(reference, shape, self.latency_model, self.in_channels)

    def _setup(self, runner, shape: Tuple[int, int]) -> None:
        model = self._model(runner)
        initial = copy.deepcopy(model)
        reset_to_initial_ratios(initial)
        profile = profile_latency(initial, shape, self.latency_model, self.in_channels)
        del initial
        ctrl = self.controller
        if self.reference_config is not None:
            # The budget in ms: the controller is rebuilt with it, its state carried.
            self.reference_ms = self._reference_ms(shape)
            self._target_abs = self.target_ratio * self.reference_ms
            state = ctrl.state_dict()
            ctrl = self.controller = BudgetController(
                ctrl.layers, None, self.loss_weight, None, self._target_abs,
                self.lambda_lr, self.lambda_p, sync=_broadcast_from_rank0)
            ctrl.load_state_dict(state)
        ctrl.cost = profile
        lm = self.latency_model
        runner.logger.info(
            f'{type(self).__name__}: latency model {self.latency_model_path} (batch '
            f'{lm.batch}, {lm.threads} threads, {lm.device}, {lm.runtime}): '
            f'{profile.initial_cost:.4g} ms per forward at {shape[0]}x{shape[1]} '
            f'(initial state; {profile.gmacs.total_gmacs:.4g} GMACs); '
            + ', '.join(f'{n}: {t:.4g}' for n, t in zip(profile.pool_names,
                                                        profile.owned_ms))
            + f', fixed: {profile.fixed_ms:.4g} ms')
        if self.budget_mode:
            target, now = self.target_latency, ctrl.host_cost()
            base = (f'{self.target_ratio:.4g} x the reference model '
                    f'({self.reference_ms:.4g} ms)' if self.reference_ms is not None
                    else f'{target / profile.initial_cost:.4g} x initial')
            runner.logger.info(
                f'{type(self).__name__}: budget {base} = {target:.4g} ms; the model '
                f'starts at {now:.4g} ms ({now / target:.4f} x budget), lambda starts at '
                f'{self.lam:.4g}, lambda_lr={self.lambda_lr}, lock_after={self.lock_after}')
        for layer, name in zip(self._pools, profile.pool_names):
            if bounds_repr(layer):
                runner.logger.info(f'{type(self).__name__}: {name} {bounds_repr(layer)}')
        self._handle = model.register_forward_hook(self._add_loss, with_kwargs=True)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        """As the GMACs hook; also logs the GMACs (Eq. 4.7) of the current sizes."""
        super().after_train_iter(runner, batch_idx, data_batch, outputs)
        if self.profile is not None:
            runner.message_hub.update_scalar(
                'train/gmacs', self.profile.gmacs.host_estimate(self._pools))

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """The controller's state and the budget (``target_ratio``: the latency ratio,
        ``target_gmacs``: the budget in ms unless it is relative to the reference
        model, whose predicted ms are saved as ``reference_ms``)."""
        super().before_save_checkpoint(runner, checkpoint)
        state = checkpoint[self._CKPT_KEY]
        if self.reference_ms is not None:
            state['target_gmacs'] = None  # as given: a ratio of the reference's ms
        state.update(unit='ms', reference_ms=self.reference_ms)
