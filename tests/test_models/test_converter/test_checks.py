"""Checks: the converter's argument errors, the warning when nothing converts, and the
runtime check that every resolution level has one size."""
import copy

import pytest
import torch
from torch import nn

from mmseg_dynopool.models.converter import (PoolBefore, check_level_sizes,
                                             convert_to_dynopool, converted_pools,
                                             get_conversion)
from mmseg_dynopool.models.converter.checks import check_arguments

from .tiny_models import ThreeConvs, converted, random_ratios


def test_bad_arguments_are_named():
    model = ThreeConvs()
    with pytest.raises(ValueError, match='placement'):
        convert_to_dynopool(model, placement='inside')
    with pytest.raises(ValueError, match='init_ratio'):
        convert_to_dynopool(model, pool_cfg=dict(type='DynOPool', init_ratio=0.5))
    assert get_conversion(model)[1] is None
    assert check_arguments(model, 'after', None, 'stem') == (('stem', ),
                                                             dict(type='DynOPool'))
    convert_to_dynopool(model)
    with pytest.raises(ValueError, match='already converted'):
        convert_to_dynopool(model)


def test_a_toy_net_keeps_one_size_per_level():
    model = ThreeConvs()
    conversion = convert_to_dynopool(model)
    with torch.no_grad():
        model.short.alpha.fill_(1 / 0.3)
    sizes = check_level_sizes(model, torch.randn(1, 3, 40, 50))
    # The strided conv and the pooling share the pool: one learned size, 0.3 x.
    assert sizes[next(iter(conversion.level_pools))] == (12, 15)
    assert model.short.last_size == (12, 15)


def test_a_broken_level_is_caught():
    model = ThreeConvs()
    convert_to_dynopool(model)
    with torch.no_grad():
        model.short.alpha.fill_(1 / 0.3)
    # A module of the level now outputs another size (as if a pool were missing there).
    model.head.register_forward_hook(
        lambda m, args, out: nn.functional.interpolate(out, scale_factor=2.0))
    with pytest.raises(AssertionError, match='several sizes'):
        check_level_sizes(model, torch.randn(1, 3, 40, 50))
    with pytest.raises(ValueError, match='no converted module'):
        check_level_sizes(ThreeConvs(), torch.randn(1, 3, 8, 8))


def test_level_check_catches_a_broken_resnet_level():
    model, _ = converted('resnetv1c', placement='before')
    random_ratios(model)
    shortcut = model.layer3[0].downsample[0]
    for key, hook in list(shortcut._forward_pre_hooks.items()):
        if isinstance(hook, PoolBefore):
            del shortcut._forward_pre_hooks[key]
    with pytest.raises((AssertionError, RuntimeError)):
        check_level_sizes(model, torch.randn(1, 3, 64, 64))


def test_check_through_a_parent_module():
    model, conversion = converted('resnetv1c', placement='after')
    random_ratios(model, seed=3)
    sizes = check_level_sizes(nn.Sequential(model), torch.randn(1, 3, 61, 70))
    for level, name in conversion.level_pools.items():
        assert sizes[level] == model.get_submodule(name).last_size
    learned = {sizes[lv] for lv in conversion.level_pools}
    assert len(learned) == len(converted_pools(model))


def test_converting_nothing_is_reported(monkeypatch):
    """A pool type whose size rule is not exact converts nothing with exact_sizes=True:
    the model is left unchanged and the converter says why (not silently)."""
    import mmengine.logging
    from mmseg.models.backbones import ResNetV1c

    said = []
    monkeypatch.setattr(mmengine.logging, 'print_log',
                        lambda msg, *a, **k: said.append(msg)
                        if 'convert_to_dynopool' in str(msg) else None)
    model = ResNetV1c(depth=18, num_stages=2, out_indices=(1, ), strides=(1, 2),
                      dilations=(1, 1))
    before = copy.deepcopy(model)
    conversion = convert_to_dynopool(model, pool_cfg=dict(type='ShapeAdaptor'))
    assert conversion.pools == [] and conversion.left_alone
    assert str(model) == str(before)
    assert len(said) == 1 and 'no resizing op was converted' in said[0]
    assert 'exact_sizes=False' in said[0]
    converted_ = convert_to_dynopool(
        ResNetV1c(depth=18, num_stages=2, out_indices=(1, ), strides=(1, 2),
                  dilations=(1, 1)), pool_cfg=dict(type='ShapeAdaptor'),
        exact_sizes=False)
    assert converted_.pools and len(said) == 1
