"""Shared fixtures: tiny configs and synthetic data for integration tests."""
import os.path as osp

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
SYNTH_DP_CFG = osp.join(REPO, 'configs', 'synthetic',
                        'fcn_dynopool-hr18tiny_1xb8-600it_synthvoc-96x96.py')
SYNTH_HUMAN_CFG = osp.join(REPO, 'configs', 'synthetic',
                           'fcn_hr18tiny_1xb8-600it_synthvoc-96x96.py')


@pytest.fixture(scope='session')
def voc_root(tmp_path_factory):
    """A small synthetic VOC-layout dataset shared by the integration tests."""
    from mmseg_dynopool.datasets import write_synthetic_voc
    root = str(tmp_path_factory.mktemp('synthvoc') / 'VOC2012')
    write_synthetic_voc(root, num_train=8, num_val=4, size_range=(64, 80), seed=0)
    return root


def tiny_cfg(config: str, voc_root: str, work_dir: str, iters: int = 4, crop: int = 64,
             **overrides):
    """Load ``config`` shrunk for a seconds-long run through the Runner."""
    from mmengine.config import Config
    cfg = Config.fromfile(config)
    cfg.work_dir = work_dir
    cfg.crop_size = (crop, crop)
    cfg.model.data_preprocessor.size = (crop, crop)
    for step in cfg.train_dataloader.dataset.pipeline:
        if step['type'] in ('RandomCrop', 'Pad'):
            step['crop_size' if step['type'] == 'RandomCrop' else 'size'] = (crop, crop)
        if step['type'] == 'RandomResize':
            step['scale'] = (crop + 8, crop + 8)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = voc_root
        cfg[loader].num_workers = 0
        cfg[loader].persistent_workers = False
    cfg.train_dataloader.batch_size = 2
    cfg.train_cfg.max_iters = iters
    cfg.train_cfg.val_interval = iters
    cfg.param_scheduler[0]['end'] = iters
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.interval = iters
    cfg.merge_from_dict(overrides)
    return cfg


def tiny_voc_aug_cfg(config: str, voc_root: str, work_dir: str, iters: int = 2,
                     crop: int = 48, **overrides):
    """Load an mmseg VOC-aug config (``ConcatDataset`` of train + aug) shrunk for a
    seconds-long run through the Runner on :func:`voc_root`-style data written with
    ``with_aug=True``: data root, crop/resize sizes, batch 2, ``iters`` iterations,
    plain BN (no process group on one CPU). Only sizes, paths and the schedule change."""
    from mmengine.config import Config
    cfg = Config.fromfile(config)
    cfg.work_dir = work_dir
    cfg.model.data_preprocessor.size = (crop, crop)
    datasets = list(cfg.train_dataloader.dataset.get('datasets', [])) or [
        cfg.train_dataloader.dataset]
    for ds in datasets + [cfg.val_dataloader.dataset]:
        ds.data_root = voc_root
        for step in ds.pipeline:
            if step['type'] == 'RandomCrop':
                step['crop_size'] = (crop, crop)
            elif step['type'] == 'Pad':
                step['size'] = (crop, crop)
            elif step['type'] in ('RandomResize', 'Resize'):
                step['scale'] = (crop + 16, crop + 16)
    for loader in (cfg.train_dataloader, cfg.val_dataloader):
        loader.num_workers = 0
        loader.persistent_workers = False
    cfg.test_dataloader = cfg.val_dataloader
    cfg.train_dataloader.batch_size = 2
    cfg.train_cfg.max_iters = iters
    cfg.train_cfg.val_interval = iters
    for scheduler in cfg.param_scheduler:
        scheduler['end'] = min(scheduler.get('end', iters), iters)
        scheduler['begin'] = min(scheduler.get('begin', 0), max(iters - 1, 0))
    cfg.default_hooks.checkpoint.interval = iters
    cfg.default_hooks.logger.interval = 1
    cfg.merge_from_dict(overrides)
    return cfg


@pytest.fixture(scope='session')
def main_job_voc_root(tmp_path_factory):
    """The main job's synthetic dataset (120 training images, default sizes)."""
    from mmseg_dynopool.datasets import write_synthetic_voc
    root = str(tmp_path_factory.mktemp('synthvoc_main') / 'VOC2012')
    write_synthetic_voc(root, num_train=120, num_val=4, seed=0)
    return root


# A small DeepLabV3+ (ResNetV1c-18 inside DynOPoolBackbone) whose resizing layers are
# ShapeAdaptor or DiffStride: the DP-S config of configs/dynopool_any/ with pool_cfg
# replaced. ``exact_sizes=False``: these layers' sizes at init follow their own rules.
RESIZING_DP_CFG = osp.join(REPO, 'configs', 'dynopool_any',
                           'deeplabv3plus_dynopool-s-r50-d8_4xb4-20k_voc12aug-512x512.py')


def resizing_layer_cfg(kind: str, out_dir: str) -> str:
    """Write a config file (in ``out_dir``) for the small model with ``kind`` layers."""
    path = osp.join(str(out_dir), f'r18_{kind.lower()}.py')
    with open(path, 'w') as f:
        f.write(f"_base_ = [{RESIZING_DP_CFG!r}]\n"
                "model = dict(\n"
                "    backbone=dict(exact_sizes=False, backbone=dict(depth=18),\n"
                f"                  pool_cfg=dict(_delete_=True, type={kind!r})),\n"
                "    decode_head=dict(in_channels=512, c1_in_channels=64),\n"
                "    auxiliary_head=dict(in_channels=256))\n")
    return path


def load_tool(rel_path: str):
    """Import a script under tools/ (path relative to the repository) as a module, for
    its ``main(argv)``."""
    import importlib.util
    path = osp.join(REPO, rel_path)
    name = 'tool_' + osp.splitext(osp.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_hrnet_extra(stage3_modules: int = 1) -> dict:
    """The ``extra`` of a tiny HRNet (4 branches, widths 4-32, one block per branch)."""
    return dict(
        stage1=dict(num_modules=1, num_branches=1, block='BOTTLENECK', num_blocks=(1, ),
                    num_channels=(8, )),
        stage2=dict(num_modules=1, num_branches=2, block='BASIC', num_blocks=(1, 1),
                    num_channels=(4, 8)),
        stage3=dict(num_modules=stage3_modules, num_branches=3, block='BASIC',
                    num_blocks=(1, 1, 1), num_channels=(4, 8, 16)),
        stage4=dict(num_modules=1, num_branches=4, block='BASIC', num_blocks=(1, 1, 1, 1),
                    num_channels=(4, 8, 16, 32)))


def module_output_sizes(module, run) -> dict:
    """``(name, call index) -> (H, W)`` of the first 4-D output of every call of every
    submodule of ``module`` while ``run()`` executes (under no_grad)."""
    import torch
    sizes, counts, handles = {}, {}, []
    for name, m in module.named_modules():
        def hook(mod, args, out, name=name):
            k = counts.get(name, 0)
            counts[name] = k + 1
            outs = out if isinstance(out, (tuple, list)) else [out]
            t = next((o for o in outs if isinstance(o, torch.Tensor) and o.dim() == 4),
                     None)
            if t is not None:
                sizes[(name, k)] = tuple(t.shape[-2:])
        handles.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            run()
    finally:
        for h in handles:
            h.remove()
    return sizes


def cuda_sync_messages(step) -> list:
    """Run ``step()`` under ``torch.cuda.set_sync_debug_mode('warn')`` and return the
    messages of the device synchronisations it made (CUDA only)."""
    import warnings

    import torch
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        torch.cuda.set_sync_debug_mode('warn')
        try:
            step()
        finally:
            torch.cuda.set_sync_debug_mode('default')
    return [str(w.message) for w in caught if 'synchroniz' in str(w.message)]


@pytest.fixture(autouse=True)
def _isolate_default_scope():
    """Start every test without a default scope, and restore the previous state after.

    A Runner (or ``init_default_scope``) in one test leaves its scope as mmengine's
    current default scope, and mmengine then looks every registry's names up in that
    scope's registry first: an mmpretrain backbone is not found through mmseg's
    registry and vice versa, so tests would depend on the order they run in. Without a
    default scope each registry resolves its own names (and its parents').
    """
    from mmengine.registry import DefaultScope
    saved = DefaultScope._instance_dict.copy()
    DefaultScope._instance_dict.clear()
    yield
    DefaultScope._instance_dict.clear()
    DefaultScope._instance_dict.update(saved)
