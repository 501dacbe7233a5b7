"""Grouping resizing ops by resolution level (one pool per level) and deciding which
levels are converted."""
import torch
from torch import nn
from torch.nn import functional as F

from mmseg_dynopool.models.converter.find_ops import find_ops
from mmseg_dynopool.models.converter.levels import (group_levels, resolve_levels,
                                                    unify_levels)
from mmseg_dynopool.models.converter.pool_cfg import pool_config
from mmseg_dynopool.models.converter.trace import trace_forward

from .tiny_models import ThreeConvs, converted, original, random_ratios

CFG = pool_config(None)


def _conv(stride: int) -> nn.Conv2d:
    return nn.Conv2d(4, 4, 3, stride=stride, padding=1)


def _levels(model: nn.Module, size=(64, 64), skip=(), exact_sizes=True):
    trace = trace_forward(model, size, 4)
    ops = find_ops(model, trace, skip)
    groups, left_alone = resolve_levels(trace, ops, group_levels(trace, ops),
                                        exact_sizes, CFG)
    return trace, groups, left_alone


def test_ops_into_one_level_share_one_group():
    model = nn.Sequential(nn.Conv2d(4, 3, 1), ThreeConvs())
    trace, groups, left_alone = _levels(model)
    assert [[op.name for op in g.ops] for g in groups] == [['1.down', '1.short']]
    g = groups[0]
    assert g.stride == (2, 2) and g.human_ratio == (0.5, 0.5)
    assert g.parent == trace.level(trace.input) and g.size_rule == 'exact'
    assert left_alone == {}


class TwoInputLevels(nn.Module):
    """Two stride-2 convs into one level from two levels of one size (the second an
    explicit resize of the first): their input levels must be one level."""

    def __init__(self):
        super().__init__()
        self.a, self.b = _conv(2), _conv(2)

    def forward(self, x):
        z = F.interpolate(x, size=x.shape[-2:])
        return self.a(x) + self.b(z)


def test_unify_levels_merges_the_inputs_of_one_stride():
    model = TwoInputLevels()
    trace = trace_forward(model, (32, 32), 4)
    ops = find_ops(model, trace)
    x_level, z_level = (trace.level(trace.calls_by_name[n][0].inputs[0])
                        for n in ('a', 'b'))
    assert x_level != z_level
    unify_levels(trace, ops)
    assert trace.find(x_level) == trace.find(z_level)
    groups = group_levels(trace, ops)
    assert len(groups) == 1 and len(groups[0].ops) == 2


class Skip4(nn.Module):
    """A stride-4 op next to two stride-2 ones: x -a-> y -b-> w, x -c-> w."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = _conv(2), _conv(2), _conv(4)

    def forward(self, x):
        return self.b(self.a(x)) + self.c(x)


def test_an_op_from_further_up_goes_through_the_levels_between():
    trace, groups, left_alone = _levels(Skip4(), size=(37, 45))
    ga, gw = groups
    assert [op.name for op in ga.ops] == ['a']
    assert [op.name for op in gw.ops] == ['b', 'c'] and gw.parent == ga.level
    assert gw.paths == {'c': [ga, gw]}
    assert gw.size_rule == 'exact'      # ceil(ceil(H / 2) / 2) = ceil(H / 4)
    # If a level in between is left alone, so is the level the op enters.
    _, groups, left_alone = _levels(Skip4(), size=(37, 45), skip=('a', ))
    assert groups == []
    assert left_alone['a'] == "skipped (matches 'a')"
    assert 'not linked to it through converted levels' in left_alone['c']
    assert left_alone['b'] == left_alone['c']


def test_exact_sizes_leaves_a_multiples_level_alone():
    model = nn.Sequential(_conv(1), nn.MaxPool2d(2, 2), _conv(1), nn.MaxPool2d(3, 2, 1))
    _, groups, left_alone = _levels(model)
    assert [g.ops[0].name for g in groups] == ['3']
    assert 'multiples' in left_alone['1'] and 'exact_sizes=False' in left_alone['1']
    _, groups, left_alone = _levels(model, exact_sizes=False)
    assert [(g.ops[0].name, g.size_rule) for g in groups] == [('1', 'multiples'),
                                                               ('3', 'exact')]
    assert left_alone == {}


def test_skip_leaves_the_whole_level_alone():
    model, conversion = converted('resnetv1c', skip=('layer3.0.downsample',))
    assert 'layer3.0.dynopool' not in conversion.pool_names
    assert conversion.left_alone['layer3.0.downsample.0'].startswith('skipped')
    assert 'layer3.0.downsample.0' in conversion.left_alone['layer3.0.conv1']
    assert tuple(model.layer3[0].conv1.stride) == (2, 2)
    random_ratios(model)
    from mmseg_dynopool.models.converter import check_level_sizes
    check_level_sizes(model, torch.randn(1, 3, 70, 66))


def test_hrnet_fuse_chains_share_stream_pools():
    """A two-step fuse chain from stream 1 to stream 3: step 1 into stream 2's pool,
    step 2 into stream 3's."""
    model = original('hrnet')
    trace = trace_forward(model, (64, 64), 3)
    ops = find_ops(model, trace)
    groups, left_alone = resolve_levels(trace, ops, group_levels(trace, ops), True, CFG)
    assert left_alone == {}
    streams = groups[2:]
    names = [{op.name for op in g.ops} for g in streams]
    assert 'stage4.0.fuse_layers.2.0.0.0' in names[0]
    assert 'stage4.0.fuse_layers.2.0.1.0' in names[1]
    assert [g.parent for g in streams] == [groups[i].level for i in (1, 2, 3)]
