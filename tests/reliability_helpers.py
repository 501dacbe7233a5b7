"""Shared pieces of the reliability tests (test_reliability.py, dist_worker.py).

* :func:`tiny_config` - the synthetic DynOPool HRNet config shrunk to a few iterations of
  batch 2 at 64x64 crops, single-process data loading, no validation, plain BN.
* :class:`RecorderHook` - records every DynOPool's alpha and output size after each
  training iteration.
* :func:`model_state` - alphas, feature-map sizes, parameters and buffers of a model, as
  plain CPU tensors that can be ``torch.save``-d and compared across processes.

Kept free of pytest so the torchrun worker can import it.
"""
import os.path as osp
from typing import Dict, List, Optional, Tuple

import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from torch import nn

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY_BASE = osp.join(REPO, 'configs', 'synthetic',
                     'fcn_dynopool-hr18tiny_1xb8-600it_synthvoc-96x96.py')
PLAIN_BN = dict(type='BN', requires_grad=True)


def tiny_config(data_root: str,
                work_dir: str,
                max_iters: int = 4,
                *,
                crop: int = 64,
                batch_size: int = 2,
                checkpoint_interval: Optional[int] = None,
                seed: int = 0,
                loss_weight: Optional[float] = None,
                dynopool_cfg: Optional[dict] = None,
                hook_kwargs: Optional[dict] = None) -> Config:
    """The DynOPool hr18tiny synthetic config, sized for a test.

    Args:
        data_root: folder written by ``write_synthetic_voc``.
        work_dir: the run's work dir.
        max_iters: training iterations; the poly LR schedule ends there too (set
            explicitly, so a run stopped early with ``train_cfg.max_iters`` keeps the
            schedule of the full run).
        crop: square crop size of the training pipeline and the data preprocessor.
        batch_size: images per iteration (per process).
        checkpoint_interval: save every this many iterations; default ``max_iters``.
        seed: ``randomness.seed``.
        loss_weight: lambda of the GMACs hook. Default: 0.5.
        dynopool_cfg: replaces the backbone's ``dynopool_cfg``.
        hook_kwargs: more arguments of the GMACs hook (e.g. ``target_ratio``).
    """
    cfg = Config.fromfile(TINY_BASE)
    cfg.work_dir = work_dir
    size = (crop, crop)
    cfg.model.data_preprocessor.size = size
    # Plain BN, set where it is used: SyncBN cannot run on CPU processes, and the base's
    # `norm_cfg` variable is already expanded into these dicts.
    cfg.model.backbone.norm_cfg = dict(PLAIN_BN)
    cfg.model.decode_head.norm_cfg = dict(PLAIN_BN)
    if dynopool_cfg is not None:
        cfg.model.backbone.dynopool_cfg = dynopool_cfg
    pipeline = cfg.train_dataloader.dataset.pipeline
    for step in pipeline:
        if step['type'] == 'RandomResize':
            step['scale'] = (crop + crop // 4, crop + crop // 4)
        elif step['type'] == 'RandomCrop':
            step['crop_size'] = size
        elif step['type'] == 'Pad':
            step['size'] = size
    cfg.train_dataloader.batch_size = batch_size
    cfg.train_dataloader.num_workers = 0
    cfg.train_dataloader.persistent_workers = False
    cfg.train_dataloader.dataset.data_root = data_root
    for key in ('val_dataloader', 'test_dataloader'):
        cfg[key].num_workers = 0
        cfg[key].persistent_workers = False
        cfg[key].dataset.data_root = data_root
    # No validation during these runs (it would dominate their time).
    cfg.val_cfg = None
    cfg.val_dataloader = None
    cfg.val_evaluator = None
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters,
                         val_interval=max_iters)
    cfg.param_scheduler = [dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0,
                                end=max_iters, by_epoch=False)]
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.interval = checkpoint_interval or max_iters
    cfg.default_hooks.checkpoint.max_keep_ckpts = -1
    # Seeded, but not `deterministic=True`: CPU kernels are deterministic for a fixed
    # thread count already, and torch's deterministic mode makes this model ~8x slower
    # on CPU (it fills every new tensor with NaN).
    cfg.randomness = dict(seed=seed)
    cfg.env_cfg = dict(cudnn_benchmark=False,
                       mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
                       dist_cfg=dict(backend='gloo'))
    # Pinned here (not inherited) so the tests do not depend on the synthetic config's
    # tuning: alpha at the full learning rate moves the sizes within a few iterations.
    cfg.optim_wrapper.paramwise_cfg = dict(
        custom_keys={'.alpha': dict(lr_mult=1.0, decay_mult=0.0)})
    cfg.custom_hooks = [dict(type='DynOPoolGMACsHook',
                             loss_weight=0.5 if loss_weight is None else loss_weight,
                             **(hook_kwargs or {}))]
    return cfg


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a (MM)DistributedDataParallel wrapper, or ``model`` itself."""
    return model.module if is_model_wrapper(model) else model


def pool_items(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """``(name, DynOPool)`` pairs of the unwrapped model, in registration order."""
    from mmseg_dynopool import dynopool_layers
    return dynopool_layers(unwrap(model))


class RecorderHook(Hook):
    """Record each DynOPool's alpha and last output size after every training iteration.

    ``records`` is a list with one dict per iteration:
    ``{'iter': i, 'alpha': {name: tensor}, 'size': {name: (h, w)},
    'in_size': {name: (h, w)}, 'losses': {key: float}, 'lam': float}`` (``losses``: the
    iteration's logged loss entries, e.g. ``loss``, ``decode.loss_ce``, ``loss_gmacs``;
    ``lam``: the GMACs hook's lambda after the iteration, None without the hook).
    """

    priority = 'LOWEST'

    def __init__(self) -> None:
        self.records: List[dict] = []

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        items = pool_items(runner.model)
        hooks = [h for h in runner.hooks if type(h).__name__ == 'DynOPoolGMACsHook']
        self.records.append(dict(
            lam=hooks[0].lam if hooks else None,
            iter=runner.iter,
            alpha={n: m.alpha.detach().clone().double() for n, m in items},
            size={n: tuple(m.last_size) for n, m in items},
            in_size={n: tuple(m.last_input_size) for n, m in items},
            losses={k: float(v) for k, v in (outputs or {}).items() if 'loss' in k}))


def model_state(model: nn.Module) -> Dict[str, object]:
    """Alphas, last feature-map sizes, parameters and buffers of ``model`` (copies)."""
    model = unwrap(model)
    return dict(
        alpha={n: m.alpha.detach().clone().double() for n, m in pool_items(model)},
        size={n: tuple(m.last_size) if m.last_size else None
              for n, m in pool_items(model)},
        params={n: p.detach().cpu().clone() for n, p in model.named_parameters()},
        buffers={n: b.detach().cpu().clone() for n, b in model.named_buffers()})


def max_abs_diff(a: Dict[str, torch.Tensor], b: Dict[str, torch.Tensor]) -> float:
    """Largest absolute difference over two dicts of tensors with the same keys."""
    if set(a) != set(b):
        raise AssertionError(f'different keys: {sorted(set(a) ^ set(b))[:10]}')
    worst = 0.0
    for key in a:
        x, y = a[key], b[key]
        if x.shape != y.shape:
            raise AssertionError(f'{key}: shape {tuple(x.shape)} vs {tuple(y.shape)}')
        if x.numel():
            worst = max(worst, float((x.double() - y.double()).abs().max()))
    return worst
