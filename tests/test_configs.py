"""Every shipped segmentation config loads and builds; a paper config trains unchanged."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS

from mmseg_dynopool import dynopool_layers
from mmseg_dynopool.models.backbones import DynOPoolHRNet

from .conftest import REPO

SEG_CONFIGS = sorted(glob.glob(osp.join(REPO, 'configs', 'dynopool_hrnet', '*.py')) +
                     glob.glob(osp.join(REPO, 'configs', 'synthetic', '*.py')))


@pytest.mark.parametrize('path', SEG_CONFIGS, ids=osp.basename)
def test_config_builds(path):
    init_default_scope('mmseg')
    cfg = Config.fromfile(path)
    model = MODELS.build(cfg.model)
    dynopool = 'dynopool' in osp.basename(path)
    assert isinstance(model.backbone, DynOPoolHRNet) == dynopool
    if dynopool:
        assert len(dynopool_layers(model)) == 5
        hooks = [h for h in cfg.custom_hooks if h['type'] == 'DynOPoolGMACsHook']
        assert len(hooks) == 1
        assert '.alpha' in cfg.optim_wrapper.paramwise_cfg.custom_keys
        if '-s-' in osp.basename(path):
            assert hooks[0]['loss_weight'] > 0      # DynOPool-S restrains GMACs
        elif '-b-' in osp.basename(path):
            assert hooks[0]['loss_weight'] == 0     # DynOPool-B: accuracy first
    assert cfg.model.get('pretrained') is None      # nothing is downloaded


def test_thesis_input_size_gives_table_5_4_sizes_and_gmacs():
    """FCN-HRNetV2-W48 at 480x480: stem 240x240 ... stream 4 15x15, ~82.55 GMACs."""
    from mmseg_dynopool.analysis import count_gmacs
    init_default_scope('mmseg')
    cfg = Config.fromfile(osp.join(
        REPO, 'configs/dynopool_hrnet/fcn_dynopool-s-hr48_4xb4-40k_voc12aug-480x480.py'))
    assert tuple(cfg.crop_size) == (480, 480)
    cfg.model.backbone.norm_cfg = dict(type='BN', requires_grad=True)
    cfg.model.decode_head.norm_cfg = dict(type='BN', requires_grad=True)
    model = MODELS.build(cfg.model)
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, 480, 480))
    sizes = [p.last_size for _, p in dynopool_layers(model)]
    assert sizes == [(240, 240), (120, 120), (60, 60), (30, 30), (15, 15)]
    assert count_gmacs(model, (480, 480)) == pytest.approx(82.55, rel=0.01)


@pytest.mark.slow
def test_paper_config_trains_unchanged_on_voc_aug_layout(tmp_path):
    """The DynOPool-S HRNet-W18 VOC-aug config through the Runner on synthetic data in the
    real voc12aug layout; only data root, crop size and schedule are shrunk."""
    from mmengine.runner import Runner

    from mmseg_dynopool.datasets import write_synthetic_voc
    root = str(tmp_path / 'VOC2012')
    write_synthetic_voc(root, num_train=4, num_val=2, size_range=(64, 72), with_aug=True)
    cfg = Config.fromfile(osp.join(
        REPO, 'configs/dynopool_hrnet/fcn_dynopool-s-hr18_4xb4-40k_voc12aug-512x512.py'))
    crop = (48, 48)
    cfg.work_dir = str(tmp_path / 'work')
    cfg.model.data_preprocessor.size = crop
    cfg.model.backbone.norm_cfg = dict(type='BN', requires_grad=True)
    cfg.model.decode_head.norm_cfg = dict(type='BN', requires_grad=True)
    for ds in cfg.train_dataloader.dataset.datasets + [cfg.val_dataloader.dataset]:
        ds.data_root = root
        for step in ds.pipeline:
            if step['type'] == 'RandomCrop':
                step['crop_size'] = crop
            elif step['type'] == 'Pad':
                step['size'] = crop
            elif step['type'] in ('RandomResize', 'Resize'):
                step['scale'] = (64, 64)
    for loader in (cfg.train_dataloader, cfg.val_dataloader):
        loader.num_workers = 0
        loader.persistent_workers = False
    cfg.test_dataloader = cfg.val_dataloader
    cfg.train_dataloader.batch_size = 2
    cfg.train_cfg.max_iters = 2
    cfg.train_cfg.val_interval = 2
    cfg.default_hooks.checkpoint.interval = 2
    cfg.default_hooks.logger.interval = 1
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert 'mIoU' in runner.message_hub.log_scalars or \
        'val/mIoU' in runner.message_hub.log_scalars
    assert runner.message_hub.get_scalar('train/loss_gmacs').current() > 0
