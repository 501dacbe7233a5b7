"""FrozenDynOPool: the fused kernel in eager PyTorch (as fast as the live layer, same
values), standard resize + pooling ops when traced (ONNX)."""
import pytest
import torch

from mmseg_dynopool import DynOPool
from mmseg_dynopool.deploy.frozen_layer import FrozenDynOPool
from mmseg_dynopool.ops import library
from mmseg_dynopool.ops.functional import fused_kernel_available


def _pair(aggregation, ratio=(0.55, 0.43), shape=(2, 3, 37, 29)):
    live = DynOPool(ratio, aggregation=aggregation).eval()
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = live(x)
    frozen = FrozenDynOPool({tuple(shape[2:]): tuple(want.shape[2:])}, aggregation)
    return x, want, frozen


@pytest.mark.skipif(not fused_kernel_available(), reason='the C++ kernel is not built')
@pytest.mark.parametrize('aggregation', ['max', 'avg'])
def test_eager_frozen_layer_runs_the_fused_kernel_with_the_live_values(aggregation,
                                                                       monkeypatch):
    x, want, frozen = _pair(aggregation)
    calls = []
    original = library.cpu_forward
    monkeypatch.setattr(library, 'CPU_KERNELS', (
        lambda *a: calls.append(1) or original(*a), library.cpu_backward))
    with torch.no_grad():
        got = frozen(x)
    assert calls, 'the fused kernel did not run'
    assert torch.equal(got, want)


@pytest.mark.parametrize('aggregation', ['max', 'avg'])
def test_traced_frozen_layer_is_resize_plus_pooling(aggregation):
    x, want, frozen = _pair(aggregation)
    with torch.no_grad():
        traced = torch.jit.trace(frozen, (x, ))
        got = traced(x)
    kinds = {node.kind() for node in traced.graph.nodes()}
    assert 'aten::upsample_bilinear2d' in kinds
    assert ('aten::max_pool2d' if aggregation == 'max' else 'aten::avg_pool2d') in kinds
    assert not any(kind.startswith('mmseg_dynopool::') for kind in kinds)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
