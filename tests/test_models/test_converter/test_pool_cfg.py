"""``pool_cfg``: any registered resizing layer, average pooling levels averaging."""
import pytest
import torch
from mmengine.registry import MODELS as ROOT_MODELS
from torch import nn

from mmseg_dynopool.models.converter import convert_to_dynopool, converted_pools
from mmseg_dynopool.models.converter.pool_cfg import build_pool, pool_config

from .tiny_models import converted, original


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

    model, conversion = converted('resnetv1c',
                                  pool_cfg=dict(type='_NearestResize', scale=2.0))
    pools = [p for _, p in converted_pools(model)]
    assert len(pools) == 5 and all(type(p).__name__ == '_NearestResize' for p in pools)
    assert pools[0].scale == 2.0
    orig = original('resnetv1c')
    x = torch.randn(1, 3, 65, 64)
    with torch.no_grad():
        assert [o.shape for o in model(x)] == [o.shape for o in orig(x)]
    with pytest.raises(ValueError, match='init_ratio'):
        converted('resnetv1c', pool_cfg=dict(type='DynOPool', init_ratio=0.5))


def test_avg_pooling_levels_average():
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.AvgPool2d(2, 2),
                          nn.Conv2d(4, 4, 3, padding=1), nn.MaxPool2d(3, 2, 1))
    conversion = convert_to_dynopool(model, exact_sizes=False)
    assert [p.name for p in conversion.pools] == ['1', '3']
    assert model[1].aggregation == 'avg' and model[3].aggregation == 'max'
    assert [p.size_rule for p in conversion.pools] == ['multiples', 'exact']


def test_build_pool():
    cfg = pool_config(None)
    assert cfg == dict(type='DynOPool')
    avg = build_pool(cfg, (0.5, 0.25), [nn.AvgPool2d(2)])
    assert avg.aggregation == 'avg' and avg.init_ratio == (0.5, 0.25)
    assert build_pool(cfg, (0.5, 0.5), [nn.AvgPool2d(2), nn.Conv2d(1, 1, 1)]
                      ).aggregation == 'max'
    assert build_pool(dict(cfg, aggregation='max'), (0.5, 0.5),
                      [nn.AvgPool2d(2)]).aggregation == 'max'
