"""ShapeAdaptor (Liu et al., ECCV 2020), checked against its definition."""
import math

import pytest
import torch
import torch.nn.functional as F
from mmengine.registry import MODELS

from mmseg_dynopool.layers import ShapeAdaptor, shape_adaptor_size_limit


def _set_alpha(layer: ShapeAdaptor, value: float) -> None:
    with torch.no_grad():
        layer.alpha.fill_(value)


def _scale(alpha: float, r1: float = 0.5, r2: float = 1.0) -> float:
    w = 1.0 / (1.0 + math.exp(-alpha))
    return w * r1 + (1.0 - w) * r2


@pytest.mark.parametrize('shape', [(2, 3, 8, 8), (1, 4, 9, 7), (2, 2, 16, 10)])
def test_weight_one_is_the_r1_branch(shape):
    # sigmoid(200) == 1 exactly: output scale r1, output = max pooling (floor sizes).
    layer = ShapeAdaptor(0.7)
    _set_alpha(layer, 200.0)
    x = torch.randn(*shape)
    assert torch.equal(layer(x), F.max_pool2d(x, 2, 2))


@pytest.mark.parametrize('shape', [(2, 3, 8, 8), (1, 4, 9, 7)])
def test_weight_zero_is_the_identity(shape):
    layer = ShapeAdaptor(0.7)
    _set_alpha(layer, -200.0)
    x = torch.randn(*shape)
    assert torch.equal(layer(x), x)


def test_avg_pool_branch_and_quarter_ratio():
    x = torch.randn(1, 2, 12, 12)
    layer = ShapeAdaptor(0.5, r1=0.25, pool_type='avg')
    _set_alpha(layer, 200.0)
    assert torch.equal(layer(x), F.avg_pool2d(x, 4, 4))


def test_blend_of_the_two_resized_branches():
    # Output = w * resize(maxpool(x)) + (1 - w) * resize(x), both to the shared size.
    layer = ShapeAdaptor(0.7)
    x = torch.randn(2, 3, 20, 20)
    y = layer(x)
    w = torch.sigmoid(layer.alpha.detach())
    size = (14, 14)                       # floor(20 * 0.7)
    b1 = F.interpolate(F.max_pool2d(x, 2), size=size, mode='bilinear', align_corners=True)
    b2 = F.interpolate(x, size=size, mode='bilinear', align_corners=True)
    assert y.shape[2:] == size
    assert torch.allclose(y, w * b1 + (1 - w) * b2, atol=1e-6)


@pytest.mark.parametrize('alpha', [-3.0, -0.7, 0.0, 0.35, 1.3, 4.0])
@pytest.mark.parametrize('in_size', [(32, 32), (33, 17), (7, 64)])
def test_sizes_follow_the_scale_formula(alpha, in_size):
    layer = ShapeAdaptor()
    _set_alpha(layer, alpha)
    s = _scale(alpha)
    expected = tuple(max(1, math.floor(n * s + 1e-6)) for n in in_size)
    y = layer(torch.randn(1, 2, *in_size))
    assert tuple(y.shape[2:]) == expected
    assert layer.last_size == expected and layer.last_input_size == in_size
    assert torch.allclose(layer.ratio, torch.tensor([s, s]), atol=1e-6)


def test_sizes_with_other_branch_ratios():
    # r1 = 1.5 (bilinear up-sampling branch), r2 = 1: s between 1 and 1.5.
    layer = ShapeAdaptor(1.25, r1=1.5, r2=1.0)
    assert abs(float(layer.ratio[0]) - 1.25) < 1e-6
    assert tuple(layer(torch.randn(1, 2, 8, 12)).shape[2:]) == (10, 15)


def test_min_size_bound():
    layer = ShapeAdaptor(0.5, min_size=2)
    assert tuple(layer(torch.randn(1, 1, 3, 2)).shape[2:]) == (2, 2)
    # A 1x1 input still works (the pooling branch falls back to ceil mode).
    assert tuple(ShapeAdaptor(0.5)(torch.randn(1, 1, 1, 1)).shape[2:]) == (1, 1)


def test_alpha_receives_finite_nonzero_gradient():
    layer = ShapeAdaptor(0.7)
    x = torch.randn(2, 3, 16, 16)
    (layer(x) * torch.randn(2, 3, 11, 11)).sum().backward()
    g = layer.alpha.grad
    assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0


def test_initialisation():
    # The paper's heuristic on CIFAR (32 -> 8 with 4 adaptors) gives s = 2 ** -0.5; its
    # code initialises alpha to -0.346 with sigmoid weighting r2; ours weights r1.
    s0 = ShapeAdaptor.paper_init_ratio(32, 8, 4)
    assert s0 == pytest.approx(2 ** -0.5)
    layer = ShapeAdaptor(s0)
    assert float(layer.alpha) == pytest.approx(0.3466, abs=1e-3)
    assert float(layer.ratio[0]) == pytest.approx(s0, abs=1e-6)
    assert layer.init_ratio == (s0, s0)
    # Unreachable targets fall back to the branch ratios.
    assert ShapeAdaptor.paper_init_ratio(32, 1, 2) == 0.5
    assert ShapeAdaptor.paper_init_ratio(32, 64, 2) == 1.0
    # init_ratio = r1 (the default) clips the weight at 1 - 1e-4, like the paper's eps.
    layer = ShapeAdaptor()
    assert float(torch.sigmoid(layer.alpha)) == pytest.approx(1 - 1e-4, abs=1e-7)
    x = torch.randn(1, 2, 8, 8)
    assert torch.allclose(layer(x), F.max_pool2d(x, 2), atol=1e-3)


def test_reset_parameters_to_initial():
    layer = ShapeAdaptor(0.8)
    a0 = layer.alpha.detach().clone()
    _set_alpha(layer, 3.0)
    layer.set_size_penalty(0.5)
    layer.reset_parameters_to_initial()
    assert torch.equal(layer.alpha.detach(), a0) and layer.size_penalty == 1.0
    assert float(layer.ratio[0]) == pytest.approx(0.8, abs=1e-6)


@pytest.mark.parametrize('alpha', [-2.0, 0.3, 2.5])
def test_continuous_size_matches_forward_and_has_gradient(alpha):
    layer = ShapeAdaptor()
    _set_alpha(layer, alpha)
    for in_size in [(32, 32), (45, 19)]:
        h, w = layer.continuous_size(in_size)
        y = layer(torch.randn(1, 1, *in_size))
        assert (float(h), float(w)) == tuple(float(v) for v in y.shape[2:])
        layer.alpha.grad = None
        (h * w).backward()
        g = layer.alpha.grad
        assert torch.isfinite(g).all() and g.abs().sum() > 0
        # d(H s)/d alpha = H (r1 - r2) sigmoid'(alpha): negative for r1 < r2.
        sig = 1 / (1 + math.exp(-alpha))
        ds = (0.5 - 1.0) * sig * (1 - sig)
        assert float(g) == pytest.approx(in_size[0] * ds * float(w)
                                         + in_size[1] * ds * float(h), rel=1e-4)


def test_continuous_size_chains_straight_through_sizes():
    first, second = ShapeAdaptor(0.7), ShapeAdaptor(0.8)
    h1, w1 = first.continuous_size((40, 30))
    h2, w2 = second.continuous_size((h1, w1))
    y = second(first(torch.randn(1, 1, 40, 30)))
    assert (float(h2), float(w2)) == tuple(float(v) for v in y.shape[2:])
    (h2 * w2).backward()
    assert first.alpha.grad.abs().sum() > 0 and second.alpha.grad.abs().sum() > 0


def test_size_limit_follows_the_paper():
    layers = [ShapeAdaptor(0.9), ShapeAdaptor(0.8), ShapeAdaptor(0.9)]
    raw = 64 * 0.9 * 0.8 * 0.9            # 41.47 >= 20 -> penalised
    p = shape_adaptor_size_limit(layers, (64, 48), 20)
    assert p == pytest.approx((20 / raw) ** (1 / 3), rel=1e-5)
    assert all(m.size_penalty == p for m in layers)
    x = torch.randn(1, 1, 64, 64)
    for m in layers:
        x = m(x)
    assert abs(x.shape[-1] - 20) <= 3      # floors along the chain
    # The blending weights follow the penalised scale: w1 = (r2 - p s) / (r2 - r1).
    m = layers[1]
    assert float(m.mix_weight()) == pytest.approx((1 - p * 0.8) / 0.5, rel=1e-5)
    # Under the limit the penalty is 1.
    assert shape_adaptor_size_limit(layers, 64, 100) == 1.0
    assert all(m.size_penalty == 1.0 for m in layers)


def test_mix_branches_two_input_form():
    layer = ShapeAdaptor(0.75)
    short = torch.randn(2, 4, 8, 8)        # e.g. a strided shortcut
    full = torch.randn(2, 4, 16, 16)       # e.g. the stride-1 path
    y = layer.mix_branches(short, full)
    assert tuple(y.shape) == (2, 4, 12, 12) and layer.last_input_size == (16, 16)


def test_count_macs_rule():
    layer = ShapeAdaptor(0.75)             # 8x8 -> 6x6
    # r1: maxpool (0) + resize 4x4 -> 6x6 (4 * 36); r2: resize 8x8 -> 6x6 (4 * 36);
    # blend: 36. Times N * C.
    assert layer.count_macs((2, 3, 8, 8)) == 2 * 3 * (144 + 144 + 36)
    assert layer.count_macs((3, 8, 8)) == 3 * 324
    # At scale r1 on an even input the r1 branch needs no resize.
    at_r1 = ShapeAdaptor()
    _set_alpha(at_r1, 200.0)
    assert at_r1.count_macs((1, 1, 8, 8)) == 4 * 16 + 16


def test_registry_and_repr():
    layer = MODELS.build(dict(type='ShapeAdaptor', init_ratio=(0.6, 0.6), r1=0.5))
    assert isinstance(layer, ShapeAdaptor)
    assert 'ratio=0.6000' in repr(layer)


@pytest.mark.parametrize('kwargs,err', [
    (dict(r1=1.0, r2=1.0), ValueError),
    (dict(r1=-0.5), ValueError),
    (dict(r1=float('nan')), ValueError),
    (dict(init_ratio=0.3), ValueError),           # outside [r1, r2]
    (dict(init_ratio=(0.6, 0.7)), ValueError),    # not symmetric
    (dict(init_ratio='0.5'), TypeError),
    (dict(min_size=0), ValueError),
    (dict(pool_type='median'), ValueError),
    (dict(init_eps=0.5), ValueError),
    (dict(align_corners=1), TypeError),
])
def test_bad_arguments(kwargs, err):
    with pytest.raises(err):
        ShapeAdaptor(**kwargs)


def test_bad_inputs():
    layer = ShapeAdaptor(0.7)
    with pytest.raises(ValueError, match='4-D'):
        layer(torch.randn(3, 8, 8))
    with pytest.raises(ValueError, match='empty'):
        layer(torch.randn(1, 1, 0, 4))
    with pytest.raises(ValueError, match='pair'):
        layer.continuous_size((8, ))
    with pytest.raises(ValueError):
        layer.set_size_penalty(1.5)
    with pytest.raises(ValueError):
        shape_adaptor_size_limit([], 32, 8)
