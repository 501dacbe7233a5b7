"""configs/resizing_baselines/: Shape Adaptor and DiffStride next to the DynOPool configs
(CIFAR-100 VGG-16 / ResNet-50 / MobileNetV2, HRNet-W48 PascalVOC). Each config builds,
has only the intended resizing layers (every strided op of the human backbone
converted), a learning-rate key that matches exactly those layers' parameters, the
GMACs hook, and runs a forward pass."""
import glob
import os.path as osp

import pytest
import torch
from mmengine.config import Config

import mmseg_dynopool  # noqa: F401  (registers the modules)
from mmseg_dynopool import resizing_layers
from mmseg_dynopool.models.build import build_model_from_config
from mmseg_dynopool.models.converter import get_conversion

from ..conftest import REPO

CFG_DIR = osp.join(REPO, 'configs', 'resizing_baselines')
CONFIGS = sorted(glob.glob(osp.join(CFG_DIR, '*.py')))
KIND = {'shapeadaptor': ('ShapeAdaptor', '.alpha'), 'diffstride': ('DiffStride', '.stride')}


def _kind(name: str):
    key = name[len('fcn_'):].split('-')[0] if name.startswith('fcn_') else \
        name.split('_')[0]
    return KIND[key]


def test_every_network_and_layer_has_a_config():
    names = {osp.basename(p) for p in CONFIGS}
    for kind in KIND:
        for arch in ('vgg16bn-1fc', 'resnet50', 'mobilenet-v2'):
            assert f'{kind}_{arch}_1xb128-250e_cifar100.py' in names
        assert f'fcn_{kind}-hr48_4xb4-40k_voc12aug-480x480.py' in names
        assert f'fcn_{kind}-s-hr48_4xb4-40k_voc12aug-480x480.py' in names  # DP-S's cost
    assert len(names) == 10


@pytest.mark.parametrize('path', CONFIGS, ids=osp.basename)
def test_config_builds_with_the_intended_layers(path):
    name = osp.basename(path)
    kind, key = _kind(name)
    cfg = Config.fromfile(path)
    seg = name.startswith('fcn_')
    assert cfg.default_scope == ('mmseg' if seg else 'mmpretrain')
    assert cfg.custom_imports == dict(imports=['mmseg_dynopool'],
                                      allow_failed_imports=False)
    backbone = cfg.model.backbone
    assert backbone.type == 'DynOPoolBackbone' and backbone.pool_cfg.type == kind
    assert backbone.placement == ('before' if seg else 'after')
    assert cfg.optim_wrapper.paramwise_cfg.custom_keys == {
        key: dict(lr_mult=0.1, decay_mult=0.0)}
    assert [h.type for h in cfg.custom_hooks] == ['DynOPoolGMACsHook']
    if not seg:
        assert cfg.train_cfg.max_epochs == 250
    model = build_model_from_config(cfg)
    layers = resizing_layers(model)
    assert layers and {type(m).__name__ for _, m in layers} == {kind}
    # Every strided op of the human backbone was converted: none left alone.
    conversion = get_conversion(model.backbone)[1]
    assert not conversion.left_alone
    # One layer per resolution level the human backbone reduces to: HRNet's stem (2) +
    # 3 new streams; CIFAR VGG-16's 4 max-poolings, ResNet-50's and MobileNetV2's 3
    # strided stages (their CIFAR stems do not downsample).
    arch = name.split('_')[1]
    assert len(layers) == (5 if seg else {'vgg16bn-1fc': 4, 'resnet50': 3,
                                          'mobilenet-v2': 3}[arch])
    # The learning-rate key matches exactly the layers' own parameters.
    matched = {n for n, _ in model.named_parameters() if key in n}
    assert matched == {f'{n}{key}' for n, _ in layers}
    size = (64, 64) if seg else (32, 32)
    with torch.no_grad():
        out = model(torch.randn(1, 3, *size), mode='tensor')
    out = out[0] if isinstance(out, (list, tuple)) else out
    assert torch.isfinite(out).all()
    assert all(m.last_size is not None for _, m in layers)
