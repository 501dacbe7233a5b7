"""Behaviour of the DynOPool layer (thesis Eqs. 4.1-4.6, section 5.2.2).

Moved from tests/test_dynopool_layer.py; the backends and the host-sync behaviour have
their own files (test_dynopool_backends.py, test_dynopool_host_sync.py)."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmseg_dynopool import DynOPool, resizing_layers
from mmseg_dynopool.ops import (dynopool_sample, dynopool_sample_reference, output_size,
                                query_positions)


def _positions(h_in, w_in, ratio, dtype=torch.float64):
    alpha = torch.tensor([1 / ratio[0], 1 / ratio[1]], dtype=dtype, requires_grad=True)
    r = 1 / alpha
    h, w = output_size(h_in, r[0]), output_size(w_in, r[1])
    return (alpha, query_positions(h_in, h, int(h), dtype),
            query_positions(w_in, w, int(w), dtype))


@pytest.mark.parametrize('shape', [(2, 3, 8, 8), (1, 5, 12, 6), (3, 2, 4, 6)])
def test_half_ratio_equals_maxpool_and_avgpool(shape, kernel):
    x = torch.randn(*shape)
    assert torch.allclose(DynOPool(0.5)(x), nn.MaxPool2d(2, 2)(x), atol=1e-6)
    assert torch.allclose(DynOPool(0.5, aggregation='avg')(x), nn.AvgPool2d(2, 2)(x),
                          atol=1e-6)


@pytest.mark.parametrize('ratio,in_size,expected', [
    ((0.5, 0.25), (32, 32), (16, 8)),
    ((2.0, 1.0), (7, 9), (14, 9)),
    ((0.3, 1.7), (10, 10), (3, 17)),
    (0.45, (33, 61), (15, 27)),          # round(14.85)=15, round(27.45)=27
    (0.01, (20, 40), (2, 2)),            # size bound 1.5 -> never below 2
    ((1.0, 0.05), (1, 30), (2, 2)),      # a 1-pixel input is upsampled to the bound
])
def test_output_sizes(ratio, in_size, expected):
    layer = DynOPool(ratio, min_ratio=1e-3)
    y = layer(torch.randn(2, 3, *in_size))
    assert tuple(y.shape[2:]) == expected
    assert layer.last_size == expected


def test_rounding_is_half_up():
    # 5 * 0.5 = 2.5 must become 3 (not banker's rounding to 2).
    assert DynOPool(0.5)(torch.randn(1, 1, 5, 5)).shape[2:] == (3, 3)


def test_sizes_never_drop_below_two_even_after_training_down():
    layer = DynOPool(0.5)
    with torch.no_grad():
        layer.alpha.fill_(500.0)
    assert tuple(layer(torch.randn(1, 1, 64, 64)).shape[2:]) == (2, 2)


def test_straight_through_size_gradient():
    # Forward value is the rounded size; the gradient is that of H_in * r.
    ratio = torch.tensor(0.37, requires_grad=True)
    size = output_size(31, ratio)
    assert size.item() == round(31 * 0.37)
    size.backward()
    assert ratio.grad.item() == pytest.approx(31.0)


def test_query_points_are_quarter_cell_offsets():
    # Eq. 4.2 in normalised coordinates, converted back from pixel coordinates.
    h_in, n_out = 10, 4
    pos = query_positions(h_in, torch.tensor(float(n_out)), n_out)
    norm = (pos + 0.5) / h_in * 2 - 1
    centres = -1 + (2 * torch.arange(n_out) + 1) / n_out
    delta = 0.25 * 2 / n_out
    expected = torch.stack((centres - delta, centres + delta), dim=1).reshape(-1)
    assert torch.allclose(norm, expected.to(norm.dtype), atol=1e-6)


@pytest.mark.parametrize('ratio', [0.45, 0.37, 0.61, 1.3])
def test_samples_exactly_where_interpolate_does(ratio, kernel):
    # Same sample points as F.interpolate (what a frozen / ONNX model uses), also on
    # large maps where float32 rounding of the positions matters.
    x = torch.randn(1, 2, 333, 480)
    y = DynOPool(ratio)(x)
    z = F.interpolate(x, size=(2 * y.shape[2], 2 * y.shape[3]), mode='bilinear',
                      align_corners=False)
    assert (y - F.max_pool2d(z, 2)).abs().max() < 2e-6


def test_upsampling_ratio_two_matches_bilinear_then_max():
    x = torch.randn(1, 2, 5, 7)
    y = DynOPool(2.0)(x)
    z = F.interpolate(x, size=(20, 28), mode='bilinear', align_corners=False)
    assert torch.allclose(y, F.max_pool2d(z, 2), atol=1e-6)


@pytest.mark.parametrize('aggregation', ['max', 'avg'])
def test_gradcheck_input(aggregation, kernel):
    x = torch.randn(1, 2, 7, 9, dtype=torch.float64, requires_grad=True)
    layer = DynOPool((0.6, 0.45), aggregation=aggregation).double()
    assert torch.autograd.gradcheck(layer, (x,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize('aggregation', ['max', 'avg'])
def test_gradcheck_query_positions_reference(aggregation):
    # The positional gradient (how the task loss reaches alpha) against finite differences.
    x = torch.randn(1, 2, 9, 8, dtype=torch.float64)
    _, ph, pw = _positions(9, 8, (0.55, 0.7))
    ph = ph.detach().requires_grad_()
    pw = pw.detach().requires_grad_()
    fn = lambda a, b: dynopool_sample_reference(x, a, b, aggregation)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (ph, pw), eps=1e-6, atol=1e-5)


@pytest.fixture(params=['fused', 'native'])
def kernel(request, monkeypatch):
    """Run a test with the compiled CPU kernel and with the native-op fallback."""
    from mmseg_dynopool.ops import functional
    if request.param == 'fused':
        if not functional.fused_kernel_available():
            pytest.fail('the compiled kernel mmseg_dynopool._C is not built')
    else:
        monkeypatch.setattr(functional, '_ext', None)
    return request.param


@pytest.mark.parametrize('ratio', [(0.45, 0.6), (0.5, 0.5), (1.7, 0.3), (0.9, 1.2)])
def test_fast_path_matches_reference_values_and_gradients(ratio, kernel):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 13, 17, dtype=torch.float64, requires_grad=True)
    results = []
    for fn in (dynopool_sample, dynopool_sample_reference):
        alpha, ph, pw = _positions(13, 17, ratio)
        y = fn(x, ph, pw)
        weights = torch.randn(y.shape, generator=torch.Generator().manual_seed(1),
                              dtype=y.dtype)
        results.append((y, *torch.autograd.grad((y * weights).sum(), (x, alpha))))
    for fast, ref in zip(*results):
        assert torch.allclose(fast, ref, atol=1e-10)


def test_alpha_receives_finite_nonzero_gradient(kernel):
    layer = DynOPool((0.45, 0.55))
    x = torch.randn(2, 4, 16, 16)
    (layer(x) * torch.randn(2, 4, 7, 9)).sum().backward()
    assert layer.alpha.grad is not None
    assert torch.isfinite(layer.alpha.grad).all()
    assert (layer.alpha.grad.abs() > 0).all()


def test_parameters_and_properties():
    layer = DynOPool((0.5, 0.25))
    assert layer.alpha.shape == (2,)
    assert torch.allclose(layer.alpha, torch.tensor([2.0, 4.0]))
    assert torch.allclose(layer.ratio, torch.tensor([0.5, 0.25]))
    with pytest.raises(AttributeError):
        layer.ratio = torch.tensor([1.0, 1.0])
    assert layer.last_size is None
    layer(torch.randn(1, 1, 8, 8))
    assert layer.last_size == (4, 2)
    assert [n for n, _ in layer.named_parameters()] == ['alpha']
    assert list(layer.state_dict()) == ['alpha']


def test_registered_in_root_registry_and_plugin_builder():
    from mmcv.cnn import build_plugin_layer
    from mmengine.registry import MODELS
    from mmseg.registry import MODELS as SEG_MODELS
    assert isinstance(MODELS.build(dict(type='DynOPool', init_ratio=0.25)), DynOPool)
    assert isinstance(SEG_MODELS.build(dict(type='DynOPool')), DynOPool)
    name, layer = build_plugin_layer(dict(type='DynOPool', init_ratio=0.5), postfix=1)
    assert isinstance(layer, DynOPool)


def test_dynopool_layers_distinct_and_ordered():
    shared = DynOPool(0.5)
    model = nn.Sequential(DynOPool(0.5), nn.Conv2d(1, 1, 1), shared,
                          nn.Sequential(shared, DynOPool(0.7)))
    layers = resizing_layers(model)
    assert [n for n, _ in layers] == ['0', '2', '3.1']
    assert layers[1][1] is shared
    assert resizing_layers(model) == layers


@pytest.mark.parametrize('bad', [0, -0.5, float('nan'), float('inf'), (0.5, 0.0),
                                 (0.5, -1.0)])
def test_bad_ratio_value_error(bad):
    with pytest.raises(ValueError, match='init_ratio'):
        DynOPool(bad)


@pytest.mark.parametrize('bad', ['0.5', (0.5,), (0.5, 0.5, 0.5), None, True])
def test_bad_ratio_type_error(bad):
    with pytest.raises(TypeError, match='init_ratio'):
        DynOPool(bad)


def test_bad_aggregation():
    with pytest.raises(ValueError, match='aggregation'):
        DynOPool(aggregation='median')


@pytest.mark.parametrize('shape', [(3, 8, 8), (1, 1, 1, 8, 8), (8,)])
def test_not_4d(shape):
    with pytest.raises(ValueError, match='4-D'):
        DynOPool()(torch.randn(*shape))


def test_empty_spatial():
    with pytest.raises(ValueError, match='empty spatial'):
        DynOPool()(torch.randn(1, 1, 0, 8))


def test_not_a_tensor():
    with pytest.raises(TypeError, match='torch.Tensor'):
        DynOPool()([[1.0]])


@pytest.mark.parametrize('lr', [1e6, -1e6, float('inf')])
def test_absurd_learning_rate_cannot_break_alpha(lr):
    layer = DynOPool(0.5)
    opt = torch.optim.SGD(layer.parameters(), lr=abs(lr) if math.isfinite(lr) else 1.0)
    x = torch.randn(2, 3, 16, 16)
    for _ in range(3):
        opt.zero_grad()
        loss = layer(x).sum() * (lr if math.isfinite(lr) else 1.0)
        if not math.isfinite(lr):
            loss = loss * float('inf')
        loss.backward()
        opt.step()
        # The guard runs right after the step, before any forward.
        assert torch.isfinite(layer.alpha).all()
        assert (layer.alpha > 0).all()
        assert (layer.ratio <= layer.max_ratio + 1e-6).all()
    assert layer(x).shape[2] >= 2


def test_nan_alpha_restored_to_last_valid_value():
    layer = DynOPool(0.4)
    with torch.no_grad():
        layer.alpha[0] = float('nan')
    layer(torch.randn(1, 1, 10, 10))
    assert torch.allclose(layer.alpha, torch.tensor([2.5, 2.5]))


def test_max_size_caps_output():
    layer = DynOPool(3.0, max_size=20)
    assert tuple(layer(torch.randn(1, 1, 10, 4)).shape[2:]) == (20, 12)


def test_bfloat16_autocast_keeps_sizes_float32():
    layer = DynOPool((0.45, 0.55))
    x = torch.randn(2, 3, 20, 20)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        y = layer(x.bfloat16())
    assert y.shape[2:] == (9, 11)
    y.float().sum().backward()
    assert layer.alpha.grad.dtype == torch.float32
    assert torch.isfinite(layer.alpha.grad).all()


@pytest.mark.parametrize('aggregation', ['max', 'avg'])
@pytest.mark.parametrize('grad', [False, True])
def test_traceable_when_its_tables_are_first_built_inside_the_trace(aggregation, grad):
    """mmengine's FlopAnalyzer (the GMACs profile) traces the model with torch.jit; the
    cached sampling tables may be built during that trace."""
    from mmengine.analysis import FlopAnalyzer

    from mmseg_dynopool.ops.geometry import clear_geometry_cache
    clear_geometry_cache()
    model = nn.Sequential(nn.Conv2d(3, 4, 3), DynOPool(0.45, aggregation=aggregation))
    with torch.set_grad_enabled(grad):
        analyzer = FlopAnalyzer(model, (torch.zeros(1, 3, 19, 23), ))
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        assert analyzer.total() == 4 * 3 * 9 * 17 * 21  # the conv; the pool is opaque
