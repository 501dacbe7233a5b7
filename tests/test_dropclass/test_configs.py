"""The DropClass configs (configs/dropclass/, docs/dropclass.md): they inherit mmseg's
recipes, differ from their baselines only in the head, and build what mmseg's
tools/train.py builds."""
import glob
import os.path as osp

from mmengine.config import Config

import mmseg_dynopool  # noqa: F401  (registers the modules)
from mmseg.registry import MODELS

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CFG_DIR = osp.join(REPO, 'configs', 'dropclass')


def test_configs_inherit_mmseg_and_follow_the_recipes():
    files = sorted(glob.glob(osp.join(CFG_DIR, '*.py')))
    assert len(files) >= 5
    cfgs = {osp.basename(f): Config.fromfile(f) for f in files}
    for name, cfg in cfgs.items():
        assert cfg.custom_imports['imports'] == ['mmseg_dynopool'], name
        assert cfg.model.pretrained is None, name
        is_drop = 'dropclass' in name
        assert (cfg.model.decode_head.type == 'DropClassFCNHead') == is_drop, name
    base = cfgs['fcn_hr18s_4xb12-59k_cityscapes-512x1024.py']
    drop = cfgs['fcn-dropclass_hr18s_4xb12-59k_cityscapes-512x1024.py']
    for cfg in (base, drop):
        assert cfg.train_dataloader.batch_size == 12
        assert cfg.optim_wrapper.optimizer == dict(type='SGD', lr=0.004, momentum=0.9,
                                                   weight_decay=0.0005)
        assert cfg.param_scheduler[0].power == 0.9
        assert cfg.param_scheduler[0].eta_min == 0.0
        assert cfg.train_cfg.max_iters == 968 * (2975 // 48) == 59048
        assert cfg.param_scheduler[0].end == 59048
        assert cfg.model.backbone.extra.stage4.num_modules == 2  # W18-small
        assert sum(cfg.model.decode_head.in_channels) == 270
        assert cfg.model.decode_head.num_classes == 19
    # only the head differs
    drop_model = drop.model.to_dict()
    drop_model['decode_head']['type'] = 'FCNHead'
    assert drop_model == base.model.to_dict()
    voc = cfgs['fcn-dropclass_hr48_4xb4-40k_voc12aug-512x512.py']
    assert sum(voc.model.decode_head.in_channels) == 720
    assert voc.train_cfg.max_iters == 40000 and voc.train_dataloader.batch_size == 4
    combo = cfgs['fcn-dropclass_dynopool-s-hr48_4xb4-40k_voc12aug-512x512.py']
    assert combo.model.backbone.type == 'DynOPoolHRNet'
    assert '.alpha' in combo.optim_wrapper.paramwise_cfg.custom_keys
    assert [h.type for h in combo.custom_hooks] == ['DynOPoolGMACsHook']
    assert sum(combo.model.decode_head.in_channels) == 720
    # = DynOPool-S with the DropClass head, nothing else changed
    dyno = Config.fromfile(osp.join(REPO, 'configs', 'dynopool_hrnet',
                                    'fcn_dynopool-s-hr48_4xb4-40k_voc12aug-512x512.py'))
    combo_dict = combo.to_dict()
    combo_dict['model']['decode_head']['type'] = 'FCNHead'
    assert combo_dict == dyno.to_dict()


def test_real_configs_build_models_hooks_and_optimizers():
    """What mmseg's tools/train.py builds from them before it touches data."""
    from mmengine.model import revert_sync_batchnorm
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import HOOKS
    for name in ('fcn-dropclass_hr18s_4xb12-59k_cityscapes-512x1024.py',
                 'fcn-dropclass_dynopool-s-hr48_4xb4-40k_voc12aug-512x512.py'):
        cfg = Config.fromfile(osp.join(CFG_DIR, name))
        model = revert_sync_batchnorm(MODELS.build(cfg.model))
        assert type(model.decode_head).__name__ == 'DropClassFCNHead'
        hooks = [HOOKS.build(h) for h in cfg.get('custom_hooks', [])]
        optim = build_optim_wrapper(model, cfg.optim_wrapper)
        lrs = {g['lr'] for g in optim.optimizer.param_groups}
        assert max(lrs) == cfg.optim_wrapper.optimizer.lr
        if 'dynopool' in name:
            assert [type(h).__name__ for h in hooks] == ['DynOPoolGMACsHook']
            assert len(lrs) == 2  # alpha has its own learning rate
