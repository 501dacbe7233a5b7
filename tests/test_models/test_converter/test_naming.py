"""Naming the pools: defaults, ``pool_names``, and bad names failing before any change."""
import copy

import pytest
from torch import nn

from mmseg_dynopool import DynOPool
from mmseg_dynopool.models.converter import convert_to_dynopool, get_conversion

from .tiny_models import ThreeConvs, converted, original


def test_resnet_default_names():
    model, conversion = converted('resnetv1c')
    assert conversion.pool_names == ['dynopool', 'maxpool', 'layer2.0.dynopool',
                                     'layer3.0.dynopool', 'layer4.0.dynopool']
    assert isinstance(model.maxpool, DynOPool)            # Eq. 5.1, in place
    assert [p.parent for p in conversion.pools] == [None, 'dynopool', 'maxpool',
                                                    'layer2.0.dynopool',
                                                    'layer3.0.dynopool']
    assert all(p.size_rule == 'exact' and p.human_ratio == (0.5, 0.5)
               for p in conversion.pools)


def test_pool_names_dict_and_callable():
    model = ThreeConvs()
    conversion = convert_to_dynopool(model, pool_names={'down': 'level2'})
    assert conversion.pool_names == ['level2'] and isinstance(model.level2, DynOPool)
    assert isinstance(model.short, nn.Identity)
    # Registered before the child on the way to its first op: forward order.
    assert list(dict(model.named_children())) == ['stem', 'level2', 'down', 'short',
                                                  'head']
    model = ThreeConvs()
    seen = []
    conversion = convert_to_dynopool(
        model, pool_names=lambda ops: seen.append(ops) or 'pool_' + ops[0])
    assert seen == [['down', 'short']] and conversion.pool_names == ['pool_down']


def test_default_path_avoids_taken_names():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, 2, 1)
            self.dynopool = nn.Identity()  # the default name is taken

        def forward(self, x):
            return self.conv(x)

    model = Net()
    assert convert_to_dynopool(model).pool_names == ['dynopool_1']
    assert isinstance(model.dynopool_1, DynOPool)


def test_bad_names_fail_before_anything_changes():
    orig = original('resnetv1c')
    for names, match in (({'stem.0': 'stem.dynopool'}, 'Sequential'),
                         ({'stem.0': 'nowhere.pool'}, "no module 'nowhere'"),
                         ({'stem.0': 'layer1'}, 'the name is taken'),
                         ({'stem.0': 'a', 'maxpool': 'a'}, 'share the pool name'),
                         ({'layer2.0.conv1': 'a', 'layer2.0.downsample.0': 'b'},
                          'several names'),
                         ({'stem.0': 'stem.0'}, 'does not get the pool')):
        model = copy.deepcopy(orig)
        with pytest.raises(ValueError, match=match):
            convert_to_dynopool(model, pool_names=names)
        assert get_conversion(model)[1] is None
        assert tuple(model.stem[0].stride) == (2, 2)
        assert not any(m._forward_pre_hooks for m in model.modules())
        assert str(model) == str(orig)
