"""The fused straight-through map alpha -> query positions (the registered operator
``mmseg_dynopool::query_positions``, thesis
Eqs. 4.2-4.6) against the unfused graph DynOPool built before: ``continuous_size``
(``output_size`` + the ``max_size`` clamp) and ``query_positions``.

``gradcheck`` is no use here (the rounding is straight-through, so finite differences
see steps), hence the comparisons with the reference graph."""
import numpy as np
import pytest
import torch

from mmseg_dynopool import DynOPool
from mmseg_dynopool.ops import dynopool_sample, output_size, query_positions
from mmseg_dynopool.ops.geometry import axis_geometry

DEVICES = ['cpu', pytest.param('cuda', marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason='needs CUDA'))]


def _reference(alpha, h_in, w_in, dtype=torch.float32, min_size=1.5, max_size=None):
    """The graph DynOPool.forward built before the fused Function (same ops, same
    dtypes): float32 ratio, straight-through sizes, float64 positions."""
    ratio = 1.0 / alpha.float()
    h = output_size(h_in, ratio[0], min_size)
    w = output_size(w_in, ratio[1], min_size)
    if max_size is not None:
        h = torch.clamp(h, max=float(max_size))
        w = torch.clamp(w, max=float(max_size))
    n_h, n_w = int(h), int(w)
    return (query_positions(h_in, h, n_h, dtype), query_positions(w_in, w, n_w, dtype),
            (n_h, n_w))


def _fused(alpha, h_in, w_in, sizes, dtype=torch.float32, min_size=1.5, max_size=None):
    geoms = (axis_geometry(h_in, sizes[0], dtype, alpha.device),
             axis_geometry(w_in, sizes[1], dtype, alpha.device))
    return torch.ops.mmseg_dynopool.query_positions(
        alpha, geoms[0].positions, geoms[1].positions, h_in, w_in, min_size, max_size)[:2]


def _both(alpha_value, h_in, w_in, alpha_dtype=torch.float32, dtype=torch.float32,
          min_size=1.5, max_size=None, device='cpu', seed=0):
    """(positions, alpha.grad) of the reference graph and of the fused Function, for the
    same random upstream gradients."""
    out = []
    for fused in (False, True):
        alpha = torch.as_tensor(alpha_value, dtype=alpha_dtype).to(device).requires_grad_()
        ref_h, ref_w, sizes = _reference(alpha, h_in, w_in, dtype, min_size, max_size)
        if fused:
            alpha.grad = None
            pos_h, pos_w = _fused(alpha, h_in, w_in, sizes, dtype, min_size, max_size)
        else:
            pos_h, pos_w = ref_h, ref_w
        g = torch.Generator().manual_seed(seed)
        g_h = torch.randn(pos_h.shape, generator=g, dtype=torch.float64).to(device)
        g_w = torch.randn(pos_w.shape, generator=g, dtype=torch.float64).to(device)
        (pos_h * g_h).sum().add((pos_w * g_w).sum()).backward()
        out.append(((pos_h.detach(), pos_w.detach()), alpha.grad))
    return out


CASES = [  # (h_in, w_in, (r_h, r_w))
    (64, 48, (0.5, 0.5)),      # the human model's ratio
    (63, 47, (0.5, 0.5)),      # odd sizes
    (33, 61, (0.45, 0.45)),
    (17, 9, (0.3, 0.37)),      # r < 0.5
    (24, 24, (0.25, 0.1)),
    (7, 9, (2.0, 1.0)),        # upsampling, r = 1
    (10, 10, (1.3, 1.7)),      # r > 1
    (96, 72, (0.61, 0.45)),    # HRNet-like
    (1000, 14, (1 / 3, 0.5)),
]


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('h_in,w_in,ratio', CASES)
def test_matches_unfused_graph(h_in, w_in, ratio, dtype, device):
    alpha = [1 / ratio[0], 1 / ratio[1]]
    (ref_pos, ref_grad), (pos, grad) = _both(alpha, h_in, w_in, dtype=dtype, device=device)
    assert torch.equal(pos[0], ref_pos[0]) and torch.equal(pos[1], ref_pos[1])
    assert pos[0].dtype == pos[1].dtype == torch.float64
    assert grad.dtype == torch.float32 and (grad != 0).all()
    torch.testing.assert_close(grad, ref_grad)


@pytest.mark.parametrize('alpha_dtype,tol', [
    (torch.float64, dict(rtol=1.3e-6, atol=1e-5)),   # the gradient passes float32
    (torch.float16, dict()), (torch.bfloat16, dict())])
@pytest.mark.parametrize('h_in,w_in,ratio', CASES[::2])
def test_other_alpha_dtypes(h_in, w_in, ratio, alpha_dtype, tol):
    alpha = [1 / ratio[0], 1 / ratio[1]]
    (ref_pos, ref_grad), (pos, grad) = _both(alpha, h_in, w_in, alpha_dtype)
    assert torch.equal(pos[0], ref_pos[0]) and torch.equal(pos[1], ref_pos[1])
    assert grad.dtype == alpha_dtype
    torch.testing.assert_close(grad, ref_grad, **tol)


@pytest.mark.parametrize('h_in,w_in,alpha,min_size,max_size,dead', [
    (20, 40, (100.0, 10.0), 1.5, None, (True, False)),   # min_size binds on h
    (3, 8, (2.0, 2.0), 1.5, None, (True, False)),        # 3 * 0.5 == min_size: no grad
    (13, 8, (20.0, 4.0), 1.3, None, (True, False)),      # 0.65 < min_size = 1.3
    (4, 2, (2.0, 2.0), 1.5, None, (False, True)),        # w: 2 * 0.5 < min_size
    (10, 4, (1 / 3, 1 / 3), 1.5, 20, (True, False)),     # max_size binds on h (30)
    (10, 4, (0.5, 0.5), 1.5, 20, (True, False)),         # h == max_size: clamp blocks
    (10, 4, (1 / 1.9, 0.5), 1.5, 20, (False, False)),    # h = 19 < max_size
    (40, 40, (0.1, 0.1), 1.5, 20, (True, True)),         # both capped
    (3, 3, (0.25, 0.25), 3.0, 2, (True, True)),          # min_size rounds above max_size
])
def test_clamps_pass_no_gradient_where_they_bind(h_in, w_in, alpha, min_size, max_size,
                                                 dead):
    (ref_pos, ref_grad), (pos, grad) = _both(list(alpha), h_in, w_in, min_size=min_size,
                                             max_size=max_size)
    assert torch.equal(pos[0], ref_pos[0]) and torch.equal(pos[1], ref_pos[1])
    torch.testing.assert_close(grad, ref_grad)
    assert [bool(v == 0) for v in grad] == list(dead)
    assert [bool(v == 0) for v in ref_grad] == list(dead)


def _float32_neighbours(value: float, count: int):
    v = np.float32(value)
    lo = [v]
    for _ in range(count):
        lo.append(np.nextafter(lo[-1], np.float32(-np.inf)))
    hi = [v]
    for _ in range(count):
        hi.append(np.nextafter(hi[-1], np.float32(np.inf)))
    return sorted({float(x) for x in lo + hi})


@pytest.mark.parametrize('in_size,boundary,min_size,max_size', [
    (3, 1.5, 1.5, None),       # L r == min_size
    (7, 1.5, 1.5, None),
    (13, 1.3, 1.3, None),      # a min_size float32 cannot hold
    (40, 19.5, 1.5, 20),       # L r rounds to max_size
    (41, 19.5, 1.5, 20),
    (333, 255.5, 1.5, 256),
])
def test_clamp_boundaries_to_the_last_float32(in_size, boundary, min_size, max_size):
    """Alphas a few float32 ulps either side of where a clamp starts to bind: the fused
    backward decides (min_size < L r, round(L r) < max_size) exactly as the graph."""
    flips = set()
    for a in _float32_neighbours(in_size / boundary, 6):
        (ref_pos, ref_grad), (pos, grad) = _both([a, a], in_size, in_size,
                                                 min_size=min_size, max_size=max_size)
        assert torch.equal(pos[0], ref_pos[0])
        torch.testing.assert_close(grad, ref_grad)
        assert bool(grad[0] == 0) == bool(ref_grad[0] == 0)
        flips.add(bool(grad[0] == 0))
    assert flips == {True, False}  # the scan crossed the boundary


def test_cached_tables_get_no_grad_fn():
    alpha = torch.tensor([2.2, 1.7], requires_grad=True)
    geoms = (axis_geometry(31, 14, torch.float32, 'cpu'),
             axis_geometry(29, 17, torch.float32, 'cpu'))
    pos_h, pos_w, _ = torch.ops.mmseg_dynopool.query_positions(
        alpha, geoms[0].positions, geoms[1].positions, 31, 29, 1.5, None)
    assert pos_h.grad_fn is not None and pos_h.requires_grad
    for geom in geoms:
        assert geom.positions.grad_fn is None and not geom.positions.requires_grad
    (pos_h.sum() + pos_w.sum()).backward()
    assert torch.isfinite(alpha.grad).all()


def _reference_layer_forward(layer, x):
    """DynOPool.forward as it was: the unfused straight-through graph, then sampling."""
    h_in, w_in = x.shape[2:]
    h, w = layer.continuous_size((h_in, w_in), 1.0 / layer.alpha.float())
    n_h, n_w = int(h), int(w)
    geometry = (axis_geometry(h_in, n_h, x.dtype, x.device),
                axis_geometry(w_in, n_w, x.dtype, x.device))
    pos_h = query_positions(h_in, h, n_h, x.dtype)
    pos_w = query_positions(w_in, w, n_w, x.dtype)
    return dynopool_sample(x, pos_h, pos_w, layer.aggregation, geometry)


@pytest.mark.parametrize('device', DEVICES)
@pytest.mark.parametrize('aggregation', ['max', 'avg'])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('shape,ratio,max_size', [
    ((2, 3, 24, 24), 0.5, None),
    ((1, 4, 33, 19), (0.45, 0.61), None),
    ((2, 2, 7, 9), (2.0, 1.3), None),
    ((1, 3, 10, 4), 3.0, 20),            # max_size binds on h
    ((1, 2, 40, 40), 0.02, None),        # min_size binds
])
def test_layer_forward_backward_unchanged(shape, ratio, max_size, dtype, aggregation,
                                          device):
    torch.manual_seed(0)
    x0 = torch.randn(*shape, dtype=dtype, device=device)
    layer = DynOPool(ratio, aggregation=aggregation, max_size=max_size).to(device)
    results = []
    for forward in (_reference_layer_forward, lambda m, x: m(x)):
        layer.alpha.grad = None
        x = x0.clone().requires_grad_()
        # Two calls in one graph (HRNet calls a layer more than once per step).
        y = forward(layer, x)
        y2 = forward(layer, x * 0.5)
        g = torch.Generator().manual_seed(1)
        loss = (y * torch.randn(y.shape, generator=g, dtype=dtype).to(device)).sum() \
            + (y2 ** 2).sum()
        loss.backward()
        results.append((y.detach(), x.grad, layer.alpha.grad.clone()))
    (ref_y, ref_gx, ref_ga), (y, gx, ga) = results
    assert torch.equal(y, ref_y)
    torch.testing.assert_close(gx, ref_gx, rtol=0, atol=0)
    torch.testing.assert_close(ga, ref_ga)
    assert ga.dtype == torch.float32


def test_positions_made_with_autocast_off_under_bf16(monkeypatch):
    """The positions are made with autocast disabled (sizes and positions decide
    shapes and sample points: float32/float64, never bf16)."""
    from mmseg_dynopool.ops import library
    seen = []
    original = library.positions

    def spy(alpha, *args):
        seen.append(torch.is_autocast_enabled('cpu'))
        out = original(alpha, *args)
        seen.append(tuple(p.dtype for p in out) + (alpha.dtype, ))
        return out

    monkeypatch.setattr(library, 'positions', spy)
    layer = DynOPool((1 / 3, 0.5))
    x = torch.randn(1, 2, 1000, 14).bfloat16().requires_grad_()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        y = layer(x)
    assert tuple(y.shape[2:]) == (333, 7)
    assert seen == [False, (torch.float64, torch.float64, torch.float32)]
    y.float().square().mean().backward()
    assert layer.alpha.grad.dtype == torch.float32
    assert torch.isfinite(layer.alpha.grad).all() and layer.alpha.grad.abs().sum() > 0
