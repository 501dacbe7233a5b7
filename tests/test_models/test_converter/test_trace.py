"""The tracer pass: module calls, function calls and resolution levels of one forward."""
import pytest
import torch
from torch import nn

from mmseg_dynopool.models.converter import convert_to_dynopool
from mmseg_dynopool.models.converter.trace import (Trace, flat_tensors, infer_in_channels,
                                                   spatial, trace_forward)

from .tiny_models import ThreeConvs


def _calls(trace: Trace, name: str):
    return trace.calls_by_name[name]


def test_levels_follow_size_preserving_calls_only():
    model = ThreeConvs()
    trace = trace_forward(model, (33, 40), 3)
    stem, down, short, head = (_calls(trace, n)[0] for n in ('stem', 'down', 'short',
                                                               'head'))
    x = trace.input
    # A stride-1 'same' conv couples its input and output: the input's level.
    assert trace.level(stem.outputs[0]) == trace.level(x)
    # A strided op starts a new level; the residual sum puts both paths in it.
    assert trace.level(down.outputs[0]) != trace.level(down.inputs[0])
    assert trace.level(down.outputs[0]) == trace.level(short.outputs[0])
    assert trace.level(head.outputs[0]) == trace.level(down.outputs[0])
    assert trace.level_size(trace.level(down.outputs[0])) == (17, 20)
    # An explicit resize never couples, even to a map of the same size.
    resized = trace.outputs[1]
    assert spatial(resized) == spatial(stem.outputs[0])
    assert trace.level(resized) not in (trace.level(x), trace.level(down.outputs[0]))
    # Parameters are not activations.
    assert trace.level(model.stem.weight) is None


def test_an_explicit_resize_to_the_same_size_does_not_couple():
    class SameSize(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)

        def forward(self, x):
            y = self.conv(x)
            return y, nn.functional.interpolate(y, size=y.shape[-2:]), y * 2

    trace = trace_forward(SameSize(), (9, 9), 3)
    y, resized, doubled = trace.outputs
    assert trace.level(doubled) == trace.level(y) == trace.level(trace.input)
    assert trace.level(resized) != trace.level(y)


def test_module_and_function_calls_are_recorded_in_order():
    model = nn.Sequential(ThreeConvs())
    trace = trace_forward(model, (16, 16), 3)
    assert [c.name for c in trace.calls] == ['', '0', '0.stem', '0.down', '0.short',
                                             '0.head']
    inner = _calls(trace, '0.down')[0]
    assert [c.name for c in trace.enclosing(inner)] == ['0', '']
    assert inner.leaf and not _calls(trace, '0')[0].leaf
    names = [f.name for f in trace.functions]
    assert 'relu' in names and 'interpolate' in names
    # The sum reads both the strided conv's and the pooling's outputs.
    users = trace.consumers(inner.outputs[0], after=inner.end)
    assert any(any(t is _calls(trace, '0.short')[0].outputs[0] for t in u.inputs)
               for u in users)


def test_shared_modules_are_counted():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, padding=1)

        def forward(self, x):
            return self.conv(self.conv(x))

    model = Twice()
    trace = trace_forward(model, (8, 8), 3)
    assert trace.num_calls(model.conv) == 2
    assert [c.occurrence for c in _calls(trace, 'conv')] == [0, 1]


def test_runs_on_meta_in_eval_mode_and_restores_flags():
    seen = []

    class Spy(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, stride=2, padding=1)

        def forward(self, x):
            seen.append((x.device.type, self.training))
            return self.conv(x)

    model = Spy()
    model.train()
    trace = trace_forward(model, (8, 8), 3)
    assert trace.device == 'meta' and seen == [('meta', False)]
    assert model.training and model.conv.training
    assert model.conv.weight.device.type == 'cpu'   # substituted, not moved


def test_falls_back_to_a_real_forward_without_meta_kernels():
    class NoMeta(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 3, stride=2, padding=1)

        def forward(self, x):
            if x.device.type == 'meta':
                raise NotImplementedError('no meta kernel')
            return self.conv(x)

    trace = trace_forward(NoMeta(), (9, 8), 3)
    assert trace.device == 'cpu'
    assert spatial(trace.outputs[0]) == (5, 4)
    with pytest.raises(NotImplementedError):
        trace_forward(NoMeta(), (9, 8), 3, device='meta')


def test_failure_says_what_to_do():
    class TwoInputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, 2, 1)

        def forward(self, x, y):
            return self.conv(x) + y

    with pytest.raises(RuntimeError, match='probe_size / in_channels'):
        trace_forward(TwoInputs(), (8, 8), 3)
    with pytest.raises(RuntimeError, match='probe forward'):
        convert_to_dynopool(TwoInputs())


def test_helpers():
    a, b = torch.zeros(1, 2, 3, 4), torch.zeros(2)
    assert [id(t) for t in flat_tensors({'x': [a, (b, 1)], 'y': 'z'})] == [id(a), id(b)]
    assert spatial(a) == (3, 4) and spatial(b) is None and spatial(None) is None
    assert infer_in_channels(nn.Sequential(nn.ReLU(), nn.Conv2d(5, 2, 1))) == 5
    with pytest.raises(ValueError, match='in_channels'):
        infer_in_channels(nn.Sequential(nn.ReLU()))


@pytest.mark.parametrize('kwargs', [dict(scale_factor=2), dict(size=(13, 7)),
                                    dict(scale_factor=0.37, mode='bilinear'),
                                    dict(scale_factor=(1.5, 0.5), mode='bicubic',
                                         recompute_scale_factor=True)])
def test_meta_interpolate_has_pytorchs_output_size_and_is_recorded(kwargs):
    """On meta, ``F.interpolate`` is answered by a one-channel CPU proxy (the meta
    kernels are slow Python decompositions): same size as the real call, one record."""
    class Up(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 5, 3, stride=2, padding=1)

        def forward(self, x):
            return nn.functional.interpolate(self.conv(x), **kwargs)

    model = Up()
    trace = trace_forward(model, (23, 17), 3, device='meta')
    want = model(torch.zeros(1, 3, 23, 17)).shape
    out = trace.outputs[0]
    assert out.device.type == 'meta' and out.shape == want
    assert [f.name for f in trace.functions].count('interpolate') == 1
