"""Merging two consecutive resizing ops into one pool (thesis 5.2.1: ResNet's 0.25
stem pool)."""
import pytest
import torch
from torch import nn

from mmseg_dynopool import DynOPool
from mmseg_dynopool.models.converter import check_level_sizes, convert_to_dynopool
from mmseg_dynopool.models.converter.merge import is_transient
from mmseg_dynopool.models.converter.trace import trace_forward

from .tiny_models import converted, original, random_ratios


@pytest.mark.parametrize('placement', ['before', 'after'])
def test_merge_consecutive_gives_one_quarter_stem_pool(placement):
    model, conversion = converted('mmpretrain-resnet', placement=placement,
                                  merge_consecutive=True, exact_sizes=False)
    stem = conversion.pools[0]
    assert stem.merged and stem.ops == ['conv1', 'maxpool']
    assert stem.human_ratio == (0.25, 0.25) and stem.size_rule == 'multiples'
    assert len(conversion.pools) == 4
    # 'after': the pool takes the max-pooling's place (after conv, BN, ReLU);
    # 'before': it goes in front of the stride-1 conv and the max-pooling goes.
    assert stem.name == ('maxpool' if placement == 'after' else 'dynopool')
    assert isinstance(model.maxpool, DynOPool if placement == 'after' else nn.Identity)
    orig = original('mmpretrain-resnet')
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert [o.shape for o in model(x)] == [o.shape for o in orig(x)]
    random_ratios(model)
    check_level_sizes(model, torch.randn(1, 3, 75, 66))
    # Exact sizes only: the merge is not faithful on every size, so it is not made.
    _, strict = converted('mmpretrain-resnet', merge_consecutive=True)
    assert len(strict.pools) == 5 and not any(p.merged for p in strict.pools)


def test_only_a_transient_level_merges():
    class Net(nn.Module):
        def __init__(self, tap):
            super().__init__()
            self.a = nn.Conv2d(3, 4, 3, 2, 1)
            self.bn, self.relu = nn.BatchNorm2d(4), nn.ReLU()
            self.b = nn.MaxPool2d(2, 2)
            self.tap = tap

        def forward(self, x):
            y = self.relu(self.bn(self.a(x)))
            return (self.b(y), self.tap(y)) if self.tap else self.b(y)

    for tap, transient in ((None, True), (nn.Conv2d(4, 4, 1), False)):
        model = Net(tap)
        trace = trace_forward(model, (32, 32), 3)
        level = trace.level(trace.calls_by_name['a'][0].outputs[0])
        assert is_transient(trace, level, {'a', 'b'}) == transient
        conversion = convert_to_dynopool(model, merge_consecutive=True,
                                         exact_sizes=False)
        assert [p.merged for p in conversion.pools] == ([True] if transient else
                                                        [False, False])
