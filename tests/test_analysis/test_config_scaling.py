"""Scaling a config for the trade-off sweep (mmseg_dynopool/analysis/config_scaling.py):
the GMACs budget, the evaluation size, mmpretrain pipelines, the curve name. The mmseg
input scaling and the sweep end to end: tests/test_tools/test_tradeoff.py."""
import os.path as osp

import pytest
from mmengine.config import Config

from mmseg_dynopool.analysis.config_scaling import (eval_shape, resizing_method,
                                                    scale_pipelines, set_budget)

from ..conftest import REPO, SYNTH_DP_CFG, SYNTH_HUMAN_CFG

SYNTH_SAS_CFG = osp.join(REPO, 'configs', 'synthetic',
                         'fcn_shapeadaptor-s-hr18tiny_1xb8-600it_synthvoc-96x96.py')


def test_set_budget_puts_an_absolute_target_on_the_gmacs_hook():
    cfg = Config.fromfile(SYNTH_DP_CFG)
    cfg.custom_hooks[0]['target_ratio'] = 0.8  # replaced by the absolute budget
    budget = set_budget(cfg, 0.05)
    hook = budget.custom_hooks[0]
    assert hook['type'] == 'DynOPoolGMACsHook'
    assert hook['target_gmacs'] == 0.05 and 'target_ratio' not in hook
    assert hook['loss_weight'] == 0.2  # the rest of the hook is kept
    assert cfg.custom_hooks[0]['target_ratio'] == 0.8  # the original is untouched
    assert 'target_gmacs' not in cfg.custom_hooks[0]
    with pytest.raises(ValueError, match='no DynOPoolGMACsHook'):
        set_budget(Config.fromfile(SYNTH_HUMAN_CFG), 0.05)


def _cls_cfg(**extra):
    """A minimal mmpretrain-style config (no crop_size, a CenterCrop at test time)."""
    test_pipeline = [dict(type='LoadImageFromFile'), dict(type='ResizeEdge', scale=36),
                     dict(type='CenterCrop', crop_size=32), dict(type='PackInputs')]
    return Config(dict(
        default_scope='mmpretrain', model=dict(type='ImageClassifier'),
        train_dataloader=dict(dataset=dict(type='CIFAR100', pipeline=[
            dict(type='RandomCrop', crop_size=32, padding=4),
            dict(type='RandomFlip', prob=0.5)])),
        test_dataloader=dict(dataset=dict(type='CIFAR100', pipeline=test_pipeline)),
        **extra))


def test_eval_shape_from_crop_preprocessor_or_test_center_crop():
    assert eval_shape(Config.fromfile(SYNTH_HUMAN_CFG)) == [96, 96]
    assert eval_shape(_cls_cfg()) == [32, 32]  # the test pipeline's CenterCrop
    assert eval_shape(_cls_cfg(crop_size=(24, 40))) == [24, 40]
    cfg = _cls_cfg()
    cfg.test_dataloader.dataset.pipeline = []
    with pytest.raises(ValueError, match='cannot tell the evaluation input size'):
        eval_shape(cfg)


def test_scale_pipelines_scales_every_mmpretrain_pipeline():
    """Outside mmseg the test pipeline is scaled like the training one (no labels
    to keep at full resolution)."""
    cfg = _cls_cfg()
    scaled = scale_pipelines(cfg, 1.5)
    train = {s['type']: s for s in scaled.train_dataloader.dataset.pipeline}
    test = {s['type']: s for s in scaled.test_dataloader.dataset.pipeline}
    assert train['RandomCrop']['crop_size'] == 48
    assert train['RandomCrop']['padding'] == 4  # not a size of the image
    assert test['ResizeEdge']['scale'] == 54 and test['CenterCrop']['crop_size'] == 48
    assert eval_shape(scaled) == [48, 48]
    assert 'Resize' not in test  # no extra resize step outside mmseg
    assert cfg.train_dataloader.dataset.pipeline[0]['crop_size'] == 32  # untouched


def test_resizing_method_names_the_layer_type():
    assert resizing_method(Config.fromfile(SYNTH_DP_CFG)) == 'dynopool'
    assert resizing_method(Config.fromfile(SYNTH_SAS_CFG)) == 'shapeadaptor'
    with pytest.raises(ValueError, match='no learnable resizing layer'):
        resizing_method(Config.fromfile(SYNTH_HUMAN_CFG))
