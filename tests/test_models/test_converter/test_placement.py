"""Where a converted conv's pool goes: before the conv (Eq. 5.3) or after its
norm/activation modules (Eq. 5.2)."""
import torch
from torch import nn

from mmseg_dynopool.models.converter import PoolAfter, PoolBefore, check_level_sizes
from mmseg_dynopool.models.converter.find_ops import ResizingOp, find_ops
from mmseg_dynopool.models.converter.levels import LevelGroup, group_levels
from mmseg_dynopool.models.converter.placement import conv_site, gets_pool
from mmseg_dynopool.models.converter.trace import trace_forward

from .tiny_models import converted, random_ratios


class Block(nn.Module):
    """conv-bn-relu in a Sequential, then conv-bn-relu with a shared relu."""

    def __init__(self):
        super().__init__()
        self.down = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1), nn.BatchNorm2d(4), nn.ReLU())
        self.conv = nn.Conv2d(4, 4, 3, 2, 1)
        self.bn = nn.BatchNorm2d(4)
        self.relu = nn.ReLU()
        self.out = nn.Conv2d(4, 4, 1)

    def forward(self, x):
        x = self.down(x)
        return self.relu(self.out(self.relu(self.bn(self.conv(x)))))


def _sites(placement):
    model = Block()
    trace = trace_forward(model, (32, 32), 3)
    ops = find_ops(model, trace)
    groups = group_levels(trace, ops)
    return trace, {op.name: conv_site(trace, g, op, placement, set())
                   for g in groups for op in g.ops}


def test_before_hooks_the_conv_itself():
    _, sites = _sites('before')
    assert [(s.module, s.hook, s.computed) for s in sites.values()] == [
        ('down.0', 'pre', {}), ('conv', 'pre', {})]


def test_after_hooks_the_outermost_module_or_the_next_reader():
    trace, sites = _sites('after')
    # The Sequential returns the activation: a forward hook on it.
    assert (sites['down.0'].module, sites['down.0'].hook) == ('down', 'post')
    # The activation is a shared module: a pre-hook on the next module reading it.
    assert (sites['conv'].module, sites['conv'].hook) == ('out', 'pre')
    computed = {trace.calls[i].name for i in sites['conv'].computed}
    assert computed == {'conv', 'bn', 'relu'}
    # Those keep the conv's input level.
    assert set(sites['conv'].computed.values()) == {
        trace.level(trace.calls_by_name['conv'][0].inputs[0])}


def test_resnet_after_hooks():
    model, conversion = converted('resnetv1c', placement='after')
    block = model.layer2[0]
    # relu is shared in the block: the pool goes in front of conv2 ...
    assert [type(h) for h in block.conv2._forward_pre_hooks.values()] == [PoolBefore]
    # ... and behind the shortcut's Sequential(conv, bn).
    assert [type(h) for h in block.downsample._forward_hooks.values()] == [PoolAfter]
    assert block.conv2._forward_pre_hooks[next(iter(block.conv2._forward_pre_hooks))
                                          ].pool is block.dynopool
    random_ratios(model)
    check_level_sizes(model, torch.randn(1, 3, 66, 71))


def test_a_merged_level_gets_one_pool():
    # 'before': the first op's place gets the pool, 'after' the second's.
    a, b = (ResizingOp(n, nn.Identity(), 'conv', (2, 2)) for n in 'ab')
    group = LevelGroup(level=0, ops=[b], parent=1, stride=(4, 4), first_stage=[a])
    assert gets_pool(group, a, 'before') and not gets_pool(group, b, 'before')
    assert gets_pool(group, b, 'after') and not gets_pool(group, a, 'after')
    assert gets_pool(LevelGroup(level=0, ops=[a, b], parent=1, stride=(2, 2)), b,
                     'before')
