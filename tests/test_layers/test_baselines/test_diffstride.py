"""DiffStride (Riad et al., ICLR 2022), checked against its definition."""
import math

import pytest
import torch
from mmengine.registry import MODELS

from mmseg_dynopool.layers import DiffStride, spectral_output_sizes, spectral_pool


def _band_limited(h: int, w: int, kmax: int, seed: int = 0) -> torch.Tensor:
    """A real (1, 2, h, w) float64 map whose spectrum is zero beyond |k| = kmax."""
    g = torch.Generator().manual_seed(seed)
    spec = torch.zeros(1, 2, h, w // 2 + 1, dtype=torch.complex128)
    rows = list(range(kmax + 1)) + list(range(h - kmax, h))
    for r in rows:
        spec[..., r, :kmax + 1] = torch.randn(1, 2, kmax + 1, dtype=torch.complex128,
                                              generator=g)
    return torch.fft.irfft2(spec, s=(h, w))


def _expected_len(n: int, stride: float, r: float) -> int:
    return min(n, 2 * math.ceil(max(n / stride, 2.0) / 2 + r) - 1)


@pytest.mark.parametrize('size', [(8, 8), (9, 7), (10, 13), (1, 5)])
def test_stride_one_returns_the_input(size):
    layer = DiffStride(init_stride=1.0, adaptive_lower_bound=False).double()
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    y = layer(x)
    assert y.shape == x.shape
    assert torch.allclose(y, x, atol=1e-12)
    x32 = torch.randn(2, 3, *size)
    assert torch.allclose(DiffStride(init_stride=1.0, adaptive_lower_bound=False)(x32),
                          x32, atol=1e-5)


def test_adaptive_lower_bound_keeps_the_ramp_in_the_spectrum():
    # With the paper's bound, stride 1 is raised to n / (n - R): the highest frequency
    # is half-attenuated, so the output is a low-pass copy that still has a gradient.
    layer = DiffStride(init_stride=1.0, smoothness=4.0)
    s = layer.effective_stride((32, 20))
    assert torch.allclose(s, torch.tensor([32 / 28, 20 / 16]))
    x = torch.randn(1, 1, 32, 20)
    y = layer(x)
    assert tuple(y.shape[2:]) == (32, 20) and not torch.allclose(y, x, atol=1e-3)
    y.pow(2).sum().backward()
    assert layer.stride.grad.abs().min() > 0


def test_stride_two_on_band_limited_input_is_ideal_downsampling():
    # n = 30, S = 2, R = 0.5: T = 7.5, support |k| < 8 -> 15 samples = every other one.
    x = _band_limited(30, 30, kmax=6)
    y = spectral_pool(x, torch.tensor([2.0, 2.0], dtype=torch.float64), smoothness=0.5)
    assert tuple(y.shape[2:]) == (15, 15)
    assert torch.allclose(y, x[..., ::2, ::2], atol=1e-10)


def test_odd_sizes_resample_a_band_limited_signal_exactly():
    # Sum of cosines sampled on a 33 x 27 grid; strides (2, 3) with R = 4 keep 25 x 17
    # samples; a band-limited signal must come out as the same signal on that grid.
    h, w = 33, 27
    comps = [(0, 0, 0.7, 0.0), (1, 2, 1.0, 0.3), (3, -1, -0.5, 1.1), (2, 3, 0.25, -0.4)]

    def signal(th, tw):
        out = torch.zeros(th.shape[0], tw.shape[0], dtype=torch.float64)
        for kh, kw, a, phi in comps:
            out += a * torch.cos(2 * math.pi * (kh * th[:, None] / h + kw * tw[None, :] / w)
                                 + phi)
        return out

    x = signal(torch.arange(h, dtype=torch.float64),
               torch.arange(w, dtype=torch.float64))[None, None]
    layer = DiffStride(init_stride=(2.0, 3.0)).double()
    y = layer(x)
    h_out, w_out = _expected_len(h, 2.0, 4.0), _expected_len(w, 3.0, 4.0)
    assert (h_out, w_out) == (25, 17) and layer.last_size == (25, 17)
    ref = signal(torch.arange(h_out, dtype=torch.float64) * h / h_out,
                 torch.arange(w_out, dtype=torch.float64) * w / w_out)
    assert torch.allclose(y[0, 0], ref, atol=1e-10)


def test_axes_are_independent():
    # (S_h, S_w) in one call equals S_h along H then S_w along W (stride 1 elsewhere).
    x = torch.randn(2, 3, 24, 19, dtype=torch.float64)
    one = torch.tensor(1.0, dtype=torch.float64)
    sh = torch.tensor(2.5, dtype=torch.float64)
    sw = torch.tensor(1.7, dtype=torch.float64)
    both = spectral_pool(x, torch.stack((sh, sw)), 2.0)
    seq = spectral_pool(spectral_pool(x, torch.stack((sh, one)), 2.0),
                        torch.stack((one, sw)), 2.0)
    assert both.shape == seq.shape
    assert torch.allclose(both, seq, atol=1e-12)


@pytest.mark.parametrize('n,stride,r', [(32, 2.0, 4.0), (32, 4.0, 1.0), (33, 2.0, 4.0),
                                        (17, 3.3, 2.5), (64, 16.0, 4.0), (8, 2.0, 4.0),
                                        (50, 7.0, 0.25)])
def test_output_size_formula(n, stride, r):
    layer = DiffStride(init_stride=(stride, stride), smoothness=r,
                       adaptive_lower_bound=False)
    y = layer(torch.randn(1, 1, n, n + 1))
    assert tuple(y.shape[2:]) == (_expected_len(n, stride, r),
                                  _expected_len(n + 1, stride, r))
    assert layer.output_size((n, n + 1)) == tuple(y.shape[2:])


def test_stride_receives_finite_nonzero_gradient():
    layer = DiffStride(init_stride=(2.0, 2.5))
    x = torch.randn(2, 3, 24, 20)
    y = layer(x)
    (y * torch.randn_like(y)).sum().backward()
    g = layer.stride.grad
    assert g is not None and torch.isfinite(g).all() and (g.abs() > 0).all()


@pytest.mark.parametrize('r', [1.0, 4.0])
def test_gradcheck_float64(r):
    x = torch.randn(1, 2, 9, 10, dtype=torch.float64, requires_grad=True)
    s = torch.tensor([1.7, 2.3], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: spectral_pool(a, b, r), (x, s))


def test_module_is_the_functional_core_with_bounded_stride():
    layer = DiffStride(init_stride=(1.7, 2.3), smoothness=1.0).double()
    x = torch.randn(1, 1, 9, 10, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(layer, (x, ))
    ref = spectral_pool(x.detach(), layer.effective_stride((9, 10)).detach(), 1.0)
    assert torch.equal(layer(x.detach()), ref)


@pytest.mark.parametrize('stride', [(2.0, 2.0), (1.6, 3.1), (5.0, 1.2)])
def test_continuous_size_matches_forward_and_has_gradient(stride):
    layer = DiffStride(init_stride=stride, smoothness=2.0)
    for in_size in [(32, 32), (45, 19)]:
        h, w = layer.continuous_size(in_size)
        y = layer(torch.randn(1, 1, *in_size))
        assert (float(h), float(w)) == tuple(float(v) for v in y.shape[2:])
        layer.stride.grad = None
        (h + w).backward()
        g = layer.stride.grad
        assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_continuous_size_chains_straight_through_sizes():
    first = DiffStride(init_stride=2.0, smoothness=1.0)
    second = DiffStride(init_stride=1.5, smoothness=1.0)
    h1, w1 = first.continuous_size((64, 48))
    h2, w2 = second.continuous_size((h1, w1))
    y = second(first(torch.randn(1, 1, 64, 48)))
    assert (float(h2), float(w2)) == tuple(float(v) for v in y.shape[2:])
    (h2 * w2).backward()
    assert first.stride.grad.abs().sum() > 0 and second.stride.grad.abs().sum() > 0


def test_guard_keeps_stride_in_bounds():
    layer = DiffStride(init_stride=2.0, upper_limit_stride=8.0)
    with torch.no_grad():
        layer.stride.copy_(torch.tensor([0.5, 20.0]))
    layer(torch.randn(1, 1, 16, 16))
    assert layer.stride.tolist() == [1.0, 8.0]
    with torch.no_grad():
        layer.stride.copy_(torch.tensor([float('nan'), 3.0]))
    y = layer(torch.randn(1, 1, 16, 16))
    assert torch.isfinite(y).all() and layer.stride.tolist() == [1.0, 3.0]


def test_init_ratio_reset_and_ratio():
    layer = DiffStride(init_ratio=(0.5, 0.25))
    assert layer.init_ratio == (0.5, 0.25) and layer.stride.tolist() == [2.0, 4.0]
    assert torch.allclose(layer.ratio, torch.tensor([0.5, 0.25]))
    with torch.no_grad():
        layer.stride.add_(1.0)
    layer.reset_parameters_to_initial()
    assert layer.stride.tolist() == [2.0, 4.0]
    assert DiffStride().init_ratio == (0.5, 0.5)


def test_shared_stride():
    layer = DiffStride(init_stride=2.0, shared_stride=True, smoothness=1.0)
    assert tuple(layer.stride.shape) == (1, )
    y = layer(torch.randn(1, 1, 20, 40))
    assert tuple(y.shape[2:]) == (_expected_len(20, 2, 1), _expected_len(40, 2, 1))
    y.sum().backward()
    assert layer.stride.grad.shape == (1, )


def test_half_precision_input_keeps_its_dtype():
    layer = DiffStride(init_stride=2.0)
    y = layer(torch.randn(1, 2, 16, 16).to(torch.bfloat16))
    assert y.dtype == torch.bfloat16 and torch.isfinite(y.float()).all()


def test_count_macs_rule():
    layer = DiffStride(init_stride=1.0, adaptive_lower_bound=False)
    # 8x8 -> 8x8. Forward: 8 rows * 8 log2 8 + 5 cols * 2 * 8 log2 8 = 192 + 240;
    # mask 2 * 8 * 5 = 80; inverse the same as forward: 432.
    assert layer.count_macs((1, 1, 8, 8)) == 944
    assert layer.count_macs((2, 3, 8, 8)) == 6 * 944
    assert DiffStride(init_stride=2.0).count_macs((1, 1, 32, 32)) < \
        DiffStride(init_stride=1.0).count_macs((1, 1, 32, 32))


def test_output_sizes_helper_and_registry():
    sizes = spectral_output_sizes((32, 33), torch.tensor([2.0, 2.0]), 4.0)
    assert sizes.tolist() == [23.0, 25.0]
    layer = MODELS.build(dict(type='DiffStride', init_ratio=0.5, smoothness=2.0))
    assert isinstance(layer, DiffStride) and 'smoothness=2.0' in repr(layer)


@pytest.mark.parametrize('kwargs,err', [
    (dict(init_ratio=0.5, init_stride=2.0), ValueError),
    (dict(init_ratio=1.5), ValueError),              # DiffStride cannot up-sample
    (dict(init_stride=0.5), ValueError),             # below the lower limit 1
    (dict(init_stride=(2.0, 3.0), shared_stride=True), ValueError),
    (dict(smoothness=0.0), ValueError),
    (dict(smoothness=float('inf')), ValueError),
    (dict(lower_limit_stride=0.5), ValueError),
    (dict(lower_limit_stride=2.0, upper_limit_stride=2.0), ValueError),
    (dict(init_stride=(1.0, 2.0, 3.0)), TypeError),
    (dict(init_stride='2'), TypeError),
    (dict(adaptive_lower_bound=1), TypeError),
])
def test_bad_arguments(kwargs, err):
    with pytest.raises(err):
        DiffStride(**kwargs)


def test_bad_inputs():
    layer = DiffStride()
    with pytest.raises(ValueError, match='4-D'):
        layer(torch.randn(8, 8))
    with pytest.raises(ValueError, match='empty'):
        layer(torch.randn(1, 1, 4, 0))
    with pytest.raises(ValueError, match='pair'):
        layer.continuous_size(32)
    with pytest.raises(TypeError, match='real'):
        spectral_pool(torch.randn(1, 1, 4, 4, dtype=torch.complex64), torch.ones(2))
