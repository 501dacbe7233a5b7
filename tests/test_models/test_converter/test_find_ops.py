"""Finding the resizing ops (strided convs and poolings) and why one cannot convert."""
from torch import nn

from mmseg_dynopool.models.converter.find_ops import find_ops
from mmseg_dynopool.models.converter.trace import trace_forward


class Zoo(nn.Module):
    """One of each: convertible ops and ops that are not (or cannot be)."""

    def __init__(self):
        super().__init__()
        self.flat = nn.Conv2d(3, 4, 3, padding=1)              # stride 1: not an op
        self.conv = nn.Conv2d(4, 4, 3, stride=2, padding=1)    # an op
        self.aniso = nn.Conv2d(4, 4, 3, stride=(2, 1), padding=1)
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.patch = nn.Conv2d(4, 4, 2, stride=2)              # kernel = stride
        self.shared = nn.Conv2d(4, 4, 3, stride=2, padding=1)
        self.unused = nn.Conv2d(4, 4, 3, stride=2, padding=1)
        self.block = nn.Sequential(nn.AvgPool2d(2, 2))
        self.glob = nn.MaxPool2d((2, 4))                       # to 1 x 1
        self.adaptive = nn.AdaptiveAvgPool2d(1)                 # never an op

    def forward(self, x):
        x = self.pool(self.aniso(self.conv(self.flat(x))))
        x = self.shared(self.shared(self.patch(x)))
        x = self.block(x)
        return self.adaptive(self.glob(x))


def _find(skip=()):
    model = Zoo()
    trace = trace_forward(model, (256, 256), 3)
    return {op.name: op for op in find_ops(model, trace, skip)}, trace


def test_strided_convs_and_poolings_with_their_reasons():
    ops, trace = _find()
    assert list(ops) == ['conv', 'aniso', 'pool', 'patch', 'block.0', 'glob', 'shared',
                         'unused']          # forward order; not called once: last
    assert ops['aniso'].stride == (2, 1) and ops['aniso'].kind == 'conv'
    assert ops['pool'].kind == 'pool' and ops['block.0'].kind == 'pool'
    for name in ('conv', 'aniso', 'pool', 'block.0'):
        assert ops[name].reason is None, name
        assert ops[name].call is trace.calls_by_name[name][0]
        assert ops[name].in_level != ops[name].out_level
    assert 'stride-1 copy changes the size' in ops['patch'].reason
    assert ops['shared'].reason == 'called 2 times in one forward'
    assert ops['unused'].reason == 'not called in the probe forward'
    assert ops['glob'].reason == 'global pooling'


def test_skip_patterns_match_parent_modules():
    ops, _ = _find(skip=('blo*', 'conv'))
    assert ops['block.0'].reason == "skipped (matches 'blo*')"
    assert ops['conv'].reason == "skipped (matches 'conv')"
    assert ops['aniso'].reason is None
