"""DynOPool's sampling and positions ops as registered PyTorch operators
(``mmseg_dynopool::sample`` / ``query_positions`` and their backwards): PyTorch's own
op checker, and ``torch.compile`` through them without a graph break."""
import pytest
import torch

import mmseg_dynopool  # noqa: F401  (registers the operators)
from mmseg_dynopool import DynOPool
from mmseg_dynopool.ops import library
from mmseg_dynopool.ops.functional import fused_kernel_available
from mmseg_dynopool.ops.geometry import axis_geometry

OPS = torch.ops.mmseg_dynopool
needs_ext = pytest.mark.skipif(not fused_kernel_available(),
                               reason='the C++ kernel is not built')


def _sample_args(dtype, channels_last, is_max, shape=(2, 3, 13, 10), out=(5, 6), seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=dtype)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    x.requires_grad_()
    geoms = [axis_geometry(shape[2], out[0], dtype, 'cpu'),
             axis_geometry(shape[3], out[1], dtype, 'cpu')]
    pos = [geom.positions.clone().requires_grad_() for geom in geoms]
    return (x, *pos, *library.table_args(geoms[0], dtype),
            *library.table_args(geoms[1], dtype), is_max)


@needs_ext
@pytest.mark.parametrize('is_max', [True, False], ids=['max', 'avg'])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('channels_last', [False, True], ids=['nchw', 'nhwc'])
def test_opcheck_sample(is_max, dtype, channels_last):
    args = _sample_args(dtype, channels_last, is_max)
    torch.library.opcheck(OPS.sample.default, args)


@needs_ext
@pytest.mark.parametrize('is_max', [True, False], ids=['max', 'avg'])
def test_opcheck_sample_backward(is_max):
    args = _sample_args(torch.float32, False, is_max)
    x = args[0].detach()
    out, arg = OPS.sample(x, *args[1:])
    grad = torch.randn_like(out)
    tables = args[3:17]
    for need_x, need_pos in ((True, True), (True, False), (False, True)):
        torch.library.opcheck(OPS.sample_backward.default,
                              (grad, x, arg, *tables, is_max, need_x, need_pos))


@pytest.mark.parametrize('max_size', [None, 7])
def test_opcheck_query_positions(max_size):
    geoms = [axis_geometry(29, 11, torch.float32, 'cpu'),
             axis_geometry(31, 6, torch.float32, 'cpu')]
    alpha = torch.tensor([29 / 11, 31 / 6], requires_grad=True)
    torch.library.opcheck(OPS.query_positions.default,
                          (alpha, geoms[0].positions, geoms[1].positions, 29, 31, 1.5,
                           max_size))
    grads = (torch.randn(22, dtype=torch.float64), torch.randn(12, dtype=torch.float64))
    torch.library.opcheck(OPS.query_positions_backward.default,
                          (*grads, 1 / alpha.detach(), 29, 31, 1.5, max_size))


@needs_ext
@pytest.mark.parametrize('is_max', [True, False], ids=['max', 'avg'])
@pytest.mark.parametrize('channels_last', [False, True], ids=['nchw', 'nhwc'])
def test_eager_path_equals_the_operator(is_max, channels_last):
    """Eager calls skip torch.library's Python autograd wrapper (``EagerSample``,
    ``EagerPositions``); values and every gradient equal the operators'."""
    results = []
    for through_op in (False, True):
        args = _sample_args(torch.float32, channels_last, is_max, seed=3)
        x, pos_h, pos_w = args[:3]
        alpha = torch.tensor([13 / 5, 10 / 6], requires_grad=True)
        geoms = [axis_geometry(13, 5, torch.float32, 'cpu'),
                 axis_geometry(10, 6, torch.float32, 'cpu')]
        if through_op:
            ph, pw, _ = OPS.query_positions(alpha, geoms[0].positions,
                                            geoms[1].positions, 13, 10, 1.5, None)
            out = OPS.sample(x, ph, pw, *args[3:])[0]
        else:
            ph, pw = library.EagerPositions.apply(alpha, geoms[0].positions,
                                                  geoms[1].positions, 13, 10, 1.5, None)
            out = library.EagerSample.apply(x, ph, pw, tuple(args[3:10]),
                                            tuple(args[10:17]), is_max,
                                            library.CPU_KERNELS)
        (out * torch.arange(out.numel()).view_as(out).sin()).sum().backward()
        results.append((out.detach(), x.grad, alpha.grad))
    for eager, op in zip(*results):
        assert torch.equal(eager, op)
