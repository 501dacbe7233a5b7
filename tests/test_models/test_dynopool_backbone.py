"""DynOPoolBackbone: registration in mmseg and mmpretrain, init_cfg / pretrained of the
inner backbone, frozen_stages and norm_eval, and the package's tools (GMACs profile,
report, freeze + ONNX) on a converted model."""
import json
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS as SEG_MODELS
from torch import nn

import mmseg_dynopool  # noqa: F401  (registers the modules)
from mmseg_dynopool import resizing_layers
from mmseg_dynopool.models.converter import (check_level_sizes, converted_pools,
                                             get_conversion)

from ..conftest import REPO, load_tool

SMALL_R18 = dict(type='ResNetV1c', depth=18, base_channels=8, stem_channels=16)
DP_CFG = osp.join(REPO, 'configs', 'dynopool_any',
                  'deeplabv3plus_dynopool-s-r50-d8_4xb4-20k_voc12aug-512x512.py')
# Shrink the DP-S DeepLabV3+ config to a ResNetV1c-18 (heads' channels to match).
R18_OPTIONS = {'model.backbone.backbone.depth': 18,
               'model.decode_head.in_channels': 512,
               'model.decode_head.c1_in_channels': 64,
               'model.auxiliary_head.in_channels': 256}




def _random_ratios(model, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, pool in converted_pools(model):
            pool.alpha.copy_(1 / (0.35 + 0.4 * torch.rand(2, generator=gen)))


def test_registered_in_mmseg_and_mmpretrain():
    from mmpretrain.registry import MODELS as PRETRAIN_MODELS
    seg = SEG_MODELS.build(dict(type='DynOPoolBackbone', backbone=SMALL_R18))
    assert type(seg).__name__ == 'ResNetV1c'          # the inner backbone itself
    assert len(get_conversion(seg)[1].pools) == 5
    cls = PRETRAIN_MODELS.build(dict(type='DynOPoolBackbone', placement='after',
                                     backbone=dict(type='ResNet', depth=18)))
    assert type(cls).__name__ == 'ResNet'
    assert get_conversion(cls)[1].placement == 'after'
    # A scoped inner type works from the other registry.
    cross = SEG_MODELS.build(dict(type='DynOPoolBackbone',
                                  backbone=dict(type='mmpretrain.ResNet', depth=18)))
    assert type(cross).__name__ == 'ResNet'
    with pytest.raises(ValueError, match='placement'):
        SEG_MODELS.build(dict(type='DynOPoolBackbone', backbone=SMALL_R18,
                              placement='inside'))


def test_misspelt_argument_names_the_wrapper_and_its_arguments():
    """Not "convert_to_dynopool() got an unexpected keyword argument": the config names
    DynOPoolBackbone, so the error does, with the valid arguments and a suggestion."""
    with pytest.raises(TypeError) as info:
        SEG_MODELS.build(dict(type='DynOPoolBackbone', backbone=SMALL_R18,
                              placment='after'))
    msg = str(info.value)
    assert 'DynOPoolBackbone' in msg and "'placment'" in msg
    assert "did you mean 'placement'" in msg
    assert 'convert_to_dynopool' not in msg
    valid = msg.split('valid arguments:')[1]
    for name in ('backbone', 'pretrained', 'init_cfg', 'placement', 'init_ratios',
                 'pool_cfg', 'skip', 'probe_size'):
        assert name in valid


@pytest.mark.parametrize('how', ['inner_init_cfg', 'init_cfg', 'pretrained'])
def test_inner_checkpoint_loads_through_init_weights(how, tmp_path):
    human = SEG_MODELS.build(SMALL_R18)
    with torch.no_grad():
        for p in human.parameters():
            p.normal_()
    path = str(tmp_path / 'r18.pth')
    torch.save({'state_dict': human.state_dict()}, path)
    pretrained = dict(type='Pretrained', checkpoint=path)
    cfg = dict(type='DynOPoolBackbone', backbone=dict(SMALL_R18))
    if how == 'inner_init_cfg':
        cfg['backbone']['init_cfg'] = pretrained
    elif how == 'init_cfg':
        cfg['init_cfg'] = pretrained
    else:
        cfg['pretrained'] = path
    model = SEG_MODELS.build(cfg)
    model.init_weights()
    state = model.state_dict()
    for k, v in human.state_dict().items():
        assert torch.equal(state[k], v), k
    for _, pool in converted_pools(model):
        assert torch.allclose(pool.ratio, torch.tensor(pool.init_ratio))


def test_frozen_stages_and_norm_eval():
    model = SEG_MODELS.build(dict(type='DynOPoolBackbone', backbone=dict(
        SMALL_R18, frozen_stages=2, norm_eval=True)))
    model.train()
    trainable = {n: p.alpha.requires_grad for n, p in converted_pools(model)}
    assert trainable == {'dynopool': False, 'maxpool': False, 'layer2.0.dynopool': False,
                         'layer3.0.dynopool': True, 'layer4.0.dynopool': True}
    assert all(not m.training for m in model.modules()
               if isinstance(m, nn.modules.batchnorm._BatchNorm))
    assert model.layer3.training and model.layer3[0].conv1.training
    x = torch.randn(2, 3, 64, 64)
    sum(o.sum() for o in model(x)).backward()
    assert model.layer3[0].dynopool.alpha.grad is not None
    assert model.maxpool.alpha.grad is None


def test_segmentor_checkpoint_of_the_human_model_loads():
    from mmengine.config import Config
    human_cfg = Config.fromfile(osp.join(
        REPO, 'configs', 'dynopool_any',
        'deeplabv3plus_r50-d8_4xb4-20k_voc12aug-512x512.py'))
    dp_cfg = Config.fromfile(DP_CFG)
    for cfg in (human_cfg, dp_cfg):
        cfg.merge_from_dict({k.replace('backbone.backbone', 'backbone')
                             if cfg is human_cfg else k: v
                             for k, v in R18_OPTIONS.items()})
    init_default_scope('mmseg')
    human, model = SEG_MODELS.build(human_cfg.model), SEG_MODELS.build(dp_cfg.model)
    missing, unexpected = model.load_state_dict(human.state_dict(), strict=False)
    assert not unexpected
    assert sorted(missing) == sorted(f'{n}.alpha' for n, _ in converted_pools(model))


def test_gmacs_profile_report_and_freeze_on_a_converted_model(tmp_path):
    from mmseg_dynopool.models.cost import count_gmacs, profile_gmacs
    from mmseg_dynopool.analysis.report import build_model_from_config
    from mmseg_dynopool.deploy import export_onnx, freeze_dynopool, run_onnx
    shape = (64, 72)
    model = build_model_from_config(DP_CFG, cfg_options=R18_OPTIONS)
    assert [n for n, _ in resizing_layers(model)] == [
        'backbone.dynopool', 'backbone.maxpool', 'backbone.layer2.0.dynopool']
    # The GMACs hook's profile (Eq. 4.7) on the converted model: exact at the initial
    # state; at other ratios within 1e-4 (the profile books ASPP's global average
    # pooling, which FlopAnalyzer counts on its input, as fixed cost: ~3e-6 here).
    # The profile includes the pools' own cost (one rule with the report), so it is
    # compared with the report's total.
    from mmseg_dynopool.analysis import model_report
    profile = profile_gmacs(model, shape)
    assert profile.total_gmacs == pytest.approx(model_report(model, shape)['gmacs'],
                                                rel=1e-6)
    assert profile.total_gmacs > count_gmacs(model, shape)  # the pools' own cost
    _random_ratios(model)
    pools = [m for _, m in resizing_layers(model)]
    assert float(profile.estimate(pools)) == pytest.approx(
        model_report(model, shape)['gmacs'], rel=1e-4)
    # Report tool.
    ckpt = str(tmp_path / 'dp.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), ckpt)
    out = tmp_path / 'report.json'
    argv = [DP_CFG, '--checkpoint', ckpt, '--shape', *map(str, shape), '--json', str(out),
            '--cfg-options'] + [f'{k}={v}' for k, v in R18_OPTIONS.items()]
    assert load_tool('tools/analysis/dynopool_report.py').main(argv) == 0
    report = json.loads(out.read_text())
    with torch.no_grad():
        model(torch.zeros(1, 3, *shape))
    assert {layer['name']: tuple(layer['size']) for layer in report['layers']} == {
        n: p.last_size for n, p in resizing_layers(model)}
    # Freeze + ONNX, in-process and through the tool.
    frozen = freeze_dynopool(model, shape)
    assert not resizing_layers(frozen)
    x = torch.randn(1, 3, *shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref, got = model(x, mode='tensor'), frozen(x, mode='tensor')
    assert (ref - got).abs().max().item() <= 1e-5
    onnx_path = export_onnx(frozen, shape, str(tmp_path / 'dp.onnx'))
    assert np.abs(run_onnx(onnx_path, x)[0] - ref.numpy()).max() <= 1e-4
    argv = [DP_CFG, ckpt, '--shape', *map(str, shape), '--out', str(tmp_path / 'frozen'),
            '--cfg-options'] + [f'{k}={v}' for k, v in R18_OPTIONS.items()]
    assert load_tool('tools/deployment/freeze_dynopool.py').main(argv) == 0


def test_level_sizes_hold_inside_a_segmentor():
    from mmseg_dynopool.analysis.report import build_model_from_config
    model = build_model_from_config(DP_CFG, cfg_options=R18_OPTIONS)
    _random_ratios(model, seed=3)
    sizes = check_level_sizes(model, torch.randn(1, 3, 70, 58))
    pools = {n: p.last_size for n, p in converted_pools(model)}
    assert set(pools.values()) <= set(sizes.values())


def test_dynopool_hrnet_is_mmseg_hrnet_through_the_converter():
    """DynOPoolHRNet == DynOPoolBackbone(HRNet) with its pool names: same pools, keys
    and outputs for the same weights and ratios."""
    from mmseg_dynopool.models.backbones import DynOPoolHRNet
    from mmseg_dynopool.models.backbones.dynopool_hrnet import _FIRST_OP, LEVELS

    from .test_dynopool_hrnet import EXTRA
    torch.manual_seed(0)
    ours = DynOPoolHRNet(EXTRA)
    wrapped = SEG_MODELS.build(dict(
        type='DynOPoolBackbone', backbone=dict(type='HRNet', extra=EXTRA),
        pool_names={op: f'dynopool_{lvl}' for op, lvl in zip(_FIRST_OP, LEVELS)}))
    assert get_conversion(wrapped)[1].pools == get_conversion(ours)[1].pools
    _random_ratios(ours, seed=5)
    wrapped.load_state_dict(ours.state_dict())
    ours.eval()
    wrapped.eval()
    x = torch.randn(1, 3, 70, 54)
    with torch.no_grad():
        for a, b in zip(ours(x), wrapped(x)):
            assert torch.equal(a, b)
