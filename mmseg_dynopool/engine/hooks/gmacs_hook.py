"""Hook adding the GMACs loss of Eqs. 4.7-4.8 to a DynOPool model's training loss."""
import copy
from typing import Optional, Sequence, Tuple

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS
from torch import nn

from ...analysis.gmacs import GMACsProfile, profile_gmacs, reset_to_initial_ratios
from ...ops import dynopool_layers


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
    DynOPool layers (mmseg segmentors, mmpretrain classifiers).

    Args:
        loss_weight (float): lambda of Eq. 4.8. 0 logs the estimate without adding a loss.
        input_shape (tuple[int, int], optional): (H, W) to profile at. Default: the
            spatial size of the first training batch after the data preprocessor.
        in_channels (int): input channels of the profiling tensor. Default: 3.
    """

    priority = 'NORMAL'

    def __init__(self, loss_weight: float = 0.0,
                 input_shape: Optional[Sequence[int]] = None,
                 in_channels: int = 3) -> None:
        if not isinstance(loss_weight, (int, float)) or loss_weight < 0:
            raise ValueError(f'loss_weight must be a number >= 0, got {loss_weight!r}')
        if input_shape is not None and (len(input_shape) != 2 or
                                        min(input_shape) < 1):
            raise ValueError(f'input_shape must be (H, W), got {input_shape!r}')
        self.loss_weight = float(loss_weight)
        self.input_shape = tuple(input_shape) if input_shape is not None else None
        self.in_channels = in_channels
        self.profile: Optional[GMACsProfile] = None
        self._pools = []
        self._handle = None
        self._last_estimate: Optional[float] = None

    @staticmethod
    def _unwrap(model: nn.Module) -> nn.Module:
        return model.module if is_model_wrapper(model) else model

    def before_train(self, runner) -> None:
        model = self._unwrap(runner.model)
        self._pools = [m for _, m in dynopool_layers(model)]
        if not self._pools:
            raise ValueError(
                'DynOPoolGMACsHook: the model has no DynOPool layer; remove the hook '
                'from custom_hooks or use a DynOPool backbone (e.g. DynOPoolHRNet)')
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
        runner.logger.info(
            f'DynOPoolGMACsHook: {self.profile.total_gmacs:.3f} GMACs per image at '
            f'{shape[0]}x{shape[1]} (initial state), lambda={self.loss_weight}; '
            + ', '.join(f'{n}: {g:.3f}' for n, g in zip(self.profile.pool_names,
                                                      self.profile.owned_gmacs))
            + f', fixed: {self.profile.fixed_gmacs:.3f}')
        for pool, name in zip(self._pools, self.profile.pool_names):
            runner.logger.info(
                f'DynOPoolGMACsHook: {name} allowed ratio range '
                f'[{pool.min_ratio}, {pool.max_ratio}], max_size={pool.max_size}')
        self._handle = model.register_forward_hook(self._add_loss, with_kwargs=True)

    def _add_loss(self, module, args, kwargs, output):
        mode = kwargs.get('mode', args[2] if len(args) > 2 else 'tensor')
        if mode != 'loss' or not module.training or not isinstance(output, dict):
            return output
        estimate = self.profile.estimate(self._pools)
        self._last_estimate = float(estimate.detach())
        if self.loss_weight > 0:
            output['loss_gmacs'] = estimate * self.loss_weight
        return output

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        hub = runner.message_hub
        if self._last_estimate is not None:
            hub.update_scalar('train/gmacs', self._last_estimate)
        for pool, name in zip(self._pools, self.profile.pool_names):
            if pool.last_size is None:
                continue
            r_h, r_w = pool.ratio.tolist()
            hub.update_scalar(f'train/{name}/h', float(pool.last_size[0]))
            hub.update_scalar(f'train/{name}/w', float(pool.last_size[1]))
            hub.update_scalar(f'train/{name}/r_h', r_h)
            hub.update_scalar(f'train/{name}/r_w', r_w)

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
