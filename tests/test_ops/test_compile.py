"""``torch.compile`` through DynOPool: no graph break inside the op, same numbers as eager.

The tests compile with ``backend='aot_eager'``: Dynamo and AOTAutograd - what needs our
fake implementations and registered autograd - without Inductor's code generation, which
takes minutes on 2 CPU cores (``tools/benchmark/bench_compile.py`` measures Inductor).
"""
import copy

import pytest
import torch

import mmseg_dynopool  # noqa: F401
from mmseg_dynopool import DynOPool
from mmseg_dynopool.ops import library
from mmseg_dynopool.ops.functional import fused_kernel_available
from mmseg_dynopool.ops.geometry import axis_geometry

from ..conftest import tiny_hrnet_extra

OPS = torch.ops.mmseg_dynopool
pytestmark = pytest.mark.skipif(not fused_kernel_available(),
                                reason='the C++ kernel is not built')


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _op_loss(x, alpha, is_max):
    geoms = (axis_geometry(23, 11, x.dtype, 'cpu'), axis_geometry(30, 14, x.dtype, 'cpu'))
    pos_h, pos_w, _ = OPS.query_positions(alpha, geoms[0].positions, geoms[1].positions,
                                          23, 30, 1.5, None)
    out, _ = OPS.sample(x, pos_h, pos_w, *library.table_args(geoms[0], x.dtype),
                        *library.table_args(geoms[1], x.dtype), is_max)
    return (out * out.detach().sin()).sum()


@pytest.mark.parametrize('is_max', [True, False], ids=['max', 'avg'])
def test_op_forward_backward_compiles_without_break_and_matches_eager(is_max):
    results = []
    for compiled in (False, True):
        x = torch.randn(2, 3, 23, 30, generator=torch.Generator().manual_seed(0),
                        requires_grad=True)
        alpha = torch.tensor([23 / 11, 30 / 14], requires_grad=True)
        fn = torch.compile(_op_loss, backend='aot_eager', fullgraph=True) if compiled \
            else _op_loss  # fullgraph: any graph break is an error
        loss = fn(x, alpha, is_max)
        loss.backward()
        results.append((loss.detach(), x.grad, alpha.grad))
    explain = torch._dynamo.explain(_op_loss)(x, alpha, is_max)
    assert explain.graph_break_count == 0 and explain.graph_count == 1
    for eager, comp in zip(*results):
        torch.testing.assert_close(comp, eager, rtol=1e-6, atol=1e-6)


def test_layer_breaks_only_at_the_host_size_plan():
    """The layer's integer sizes are a host decision (``DynOPool._plan``): the graph
    breaks there, before the op, and nowhere else; values and gradients as eager."""
    layer = DynOPool((0.48, 0.41))

    def step(x):
        return (layer(x) ** 2).sum()

    x = torch.randn(2, 3, 23, 30, generator=torch.Generator().manual_seed(1),
                    requires_grad=True)
    explain = torch._dynamo.explain(step)(x)
    reasons = [str(r.reason) for r in explain.break_reasons]
    assert explain.graph_break_count == 1, reasons
    assert all('disable' in r for r in reasons), reasons
    eager = step(x)
    eager.backward()
    want = (x.grad.clone(), layer.alpha.grad.clone())
    x.grad = layer.alpha.grad = None
    got = torch.compile(step, backend='aot_eager')(x)
    got.backward()
    torch.testing.assert_close(got, eager, rtol=1e-6, atol=0)
    torch.testing.assert_close(x.grad, want[0], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(layer.alpha.grad, want[1], rtol=1e-6, atol=0)


def _train(model, step_fn, steps=3):
    alphas = [p for n, p in model.named_parameters() if n.endswith('alpha')]
    others = [p for n, p in model.named_parameters() if not n.endswith('alpha')]
    opt = torch.optim.SGD([dict(params=others), dict(params=alphas, lr=2e-3)], lr=0.05)
    losses, sizes = [], set()
    for i in range(steps):
        x = torch.randn(2, 3, 64, 56, generator=torch.Generator().manual_seed(i))
        opt.zero_grad()
        loss = step_fn(model, x)
        loss.backward()
        opt.step()
        losses.append(float(loss))
        sizes.add(tuple(m.last_size for m in model.modules() if isinstance(m, DynOPool)))
    return losses, sizes


def _hrnet_loss(model, x):
    return sum((o ** 2).mean() for o in model(x))


def test_tiny_hrnet_training_under_compile_matches_eager():
    from mmseg_dynopool.models.backbones import DynOPoolHRNet
    torch.manual_seed(0)
    eager_model = DynOPoolHRNet(tiny_hrnet_extra(), init_ratios=0.45)
    compiled_model = copy.deepcopy(eager_model)
    eager, sizes = _train(eager_model, _hrnet_loss)
    compiled, compiled_sizes = _train(compiled_model,
                                      torch.compile(_hrnet_loss, backend='aot_eager'))
    assert len(sizes) > 1  # the sizes changed during the run (recompilation)
    assert compiled_sizes == sizes
    assert compiled == pytest.approx(eager, rel=1e-5)
    for (name, a), b in zip(eager_model.named_parameters(), compiled_model.parameters()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=name)
