"""DynOPoolHRNet: structure, sizes, state-dict compatibility (thesis section 5.6)."""
import pytest
import torch
from mmengine.config import Config
from mmseg.models.backbones import HRNet
from mmseg.registry import MODELS

from mmseg_dynopool import DynOPool, resizing_layers
from mmseg_dynopool.models.backbones import DynOPoolHRNet

from ..conftest import SYNTH_DP_CFG, tiny_hrnet_extra

EXTRA = tiny_hrnet_extra(stage3_modules=2)


def _pair(**kwargs):
    torch.manual_seed(0)
    dyn = DynOPoolHRNet(EXTRA, **kwargs)
    human = HRNet(EXTRA)
    human.eval()
    return dyn.eval(), human


def test_five_shared_pools_and_no_strided_conv_left():
    dyn, _ = _pair()
    pools = resizing_layers(dyn)
    assert [n for n, _ in pools] == [f'dynopool_{lvl}' for lvl in
                                     ('stem', 'stream1', 'stream2', 'stream3', 'stream4')]
    strided = [n for n, m in dyn.named_modules()
               if isinstance(m, torch.nn.Conv2d) and m.stride != (1, 1)]
    assert strided == []
    # Every path into stream 3 (transition2 and the fuse chains ending there) uses the
    # stream-3 instance.
    users = {}
    for name, m in dyn.named_modules():
        for hook in m._forward_pre_hooks.values():
            if hasattr(hook, 'pool'):
                users.setdefault(id(hook.pool), []).append(name)
    stream3 = dyn.dynopool_stream3
    assert {'transition2.2.0.0', 'stage3.0.fuse_layers.2.0.1.0',
            'stage3.0.fuse_layers.2.1.0.0'} <= set(users[id(stream3)])
    assert len(users) == 5


@pytest.mark.parametrize('shape', [(64, 64), (333, 517), (97, 61), (33, 35)])
def test_stream_sizes_consistent_on_odd_inputs(shape):
    dyn, _ = _pair(init_ratios=[0.5, (0.6, 0.45), 0.5, 0.7, 0.4])
    outs = dyn(torch.randn(1, 3, *shape))
    sizes = dyn.feature_sizes()
    for i, out in enumerate(outs):
        assert tuple(out.shape[2:]) == sizes[f'stream{i + 1}']
    # Each level's size follows from the previous one by its own ratio.
    size = torch.tensor(shape, dtype=torch.float32)
    for level, pool in dyn.pools.items():
        size = torch.floor(torch.clamp(size * pool.ratio, min=1.5) + 0.5)
        assert sizes[level] == tuple(int(v) for v in size), level


def test_initial_sizes_equal_mmseg_hrnet_on_even_inputs():
    dyn, human = _pair()
    x = torch.randn(2, 3, 96, 128)
    for a, b in zip(dyn(x), human(x)):
        assert a.shape == b.shape


def test_state_dict_keys_match_mmseg_hrnet_except_alphas(tmp_path):
    dyn, human = _pair()
    extra = set(dyn.state_dict()) - set(human.state_dict())
    assert extra == {f'dynopool_{lvl}.alpha' for lvl in
                     ('stem', 'stream1', 'stream2', 'stream3', 'stream4')}
    assert set(human.state_dict()) <= set(dyn.state_dict())
    # An mmseg HRNet checkpoint loads through init_cfg with only the alphas missing.
    ckpt = tmp_path / 'hrnet.pth'
    torch.save({'state_dict': human.state_dict()}, ckpt)
    loaded = DynOPoolHRNet(EXTRA, init_cfg=dict(type='Pretrained', checkpoint=str(ckpt)))
    loaded.init_weights()
    for k, v in human.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    assert torch.allclose(loaded.dynopool_stem.alpha, torch.tensor([2.0, 2.0]))


def test_fuse_upsampling_resizes_to_exact_target_size():
    dyn, _ = _pair(init_ratios=[0.5, 0.5, 0.37, 0.61, 0.45])
    outs = dyn(torch.randn(1, 3, 90, 70))
    assert len({tuple(o.shape[2:]) for o in outs}) == 4  # four distinct, consistent sizes


def test_registered_and_builds_from_mmseg_registry():
    model = MODELS.build(dict(type='DynOPoolHRNet', extra=EXTRA, init_ratios=0.25,
                              pool_cfg=dict(aggregation='avg')))
    assert all(p.aggregation == 'avg' for _, p in resizing_layers(model))
    assert torch.allclose(model.dynopool_stream2.ratio, torch.tensor([0.25, 0.25]))


@pytest.mark.parametrize('bad', [0, -1.0, [0.5, 0.5, 0.5], float('nan')])
def test_bad_init_ratios(bad):
    with pytest.raises(ValueError, match='init_ratio'):
        DynOPoolHRNet(EXTRA, init_ratios=bad)


def test_frozen_stem_freezes_its_pools():
    dyn = DynOPoolHRNet(EXTRA, frozen_stages=1)
    assert not dyn.dynopool_stem.alpha.requires_grad
    assert not dyn.dynopool_stream1.alpha.requires_grad
    assert not dyn.dynopool_stream2.alpha.requires_grad
    assert dyn.dynopool_stream3.alpha.requires_grad


def test_gradient_reaches_every_alpha():
    dyn, _ = _pair(init_ratios=0.45)
    dyn.train()
    outs = dyn(torch.randn(2, 3, 96, 96))  # stream 4 stays above the size bound
    sum((o * torch.randn_like(o)).sum() for o in outs).backward()
    for name, pool in resizing_layers(dyn):
        assert pool.alpha.grad is not None and (pool.alpha.grad != 0).all(), name


def test_deepcopy_keeps_hooks_pointing_at_copied_pools():
    import copy
    dyn, _ = _pair()
    clone = copy.deepcopy(dyn)
    with torch.no_grad():
        clone.dynopool_stem.alpha.fill_(4.0)
    clone(torch.randn(1, 3, 64, 64))
    assert clone.dynopool_stem.last_size == (16, 16)
    dyn(torch.randn(1, 3, 64, 64))
    assert dyn.dynopool_stem.last_size == (32, 32)
    assert isinstance(clone.pools['stem'], DynOPool)


LEVEL_NAMES = [f'dynopool_{lvl}' for lvl in
               ('stem', 'stream1', 'stream2', 'stream3', 'stream4')]


@pytest.mark.parametrize('kind,cfg', [('DynOPool', dict(min_size=1.5)),
                                      ('ShapeAdaptor', dict(r1=0.25)),
                                      ('DiffStride', dict(smoothness=2.0))])
def test_resizing_layer_types(kind, cfg):
    """pool_cfg's type picks the layer: same places, names and initial ratios, the
    state dict's extra keys are the layers' parameters, the GMACs hook finds them."""
    from mmseg_dynopool.engine import DynOPoolGMACsHook
    from mmseg_dynopool.layers import ratio_parameter
    torch.manual_seed(0)
    model = MODELS.build(dict(type='DynOPoolHRNet', extra=EXTRA,
                              pool_cfg=dict(type=kind, **cfg)))
    layers = resizing_layers(model)
    assert [n for n, _ in layers] == LEVEL_NAMES
    assert all(type(m).__name__ == kind for _, m in layers)
    assert list(model.pools.values()) == [m for _, m in layers]
    assert all(tuple(m.init_ratio) == (0.5, 0.5) for _, m in layers)
    param = 'stride' if kind == 'DiffStride' else 'alpha'
    human = HRNet(EXTRA)
    assert set(model.state_dict()) - set(human.state_dict()) == {
        f'{name}.{param}' for name in LEVEL_NAMES}
    assert set(human.state_dict()) <= set(model.state_dict())
    # The hook finds the layers (ops.resizing_layers).
    hook = DynOPoolGMACsHook()
    hook._before_train(type('Runner', (), {'model': model})())
    assert hook._pools == [m for _, m in layers]
    # A training forward: one size per stream, gradient to every layer's parameter.
    model.train()
    outs = model(torch.randn(2, 3, 64, 56))
    sizes = model.feature_sizes()
    for i, out in enumerate(outs):
        assert tuple(out.shape[2:]) == sizes[f'stream{i + 1}']
    if kind == 'DynOPool':
        human.eval()
        model.eval()
        x = torch.randn(1, 3, 64, 56)
        assert [o.shape for o in model(x)] == [o.shape for o in human(x)]
    sum((o * torch.randn_like(o)).sum() for o in outs).backward()
    for name, layer in layers:
        grad = ratio_parameter(layer).grad
        assert grad is not None and grad.abs().sum() > 0, name


def test_resizing_layer_type_by_class_and_frozen_stages():
    from mmseg_dynopool.layers import DiffStride
    model = DynOPoolHRNet(EXTRA, pool_cfg=dict(type=DiffStride), frozen_stages=1)
    assert isinstance(model.dynopool_stem, DiffStride)
    assert not model.dynopool_stem.stride.requires_grad
    assert not model.dynopool_stream2.stride.requires_grad
    assert model.dynopool_stream3.stride.requires_grad


def test_unknown_resizing_layer_type():
    with pytest.raises(ValueError, match=r"unknown resizing layer type 'MaxPool2d'.*"
                       r'DiffStride, DynOPool, ShapeAdaptor'):
        DynOPoolHRNet(EXTRA, pool_cfg=dict(type='MaxPool2d'))
    with pytest.raises(ValueError, match='init_ratio'):
        DynOPoolHRNet(EXTRA, pool_cfg=dict(type='DiffStride', init_ratio=0.5))


@pytest.mark.parametrize('bad', [0, -1, [0.5, 0.5, 0.0, 0.5, 0.5]])
def test_nonpositive_init_ratio_names_the_option(bad):
    cfg = Config.fromfile(SYNTH_DP_CFG)
    backbone = dict(cfg.model.backbone.to_dict(), init_ratios=bad,
                    norm_cfg=dict(type='BN', requires_grad=True))
    with pytest.raises(ValueError, match='init_ratio'):
        MODELS.build(backbone)
