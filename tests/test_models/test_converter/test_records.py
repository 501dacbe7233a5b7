"""The record of a conversion and how to find it on a model."""
from torch import nn

from mmseg_dynopool.models.converter import converted_pools, get_conversion

from .tiny_models import converted


def test_get_conversion_through_a_parent_module():
    model, conversion = converted('resnetv1c')
    parent = nn.Sequential(model)
    prefix, found = get_conversion(parent)
    assert prefix == '0' and found is conversion
    assert [n for n, _ in converted_pools(parent)][:2] == ['0.dynopool', '0.maxpool']
    assert get_conversion(nn.Sequential(nn.ReLU())) == ('', None)
    assert converted_pools(nn.ReLU()) == []


def test_record_of_a_pool():
    _, conversion = converted('resnetv1c')
    stem, maxpool = conversion.pools[:2]
    assert stem.ops == ['stem.0'] and stem.in_size == (256, 256)
    assert stem.out_size == (128, 128) and maxpool.out_size == (64, 64)
    assert stem.init_ratio == (0.5, 0.5) and not stem.merged and not stem.frozen
    assert conversion.probe_size == (256, 256) and conversion.placement == 'before'
    assert len(set(conversion.level_pools.values())) == len(conversion.pools)
