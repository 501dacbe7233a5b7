"""Shared pieces of the tests that are not pytest fixtures (so the torchrun worker,
tests/dist_worker.py, can import them too); tests/conftest.py imports them for the rest.

* :func:`tiny_config` - the one way a test shrinks a shipped segmentation config for a
  seconds-long run through the Runner; :func:`tiny_cls_options` the same for the
  mmpretrain classification configs.
* :func:`build_segmentor` - build a config's model with a fixed seed.
* :class:`RecorderHook` - records every resizing layer's alpha and output size after each
  training iteration.
* :func:`model_state`, :func:`max_abs_diff` - compare models across processes.
* :func:`child_env`, :func:`start`, :func:`wait_ok` - child trainings (tools/train.py,
  torchrun) with their output in a log file.
"""
import math
import os
import os.path as osp
import subprocess
import uuid
from typing import Dict, List, Optional, Tuple

import torch
from mmengine.config import Config
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from torch import nn

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
#: The main job's DynOPool model and its human-designed baseline (tiny HRNet, 96x96).
SYNTH_DP_CFG = osp.join(REPO, 'configs', 'synthetic',
                        'fcn_dynopool-hr18tiny_1xb8-600it_synthvoc-96x96.py')
SYNTH_HUMAN_CFG = osp.join(REPO, 'configs', 'synthetic',
                           'fcn_hr18tiny_1xb8-600it_synthvoc-96x96.py')

#: The recipe of the runs that check what the learnable sizes do (DDP, resume, guards,
#: budget): no validation, alpha at the full learning rate and a GMACs hook with
#: lambda 0.5, so the feature-map sizes move within a few iterations. Pinned here
#: rather than inherited, so these tests do not depend on the configs' tuning.
MOVING_SIZES = dict(validate=False, alpha_lr_mult=1.0, gmacs_hook=dict(loss_weight=0.5))


def tiny_config(config: str,
                data_root: str,
                work_dir: str,
                iters: int = 4,
                *,
                crop: int = 64,
                batch_size: int = 2,
                validate: bool = True,
                alpha_lr_mult: Optional[float] = None,
                gmacs_hook: Optional[dict] = None,
                **options) -> Config:
    """Load the segmentation config ``config`` shrunk for a seconds-long Runner run.

    Only sizes, paths and the schedule change; the model, optimizer and hooks stay the
    config's unless asked for:

    * every dataset (a ``ConcatDataset``'s parts too) reads ``data_root``, unserialised;
      loaders load in the main process; ``batch_size`` training images per iteration;
    * square ``crop`` crops: the data preprocessor, ``RandomCrop`` and ``Pad`` use
      ``crop``, ``RandomResize`` / ``Resize`` scale to ``crop + crop // 4``;
    * ``iters`` iterations: every LR scheduler ends by then (so a run stopped early with
      ``train_cfg.max_iters`` keeps the schedule of the full run), validation and a
      checkpoint at the end (every checkpoint kept), a log line every iteration;
    * a unique ``experiment_name`` (and visualizer name);
    * the config text is left unformatted (yapf costs ~2 s per dump / log / checkpoint).

    Args:
        config: path of a segmentation config (mmseg layout).
        data_root: a folder written by ``write_synthetic_voc`` (``with_aug=True`` for the
            VOC-aug configs).
        work_dir: the run's work dir.
        iters: training iterations.
        crop: crop size in pixels.
        batch_size: training images per iteration (per process).
        validate: False drops validation (``val_cfg`` / loader / evaluator).
        alpha_lr_mult: learning-rate multiplier of the resizing layers' alphas (the
            configs use 0.1; 1.0 moves the feature-map sizes within a few iterations).
        gmacs_hook: when given, ``custom_hooks`` becomes one ``DynOPoolGMACsHook`` with
            these arguments (e.g. ``dict(loss_weight=0.5)``).
        **options: merged last, as ``--cfg-options`` would (dotted keys allowed).
    """
    raw = Config.fromfile(config)
    cfg = Config(raw.to_dict(), filename=raw.filename, format_python_code=False)
    cfg.work_dir = work_dir
    size = (crop, crop)
    cfg.crop_size = size
    cfg.model.data_preprocessor.size = size
    loaders = ['train_dataloader', 'val_dataloader', 'test_dataloader']
    for key in loaders:
        loader = cfg.get(key)
        if not loader:
            continue
        loader.num_workers = 0
        loader.persistent_workers = False
        dataset = loader.dataset
        for part in dataset.get('datasets', None) or [dataset]:
            part.data_root = data_root
            # Loading in the main process: no need for mmengine's shared-memory copy of
            # the annotation list, whose gc.collect() costs ~0.3 s per dataset.
            part.serialize_data = False
            for step in part.get('pipeline', []):
                if step['type'] == 'RandomCrop':
                    step['crop_size'] = size
                elif step['type'] == 'Pad':
                    step['size'] = size
                elif step['type'] in ('RandomResize', 'Resize'):
                    step['scale'] = (crop + crop // 4, ) * 2
    cfg.train_dataloader.batch_size = batch_size
    cfg.train_cfg.max_iters = iters
    cfg.train_cfg.val_interval = iters
    for scheduler in cfg.param_scheduler:
        scheduler['end'] = min(scheduler.get('end', iters), iters)
        scheduler['begin'] = min(scheduler.get('begin', 0), max(iters - 1, 0))
    if not validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.interval = iters
    cfg.default_hooks.checkpoint.max_keep_ckpts = -1
    if alpha_lr_mult is not None:
        cfg.optim_wrapper.paramwise_cfg = dict(
            custom_keys={'.alpha': dict(lr_mult=alpha_lr_mult, decay_mult=0.0)})
    if gmacs_hook is not None:
        cfg.custom_hooks = [dict(type='DynOPoolGMACsHook', **gmacs_hook)]
    # A name of its own for every run: mmengine keeps one logger, message hub and
    # visualizer per name, so a second Runner of the same config started within the
    # same second (or any two under the configs' fixed visualizer name) would log into
    # the first one's.
    cfg.experiment_name = '{}-{}'.format(
        osp.splitext(osp.basename(config))[0], uuid.uuid4().hex[:8])
    if cfg.get('visualizer'):
        cfg.visualizer.name = cfg.experiment_name
    cfg.merge_from_dict(options)
    return cfg


def tiny_cls_options(image_root: str, work_dir: str) -> dict:
    """What ``--cfg-options`` would set to shrink an mmpretrain classification config:
    ``image_root``'s images (a ``CustomDataset`` folder), batch 2, 2 iterations, no
    validation or checkpoints, seed 0."""
    return {
        'work_dir': work_dir,
        'train_dataloader': dict(
            batch_size=2, num_workers=0, persistent_workers=False,
            dataset=dict(_delete_=True, type='CustomDataset', data_root=image_root,
                         pipeline=[dict(type='LoadImageFromFile'),
                                   dict(type='PackInputs')])),
        'train_cfg': dict(_delete_=True, by_epoch=False, max_iters=2),
        'val_dataloader': None, 'val_cfg': None, 'val_evaluator': None,
        'test_dataloader': None, 'test_cfg': None, 'test_evaluator': None,
        'param_scheduler': None,
        'model.head.num_classes': 2,
        'data_preprocessor.num_classes': 2,
        'default_hooks.checkpoint': None,
        'default_hooks.logger.interval': 1,
        'randomness': dict(seed=0),
        'log_level': 'WARNING',
    }


def round_half_up(value: float) -> int:
    """Eq. 4.1's rounding of a feature-map size (half-way values round up)."""
    return int(math.floor(value + 0.5))


def build_segmentor(cfg: Config, init: bool = True) -> nn.Module:
    """``cfg.model`` built with mmseg's ``MODELS`` from seed 0 (initialised unless
    ``init=False``)."""
    from mmseg.registry import MODELS

    import mmseg_dynopool  # noqa: F401  (registers the DynOPool models)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    if init:
        model.init_weights()
    return model


def unwrap(model: nn.Module) -> nn.Module:
    """The model inside a (MM)DistributedDataParallel wrapper, or ``model`` itself."""
    return model.module if is_model_wrapper(model) else model


def pool_items(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """``(name, resizing layer)`` pairs of the unwrapped model, in registration order."""
    from mmseg_dynopool import resizing_layers
    return resizing_layers(unwrap(model))


class RecorderHook(Hook):
    """Record each resizing layer's alpha and last output size after every training
    iteration.

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


def child_env() -> Dict[str, str]:
    """Environment for child trainings: one thread each (two run side by side on two
    cores, and a fixed thread count keeps CPU reductions bitwise reproducible); no
    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD, so resuming relies on the package's own loader."""
    env = dict(os.environ)
    env.pop('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', None)
    env.update(OMP_NUM_THREADS='1', MKL_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    return env


def start(cmd: List[str], log: str) -> subprocess.Popen:
    """Start ``cmd`` (in the repository, :func:`child_env`) with stdout+stderr going to
    ``log``."""
    with open(log, 'w') as f:
        return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT,
                                env=child_env(), cwd=REPO)


def wait_ok(proc: subprocess.Popen, log: str, timeout: int = 300) -> str:
    """Wait for ``proc``; fail with the end of its log if it did not exit 0. Returns the
    log's text."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    with open(log) as f:
        text = f.read()
    assert proc.returncode == 0, f'{proc.args} exited {proc.returncode}:\n{text[-6000:]}'
    return text
