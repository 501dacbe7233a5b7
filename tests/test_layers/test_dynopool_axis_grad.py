"""DynOPool's ``axis_grad='per_query'``: the forward pass stays Eqs. 4.1-4.6 bit for bit,
the task (positional) gradient of each axis' alpha is rescaled by
``sqrt(n_other / n_axis)`` (``n``: the axis' output size, half its query points), and
the GMACs gradient (Eqs. 4.7-4.8, through ``continuous_size``) is untouched.
(docs/dynopool.md, "Axis gradient"; the study in docs/information_asymmetry.md.)"""
import math

import pytest
import torch

import mmseg_dynopool  # noqa: F401
from mmseg_dynopool import DynOPool
from mmseg_dynopool.layers.dynopool import per_query_alpha

from ..conftest import tiny_hrnet_extra

# (input H, W, init ratio): non-square inputs, anisotropic ratios, a square output.
CASES = [((20, 60), (0.5, 0.5)), ((37, 23), (0.45, 0.7)), ((32, 32), (0.5, 0.5)),
         ((17, 90), (0.6, 0.33))]


def _pair(ratio, aggregation='max'):
    """Two layers with the same alpha, thesis-exact and per-query."""
    return (DynOPool(ratio, aggregation=aggregation),
            DynOPool(ratio, aggregation=aggregation, axis_grad='per_query'))


def _task(layer, x):
    """A loss whose gradient on the positions is neither zero nor uniform."""
    y = layer(x)
    return (y * y.detach().cos()).sum()


@pytest.mark.parametrize('aggregation', ['max', 'avg'])
@pytest.mark.parametrize('size,ratio', CASES)
def test_forward_and_input_gradient_are_bit_identical(size, ratio, aggregation):
    outs = []
    for layer in _pair(ratio, aggregation):
        x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(3),
                        requires_grad=True)
        y = layer(x)
        (y * y.detach().cos()).sum().backward()
        outs.append((y.detach(), x.grad, layer.last_size))
    assert outs[0][2] == outs[1][2]
    assert torch.equal(outs[0][0], outs[1][0])
    assert torch.equal(outs[0][1], outs[1][1])


@pytest.mark.parametrize('size,ratio', CASES)
def test_alpha_gradient_scaled_by_the_query_counts(size, ratio):
    grads = []
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(5))
    for layer in _pair(ratio):
        _task(layer, x).backward()
        grads.append(layer.alpha.grad.clone())
        h_out, w_out = layer.last_size
    exact, per_query = grads
    assert (exact != 0).all()
    # 2 h_out and 2 w_out query points: divide by each axis' count relative to the
    # geometric mean of both.
    n_h, n_w = 2 * h_out, 2 * w_out
    scale = torch.tensor([math.sqrt(n_h * n_w) / n_h, math.sqrt(n_h * n_w) / n_w])
    torch.testing.assert_close(per_query, exact * scale, rtol=1e-6, atol=0)
    if h_out == w_out:
        assert torch.equal(per_query, exact)


def test_per_query_removes_the_length_growth_on_a_long_thin_input():
    """On a 1:3 input the exact gradient of alpha_w is a multiple of alpha_h's for a
    loss with no preferred direction; per_query divides that multiple by 3."""
    x = torch.randn(4, 3, 24, 72, generator=torch.Generator().manual_seed(0))
    ratios = []
    for layer in _pair(0.5):
        _task(layer, x).backward()
        g = layer.alpha.grad.abs()
        ratios.append(float(g[1] / g[0]))
    assert ratios[1] == pytest.approx(ratios[0] / 3, rel=1e-5)


def test_gmacs_gradient_unchanged():
    """The cost term's gradient goes through ``continuous_size``, not the positions:
    alone it is the same with both settings, and added to the task loss only the task
    part is rescaled."""
    x = torch.randn(2, 3, 30, 70, generator=torch.Generator().manual_seed(7))
    cost, total, task = [], [], []
    for layer in _pair((0.55, 0.4)):
        h, w = layer.continuous_size((30, 70))
        (h * w).backward()
        cost.append(layer.alpha.grad.clone())
        layer.alpha.grad = None
        _task(layer, x).backward()
        task.append(layer.alpha.grad.clone())
        layer.alpha.grad = None
        h, w = layer.continuous_size((30, 70))
        (_task(layer, x) + 50.0 * h * w).backward()
        total.append(layer.alpha.grad.clone())
    assert torch.equal(cost[0], cost[1]) and (cost[0] != 0).all()
    torch.testing.assert_close(total[1] - 50.0 * cost[1], task[1], rtol=1e-5, atol=1e-3)
    assert not torch.allclose(task[0], task[1])


def test_helper_keeps_alpha_bit_for_bit():
    alpha = torch.tensor([2.123456789, 3.987654321], requires_grad=True)
    out = per_query_alpha(alpha, 7, 29)
    assert torch.equal(out, alpha.detach())
    out.backward(torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(
        alpha.grad, torch.tensor([math.sqrt(29 / 7), math.sqrt(7 / 29)]), rtol=1e-6, atol=0)


def test_bad_value_names_the_argument():
    with pytest.raises(ValueError, match='axis_grad'):
        DynOPool(axis_grad='per_axis')


def test_extra_repr_and_config():
    from mmseg.registry import MODELS as SEG_MODELS

    from mmseg_dynopool.models.backbones import DynOPoolHRNet
    assert "axis_grad='per_query'" in repr(DynOPool(axis_grad='per_query'))
    assert "axis_grad='exact'" in repr(DynOPool())
    layer = SEG_MODELS.build(dict(type='DynOPool', init_ratio=0.4, axis_grad='per_query'))
    assert layer.axis_grad == 'per_query'
    backbone = DynOPoolHRNet(tiny_hrnet_extra(), pool_cfg=dict(axis_grad='per_query'))
    pools = [m for m in backbone.modules() if isinstance(m, DynOPool)]
    assert len(pools) == 5 and all(p.axis_grad == 'per_query' for p in pools)
    assert all(p.axis_grad == 'exact' for p in DynOPoolHRNet(tiny_hrnet_extra()).modules()
               if isinstance(p, DynOPool))


def _eager_reference(size=(23, 61)):
    layer = DynOPool((0.48, 0.41), axis_grad='per_query')
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))
    loss = _task(layer, x)
    loss.backward()
    return layer, x, loss.detach(), layer.alpha.grad.clone()


def test_jit_trace_keeps_the_scaled_gradient():
    layer, x, loss, grad = _eager_reference()
    layer.alpha.grad = None
    traced = torch.jit.trace(layer, (x, ), check_trace=False)
    y = traced(x)
    got = (y * y.detach().cos()).sum()
    got.backward()
    assert torch.equal(got.detach(), loss)
    torch.testing.assert_close(layer.alpha.grad, grad, rtol=1e-6, atol=0)


def test_compile_keeps_the_scaled_gradient():
    torch._dynamo.reset()
    try:
        layer, x, loss, grad = _eager_reference()
        layer.alpha.grad = None
        got = torch.compile(lambda t: _task(layer, t), backend='aot_eager')(x)
        got.backward()
        torch.testing.assert_close(got.detach(), loss, rtol=1e-6, atol=0)
        torch.testing.assert_close(layer.alpha.grad, grad, rtol=1e-6, atol=0)
    finally:
        torch._dynamo.reset()
