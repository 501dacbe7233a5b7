"""convert_to_dynopool on mmseg ResNetV1c, MobileNetV2, HRNet, MixVisionTransformer and
mmpretrain ResNet: sizes at init, one size per level for any ratios, state-dict keys,
checkpoints of the original, what is left alone and why, merging, skipping, freezing.

Models are small variants (depth 18, half width, one block per stage) on small inputs.
Expected values come from the original models themselves (forward hooks, mmengine's
FlopAnalyzer), not from the converter.
"""
import copy

import pytest
import torch
from mmengine.registry import MODELS as ROOT_MODELS
from torch import nn

import mmseg_dynopool  # noqa: F401  (registers DynOPool)
from mmseg_dynopool import DynOPool
from mmseg_dynopool.models.utils import (PoolAfter, PoolBefore, check_level_sizes,
                                         convert_to_dynopool, converted_pools,
                                         get_conversion, resolve_init_ratios)

from ..conftest import module_output_sizes, tiny_hrnet_extra

HRNET_EXTRA = tiny_hrnet_extra()


def _seg(cfg):
    from mmseg.registry import MODELS
    return MODELS.build(cfg)


def _pre(cfg):
    from mmpretrain.registry import MODELS
    return MODELS.build(cfg)


# name -> (builder, number of pools, ops into one shared pool (a sample), left alone)
MODELS = {
    'resnetv1c': (lambda: _seg(dict(type='ResNetV1c', depth=18, base_channels=16,
                                    stem_channels=16)),
                  5, ('layer2.0.conv1', 'layer2.0.downsample.0'), set()),
    'resnetv1c-d8': (lambda: _seg(dict(type='ResNetV1c', depth=50, base_channels=8,
                                       stem_channels=16, strides=(1, 2, 1, 1),
                                       dilations=(1, 1, 2, 4), num_stages=4)),
                     3, ('layer2.0.conv2', 'layer2.0.downsample.0'), set()),
    'mobilenetv2': (lambda: _seg(dict(type='MobileNetV2', widen_factor=0.25)),
                    5, ('layer2.0.conv.1.conv', ), set()),
    'hrnet': (lambda: _seg(dict(type='HRNet', extra=HRNET_EXTRA)),
              5, ('transition2.2.0.0', 'stage3.0.fuse_layers.2.0.1.0',
                  'stage3.0.fuse_layers.2.1.0.0', 'stage4.0.fuse_layers.2.0.1.0'), set()),
    'mit': (lambda: _seg(dict(type='MixVisionTransformer', embed_dims=8,
                              num_layers=[1, 1, 1, 1], num_heads=[1, 1, 1, 1])),
            3, ('layers.1.0.projection', ),
            {'layers.0.0.projection', 'layers.0.1.0.attn.sr', 'layers.1.1.0.attn.sr',
             'layers.2.1.0.attn.sr'}),
    'mmpretrain-resnet': (lambda: _pre(dict(type='ResNet', depth=18, base_channels=16,
                                            stem_channels=16)),
                          5, ('layer3.0.conv1', 'layer3.0.downsample.0'), set()),
}
EVEN_ODD = [(64, 64), (65, 67), (97, 61)]


def _original(name):
    torch.manual_seed(0)
    model = MODELS[name][0]()
    model.eval()
    return model


def _converted(name, **kwargs):
    model = copy.deepcopy(_original(name))
    conversion = convert_to_dynopool(model, **kwargs)
    model.eval()
    return model, conversion


def _module_sizes(model, x):
    """(name, call index) -> spatial size of every module call's (first 4-D) output."""
    outs = []
    sizes = module_output_sizes(model, lambda: outs.extend(model(x)))
    return sizes, [tuple(o.shape) for o in outs]


def _random_ratios(model, seed=0, low=0.3, high=0.8):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, pool in converted_pools(model):
            pool.alpha.copy_(1 / (low + (high - low) * torch.rand(2, generator=gen)))


@pytest.mark.parametrize('placement', ['before', 'after'])
@pytest.mark.parametrize('name', sorted(MODELS))
def test_sizes_at_init_equal_the_originals(name, placement):
    original = _original(name)
    model, conversion = _converted(name, placement=placement)
    _, n_pools, shared, left_alone = MODELS[name]
    assert len(conversion.pools) == n_pools
    assert set(conversion.left_alone) == left_alone
    pool = next(p for p in conversion.pools if shared[0] in p.ops)
    assert set(shared) <= set(pool.ops)   # every path into one level: one pool
    for shape in EVEN_ODD:
        x = torch.randn(1, 3, *shape)
        want, want_out = _module_sizes(original, x)
        got, got_out = _module_sizes(model, x)
        assert got_out == want_out, shape
        if placement == 'before':
            # Every module of the original outputs the original's size (but a fused
            # fixed-factor upsampling, now an nn.Identity before the explicit resize,
            # and the containers ending with it).
            fused = conversion.fused_upsampling
            for key, size in want.items():
                if key in got and not any(f == key[0] or f.startswith(key[0] + '.')
                                          for f in fused):
                    assert got[key] == size, (shape, key)
        # Each pool outputs the size its replaced op had (first call of its first op).
        for p in conversion.pools:
            assert model.get_submodule(p.name).last_size == want[(p.ops[0], 0)], \
                (shape, p.name)
    # No strided conv or max/avg pooling is left among the converted ops.
    for p in conversion.pools:
        for op in p.ops:
            m = model.get_submodule(op)
            assert isinstance(m, (nn.Conv2d, nn.Identity, DynOPool)), op
            if isinstance(m, nn.Conv2d):
                assert tuple(m.stride) == (1, 1), op


@pytest.mark.parametrize('placement', ['before', 'after'])
@pytest.mark.parametrize('name', sorted(MODELS))
def test_random_ratios_keep_one_size_per_level(name, placement):
    model, conversion = _converted(name, placement=placement)
    for seed, shape in enumerate([(72, 80), (67, 93)]):
        _random_ratios(model, seed)
        sizes = check_level_sizes(model, torch.randn(1, 3, *shape))
        # The converted levels really moved away from the human sizes.
        learned = {sizes[lv] for lv in conversion.level_pools if lv in sizes}
        assert len(learned) >= 2
        for lv, pool_name in conversion.level_pools.items():
            if lv in sizes:
                assert model.get_submodule(pool_name).last_size == sizes[lv]


def test_level_check_catches_a_broken_level():
    model, conversion = _converted('resnetv1c', placement='before')
    _random_ratios(model)
    shortcut = model.layer3[0].downsample[0]
    for key, hook in list(shortcut._forward_pre_hooks.items()):
        if isinstance(hook, PoolBefore):
            del shortcut._forward_pre_hooks[key]
    with pytest.raises((AssertionError, RuntimeError)):
        check_level_sizes(model, torch.randn(1, 3, 64, 64))


@pytest.mark.parametrize('name', sorted(MODELS))
def test_keys_are_the_originals_plus_alphas_and_a_checkpoint_loads(name, tmp_path):
    original = _original(name)
    with torch.no_grad():
        for p in original.parameters():
            p.add_(torch.randn_like(p))
    model, conversion = _converted(name)
    keys, original_keys = set(model.state_dict()), set(original.state_dict())
    assert keys - original_keys == {f'{p}.alpha' for p in conversion.pool_names}
    assert original_keys <= keys
    path = tmp_path / 'original.pth'
    torch.save(original.state_dict(), path)
    missing, unexpected = model.load_state_dict(torch.load(path), strict=False)
    assert not unexpected
    assert set(missing) == {f'{p}.alpha' for p in conversion.pool_names}
    state = model.state_dict()
    for k, v in original.state_dict().items():
        assert torch.equal(state[k], v), k
    for _, pool in converted_pools(model):  # alphas keep their initial values
        assert torch.allclose(pool.ratio, torch.tensor(pool.init_ratio))


def test_resnet_structure_and_default_names():
    model, conversion = _converted('resnetv1c')
    assert conversion.pool_names == ['dynopool', 'maxpool', 'layer2.0.dynopool',
                                     'layer3.0.dynopool', 'layer4.0.dynopool']
    assert isinstance(model.maxpool, DynOPool)            # Eq. 5.1, in place
    assert [p.parent for p in conversion.pools] == [None, 'dynopool', 'maxpool',
                                                    'layer2.0.dynopool',
                                                    'layer3.0.dynopool']
    assert all(p.size_rule == 'exact' and p.human_ratio == (0.5, 0.5)
               for p in conversion.pools)
    # Residual and shortcut enter layer2's level through one instance.
    block = model.layer2[0]
    hooks = [h for m in (block.conv1, block.downsample[0])
             for h in m._forward_pre_hooks.values()]
    assert len(hooks) == 2 and hooks[0] is hooks[1]
    assert hooks[0].pool is block.dynopool


def test_hrnet_fuse_upsampling_is_dropped_and_chains_share_stream_pools():
    model, conversion = _converted('hrnet')
    assert conversion.fused_upsampling and all(
        isinstance(model.get_submodule(n), nn.Identity)
        for n in conversion.fused_upsampling)
    streams = conversion.pools[2:]
    # A two-step fuse chain from stream 1 to stream 3: step 1 into stream 2's pool,
    # step 2 into stream 3's.
    assert 'stage4.0.fuse_layers.2.0.0.0' in streams[0].ops
    assert 'stage4.0.fuse_layers.2.0.1.0' in streams[1].ops
    assert [p.parent for p in streams] == [conversion.pools[i].name for i in (1, 2, 3)]


def test_mit_rules_for_patch_embeddings():
    model, conversion = _converted('mit')
    reasons = conversion.left_alone
    assert 'stride-1 copy changes the size' in reasons['layers.0.1.0.attn.sr']
    assert 'multiples' in reasons['layers.0.0.projection']
    # exact_sizes=False converts the stride-4 7x7 patch embedding too: sizes equal on
    # multiples of 4, not when H % 4 == 1.
    loose, loose_conv = _converted('mit', exact_sizes=False)
    assert len(loose_conv.pools) == 4
    assert loose_conv.pools[0].size_rule == 'multiples'
    original = _original('mit')
    for shape, same in (((64, 72), True), ((65, 72), False)):
        x = torch.randn(1, 3, *shape)
        with torch.no_grad():
            assert ([o.shape for o in loose(x)] == [o.shape for o in original(x)]) == same


@pytest.mark.parametrize('placement', ['before', 'after'])
def test_merge_consecutive_gives_one_quarter_stem_pool(placement):
    model, conversion = _converted('mmpretrain-resnet', placement=placement,
                                   merge_consecutive=True, exact_sizes=False)
    stem = conversion.pools[0]
    assert stem.merged and stem.ops == ['conv1', 'maxpool']
    assert stem.human_ratio == (0.25, 0.25) and stem.size_rule == 'multiples'
    assert len(conversion.pools) == 4
    # 'after': the pool takes the max-pooling's place (after conv, BN, ReLU);
    # 'before': it goes in front of the stride-1 conv and the max-pooling goes.
    assert stem.name == ('maxpool' if placement == 'after' else 'dynopool')
    assert isinstance(model.maxpool, DynOPool if placement == 'after' else nn.Identity)
    original = _original('mmpretrain-resnet')
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert [o.shape for o in model(x)] == [o.shape for o in original(x)]
    _random_ratios(model)
    check_level_sizes(model, torch.randn(1, 3, 75, 66))
    # Exact sizes only: the merge is not faithful on every size, so it is not made.
    _, strict = _converted('mmpretrain-resnet', merge_consecutive=True)
    assert len(strict.pools) == 5 and not any(p.merged for p in strict.pools)


def test_skip_leaves_the_whole_level_alone():
    model, conversion = _converted('resnetv1c', skip=('layer3.0.downsample',))
    assert 'layer3.0.dynopool' not in conversion.pool_names
    assert conversion.left_alone['layer3.0.downsample.0'].startswith('skipped')
    assert 'layer3.0.downsample.0' in conversion.left_alone['layer3.0.conv1']
    assert tuple(model.layer3[0].conv1.stride) == (2, 2)
    _random_ratios(model)
    check_level_sizes(model, torch.randn(1, 3, 70, 66))


def test_frozen_stages_freeze_their_pools():
    model = _seg(dict(type='ResNetV1c', depth=18, base_channels=8, stem_channels=8,
                      frozen_stages=1))
    conversion = convert_to_dynopool(model)
    frozen = {p.name: p.frozen for p in conversion.pools}
    assert frozen == {'dynopool': True, 'maxpool': True, 'layer2.0.dynopool': False,
                      'layer3.0.dynopool': False, 'layer4.0.dynopool': False}
    for name, pool in converted_pools(model):
        assert pool.alpha.requires_grad == (not frozen[name])
    model.train()  # mmseg's train() re-freezes the stages; pools stay as they are
    assert not model.maxpool.alpha.requires_grad
    assert model.layer2[0].dynopool.alpha.requires_grad


def test_deepcopy_drives_the_copys_pools():
    model, _ = _converted('resnetv1c')
    twin = copy.deepcopy(model)
    with torch.no_grad():
        twin.layer2[0].dynopool.alpha.fill_(1.0)
        model(torch.randn(1, 3, 64, 64))
        twin(torch.randn(1, 3, 64, 64))
    assert model.layer2[0].dynopool.last_size == (8, 8)
    assert twin.layer2[0].dynopool.last_size == (16, 16)


def test_pool_cfg_builds_any_registered_resizing_layer():
    @ROOT_MODELS.register_module(force=True)
    class _NearestResize(nn.Module):
        """A toy learnable resizing layer with the DynOPool interface."""

        def __init__(self, init_ratio=0.5, scale=1.0):
            super().__init__()
            self.init_ratio = tuple(init_ratio) if isinstance(init_ratio, tuple) else (
                init_ratio, init_ratio)
            self.alpha = nn.Parameter(1 / torch.tensor(self.init_ratio))
            self.scale = scale

        @property
        def ratio(self):
            return 1 / self.alpha.detach()

        def continuous_size(self, in_size):
            return tuple(torch.floor(torch.tensor(float(s)) / a + 0.5)
                         for s, a in zip(in_size, self.alpha.detach()))

        def forward(self, x):
            h, w = (int(v) for v in self.continuous_size(x.shape[-2:]))
            return nn.functional.interpolate(x, size=(h, w), mode='nearest') * self.scale

    model, conversion = _converted('resnetv1c',
                                   pool_cfg=dict(type='_NearestResize', scale=2.0))
    pools = [p for _, p in converted_pools(model)]
    assert len(pools) == 5 and all(type(p).__name__ == '_NearestResize' for p in pools)
    assert pools[0].scale == 2.0
    original = _original('resnetv1c')
    x = torch.randn(1, 3, 65, 64)
    with torch.no_grad():
        assert [o.shape for o in model(x)] == [o.shape for o in original(x)]
    with pytest.raises(ValueError, match='init_ratio'):
        _converted('resnetv1c', pool_cfg=dict(type='DynOPool', init_ratio=0.5))


def test_avg_pooling_levels_average():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AvgPool2d(2, 2),
                          nn.Conv2d(4, 4, 3, padding=1), nn.MaxPool2d(3, 2, 1))
    conversion = convert_to_dynopool(model, exact_sizes=False)
    assert [p.name for p in conversion.pools] == ['1', '3']
    assert model[1].aggregation == 'avg' and model[3].aggregation == 'max'
    assert [p.size_rule for p in conversion.pools] == ['multiples', 'exact']


def test_init_ratios_one_rule():
    names, defaults = ['a', 'b'], [(0.5, 0.5), (0.25, 0.25)]
    assert resolve_init_ratios(None, defaults, names) == defaults
    assert resolve_init_ratios(0.4, defaults, names) == [(0.4, 0.4)] * 2
    # A pair of numbers is (r_h, r_w), also with exactly two pools.
    assert resolve_init_ratios([0.5, 0.3], defaults, names) == [(0.5, 0.3)] * 2
    assert resolve_init_ratios([(0.5, 0.5), 0.3], defaults, names) == [(0.5, 0.5),
                                                                     (0.3, 0.3)]
    assert resolve_init_ratios({'b': (0.2, 0.3)}, defaults, names) == [(0.5, 0.5),
                                                                      (0.2, 0.3)]
    for bad in ([0.5, 0.5, 0.5], {'c': 0.5}, 'x', [0.5, -1]):
        with pytest.raises(ValueError, match='init_ratio'):
            resolve_init_ratios(bad, defaults, names)
    model, conversion = _converted('resnetv1c', init_ratios={'maxpool': (0.6, 0.4)})
    assert model.maxpool.init_ratio == (0.6, 0.4)
    assert conversion.pools[0].init_ratio == (0.5, 0.5)


def test_probe_failure_says_what_to_do():
    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, 2, 1)

        def forward(self, x, y):
            return self.conv(x) + y

    with pytest.raises(RuntimeError, match='probe forward'):
        convert_to_dynopool(TwoInputs())


def test_get_conversion_through_a_parent_module():
    model, conversion = _converted('resnetv1c')
    parent = nn.Sequential(model)
    prefix, found = get_conversion(parent)
    assert prefix == '0' and found is conversion
    assert [n for n, _ in converted_pools(parent)][:2] == ['0.dynopool', '0.maxpool']
    with pytest.raises(ValueError, match='already converted'):
        convert_to_dynopool(model)
    hooks = [h for m in model.modules() for h in m._forward_hooks.values()
             if isinstance(h, PoolAfter)]
    assert hooks == []  # placement='before' uses pre-hooks only


def test_bad_pool_name_fails_before_anything_changes():
    original = _original('resnetv1c')
    model = copy.deepcopy(original)
    with pytest.raises(ValueError, match='Sequential'):
        convert_to_dynopool(model, pool_names={'stem.0': 'stem.dynopool'})
    assert get_conversion(model)[1] is None
    assert tuple(model.stem[0].stride) == (2, 2)
    assert not any(m._forward_pre_hooks for m in model.modules())
    assert str(model) == str(original)


def test_converting_nothing_is_reported(monkeypatch):
    """A pool type whose size rule is not exact converts nothing with exact_sizes=True:
    the model is left unchanged and the converter says why (not silently)."""
    import mmengine.logging
    from mmseg.models.backbones import ResNetV1c

    from mmseg_dynopool.models.utils import convert_to_dynopool
    said = []
    monkeypatch.setattr(mmengine.logging, 'print_log',
                        lambda msg, *a, **k: said.append(msg)
                        if 'convert_to_dynopool' in str(msg) else None)
    model = ResNetV1c(depth=18, num_stages=2, out_indices=(1, ), strides=(1, 2),
                      dilations=(1, 1))
    conversion = convert_to_dynopool(model, pool_cfg=dict(type='ShapeAdaptor'))
    assert conversion.pools == [] and conversion.left_alone
    assert len(said) == 1 and 'no resizing op was converted' in said[0]
    assert 'exact_sizes=False' in said[0]
    converted = convert_to_dynopool(
        ResNetV1c(depth=18, num_stages=2, out_indices=(1, ), strides=(1, 2),
                  dilations=(1, 1)), pool_cfg=dict(type='ShapeAdaptor'),
        exact_sizes=False)
    assert converted.pools and len(said) == 1
