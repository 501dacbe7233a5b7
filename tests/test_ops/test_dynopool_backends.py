"""DynOPool's sampling op, every backend held to the reference (thesis Eq. 4.2).

Backends (``mmseg_dynopool/ops``): the C++ CPU kernel (``cpu/``), the Triton kernels
(``triton/``) and the native-op fallback (``native.py``), each checked against
``dynopool_sample_reference`` for the output and for *all* gradients: the input's and
alpha's (which flows through the query positions, Eqs. 4.3-4.6).

The Triton kernels run on CPU tensors through Triton's interpreter: ``dynopool_sample(...,
backend='triton')`` on a CPU tensor uses a copy of the kernels decorated with
``TRITON_INTERPRET=1`` (``ops/triton/__init__.py``), so nothing else in the process is
affected and each case takes milliseconds. With a GPU the same cases run the compiled
kernels on CUDA tensors (the ``cuda`` parameters, skipped without CUDA).
"""
from typing import Tuple

import pytest
import torch
import torch.nn.functional as F

from mmseg_dynopool.ops import functional, output_size, query_positions
from mmseg_dynopool.ops.functional import dynopool_sample, select_backend
from mmseg_dynopool.ops.geometry import AxisGeometry, axis_geometry
from mmseg_dynopool.ops.reference import dynopool_sample_reference
from mmseg_dynopool.ops import triton as triton_backend

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason='needs a CUDA device')
needs_triton = pytest.mark.skipif(not triton_backend.available(),
                                  reason='triton is not installed')

# (backend, device): the Triton kernels through the interpreter on CPU, natively on CUDA.
BACKENDS = [
    pytest.param('cpu', 'cpu', id='cpu-kernel'),
    pytest.param('native', 'cpu', id='native-cpu'),
    pytest.param('triton', 'cpu', id='triton-interpreter', marks=needs_triton),
    pytest.param('triton', 'cuda', id='triton-cuda', marks=[needs_triton, needs_cuda]),
    pytest.param('native', 'cuda', id='native-cuda', marks=needs_cuda),
]
TRITON = [
    pytest.param('cpu', id='interpreter', marks=needs_triton),
    pytest.param('cuda', id='cuda', marks=[needs_triton, needs_cuda]),
]
# r < 0.5, exactly 0.5 (pixel-aligned query points), between, > 1, mixed.
RATIOS = [(0.3, 0.37), (0.5, 0.5), (0.45, 0.6), (1.7, 1.3), (0.37, 1.2)]
SHAPES = [(2, 3, 13, 17), (3, 1, 8, 6)]  # odd x odd; even x even (r = 0.5: pixel-aligned)


@pytest.fixture(autouse=True)
def _require_cpu_kernel():
    if not functional.fused_kernel_available():
        pytest.fail('the compiled kernel mmseg_dynopool._C is not built (make setup)')


def _positions(h: int, w: int, ratio: Tuple[float, float], device: str,
               dtype: torch.dtype = torch.float32):
    """alpha (float64 leaf) and the differentiable query positions built from it."""
    alpha = torch.tensor([1 / ratio[0], 1 / ratio[1]], dtype=torch.float64, device=device,
                         requires_grad=True)
    r = 1 / alpha
    sh, sw = output_size(h, r[0]), output_size(w, r[1])
    return (alpha, query_positions(h, sh, int(sh), dtype),
            query_positions(w, sw, int(sw), dtype))


def _run(sample, x: torch.Tensor, ratio, aggregation: str, pos_dtype=None):
    """Output, dL/dx and dL/dalpha for L = sum(y * fixed random weights).

    ``pos_dtype``: the map dtype whose rounding the query positions follow (default
    ``x.dtype``), so a low-precision run and its float64 reference sample the same points.
    """
    x = x.detach().clone().requires_grad_()
    alpha, ph, pw = _positions(x.shape[2], x.shape[3], ratio, x.device.type,
                               pos_dtype or x.dtype)
    y = sample(x, ph, pw, aggregation)
    g = torch.Generator().manual_seed(1)
    weights = torch.randn(y.shape, generator=g, dtype=torch.float64).to(y.device, y.dtype)
    grad_x, grad_alpha = torch.autograd.grad((y * weights).sum(), (x, alpha))
    return y, grad_x, grad_alpha


def _layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@pytest.mark.parametrize('backend,device', BACKENDS)
@pytest.mark.parametrize('aggregation', ['max', 'avg'])
@pytest.mark.parametrize('ratio', RATIOS)
@pytest.mark.parametrize('shape', SHAPES)
@pytest.mark.parametrize('channels_last', [False, True], ids=['nchw', 'nhwc'])
def test_backend_matches_reference_float64(backend, device, aggregation, ratio, shape,
                                           channels_last):
    """Values, input gradient and alpha gradient equal the reference's to 1e-10."""
    torch.manual_seed(0)
    x = _layout(torch.randn(*shape, dtype=torch.float64, device=device), channels_last)

    def fast(*args):
        return dynopool_sample(*args, backend=backend)

    for got, want in zip(_run(fast, x, ratio, aggregation),
                         _run(dynopool_sample_reference, x, ratio, aggregation)):
        assert got.shape == want.shape
        assert torch.allclose(got, want, rtol=1e-10, atol=1e-10), (got - want).abs().max()


@pytest.mark.parametrize('device', TRITON)
@pytest.mark.parametrize('dtype,tol', [(torch.float32, 1e-4), (torch.bfloat16, 2e-2),
                                       (torch.float16, 2e-3)], ids=['fp32', 'bf16', 'fp16'])
@pytest.mark.parametrize('aggregation', ['max', 'avg'])
@pytest.mark.parametrize('ratio', [(0.45, 0.6), (1.7, 0.3)])
@pytest.mark.parametrize('channels_last', [False, True], ids=['nchw', 'nhwc'])
def test_triton_low_precision(device, dtype, tol, aggregation, ratio, channels_last):
    """float32/bfloat16/float16 inputs: the output keeps the input's dtype and layout; the
    kernels accumulate in float32, so values and gradients match the float64 reference on
    the same (rounded) input up to the output's rounding."""
    torch.manual_seed(0)
    x = _layout(torch.randn(2, 3, 13, 17, device=device).to(dtype), channels_last)

    def fast(*args):
        return dynopool_sample(*args, backend='triton')

    y, gx, ga = _run(fast, x, ratio, aggregation)
    y_ref, gx_ref, ga_ref = _run(dynopool_sample_reference, x.double(), ratio, aggregation,
                                 pos_dtype=dtype)
    assert y.dtype == dtype and gx.dtype == dtype and ga.dtype == torch.float64
    assert y.is_contiguous(memory_format=torch.channels_last) == channels_last
    assert torch.allclose(y.double(), y_ref, rtol=tol, atol=tol)
    assert torch.allclose(gx.double(), gx_ref, rtol=tol, atol=tol)
    # alpha's gradient sums many terms: relative to its scale.
    assert torch.allclose(ga, ga_ref, rtol=tol, atol=tol * float(ga_ref.abs().max()))


@pytest.mark.parametrize('device', TRITON)
def test_triton_many_programs_and_masks(device, monkeypatch):
    """Small launch blocks, so that every kernel runs several programs whose last lanes
    are masked, and a plane count that is not a multiple of the plane tile."""
    for prefix in ('', 'INTERPRETER_'):
        monkeypatch.setattr(triton_backend, prefix + 'BLOCK', 64)
        monkeypatch.setattr(triton_backend, prefix + 'BLOCK_NC', 4)
        monkeypatch.setattr(triton_backend, prefix + 'BLOCK_J', 4)
    monkeypatch.setattr(triton_backend, 'BLOCK_GRAD', 32)
    torch.manual_seed(0)
    x = torch.randn(2, 3, 11, 15, dtype=torch.float64, device=device)
    for aggregation in ('max', 'avg'):
        got = _run(lambda *a: dynopool_sample(*a, backend='triton'), x, (0.45, 0.55),
                   aggregation)
        want = _run(dynopool_sample_reference, x, (0.45, 0.55), aggregation)
        for a, b in zip(got, want):
            assert torch.allclose(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize('backend,device', BACKENDS)
def test_max_ties_follow_max_pool2d(backend, device):
    """Ratio 0.5 on an even map equals max_pool2d, including its tie-break: the first
    maximum in row-major order gets the gradient."""
    x = (torch.arange(96, dtype=torch.float64, device=device).view(1, 2, 6, 8) % 3)
    xg = x.clone().requires_grad_()
    _, ph, pw = _positions(6, 8, (0.5, 0.5), device, x.dtype)
    y = dynopool_sample(xg, ph.detach(), pw.detach(), 'max', backend=backend)
    xr = x.clone().requires_grad_()
    y_ref = F.max_pool2d(xr, 2)
    assert torch.equal(y, y_ref)
    g = torch.arange(y.numel(), dtype=x.dtype, device=device).view(y.shape) + 1
    y.backward(g)
    y_ref.backward(g)
    assert torch.equal(xg.grad, xr.grad)


@pytest.mark.parametrize('backend,device', BACKENDS)
@pytest.mark.parametrize('aggregation', ['max', 'avg'])
def test_nan_propagates_like_the_reference(backend, device, aggregation):
    """A NaN reaches every sample that interpolates from it (0 * NaN is NaN), as in the
    reference, and the max of a cell with a NaN sample is NaN (as in max_pool2d)."""
    x = torch.randn(1, 2, 7, 9, dtype=torch.float64, device=device)
    x[0, 0, 3, 4] = float('nan')
    _, ph, pw = _positions(7, 9, (0.45, 0.6), device, x.dtype)
    y = dynopool_sample(x, ph, pw, aggregation, backend=backend)
    y_ref = dynopool_sample_reference(x, ph, pw, aggregation)
    assert torch.isnan(y).any()
    assert torch.equal(torch.isnan(y), torch.isnan(y_ref))
    assert torch.allclose(y.nan_to_num(), y_ref.nan_to_num(), atol=1e-12)


@pytest.mark.parametrize('device', TRITON)
def test_triton_input_gradient_only_or_position_gradient_only(device):
    """Each backward half runs on its own (frozen alpha; frozen input)."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 9, 11, dtype=torch.float64, device=device)
    _, ph, pw = _positions(9, 11, (0.6, 0.4), device, x.dtype)
    for agg in ('max', 'avg'):
        xg = x.clone().requires_grad_()
        y = dynopool_sample(xg, ph.detach(), pw.detach(), agg, backend='triton')
        y.sum().backward()
        xr = x.clone().requires_grad_()
        dynopool_sample_reference(xr, ph.detach(), pw.detach(), agg).sum().backward()
        assert torch.allclose(xg.grad, xr.grad, atol=1e-12)
        p1, p2 = ph.detach().requires_grad_(), pw.detach().requires_grad_()
        g1 = torch.autograd.grad(dynopool_sample(x, p1, p2, agg, backend='triton').sum(),
                                 (p1, p2))
        q1, q2 = ph.detach().requires_grad_(), pw.detach().requires_grad_()
        g2 = torch.autograd.grad(dynopool_sample_reference(x, q1, q2, agg).sum(), (q1, q2))
        for a, b in zip(g1, g2):
            assert torch.allclose(a, b, atol=1e-10)


def test_triton_interpreter_does_not_leak():
    """Running the interpreted kernels leaves triton.language unpatched and the
    environment as it was (the rest of the suite is unaffected)."""
    if not triton_backend.available():
        pytest.skip('triton is not installed')
    import os

    import triton.language as tl
    before = (os.environ.get('TRITON_INTERPRET'), tl.load, tl.store, tl.reduce)
    x = torch.randn(1, 1, 6, 6, dtype=torch.float64)
    _, ph, pw = _positions(6, 6, (0.5, 0.5), 'cpu', x.dtype)
    dynopool_sample(x, ph, pw, 'max', backend='triton')
    assert (os.environ.get('TRITON_INTERPRET'), tl.load, tl.store, tl.reduce) == before


# ----------------------------------------------------------------------- dispatcher


def test_dispatch_cpu(monkeypatch):
    x = torch.randn(1, 1, 4, 4)
    assert select_backend(x) == 'cpu'
    assert select_backend(x.double()) == 'cpu'
    assert select_backend(x.bfloat16()) == 'native'
    assert select_backend(x.half()) == 'native'
    monkeypatch.setattr(functional, '_ext', None)
    assert select_backend(x) == 'native'


@needs_cuda
def test_dispatch_cuda():
    x = torch.randn(1, 1, 4, 4, device='cuda')
    expected = 'triton' if triton_backend.available() else 'native'
    for dtype in (torch.float32, torch.bfloat16, torch.float16, torch.float64):
        assert select_backend(x.to(dtype)) == expected


def test_dispatch_rejects_unknown_names_and_mismatched_geometry():
    x = torch.randn(1, 1, 8, 8)
    _, ph, pw = _positions(8, 8, (0.5, 0.5), 'cpu')
    with pytest.raises(ValueError, match='backend'):
        dynopool_sample(x, ph, pw, backend='cuda')
    with pytest.raises(ValueError, match='aggregation'):
        dynopool_sample(x, ph, pw, aggregation='median')
    wrong = (axis_geometry(8, 3, x.dtype, x.device), axis_geometry(8, 4, x.dtype, x.device))
    with pytest.raises(ValueError, match='geometry'):
        dynopool_sample(x, ph, pw, geometry=wrong)


# ------------------------------------------------------------------------- geometry


@pytest.mark.parametrize('length,n_out', [(1, 2), (5, 3), (13, 6), (16, 8), (7, 20),
                                          (33, 2), (100, 45)])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_geometry_tables(length, n_out, dtype):
    """The cached tables equal those built from query_positions' values, and the cell
    ranges of the gather backward are exactly the cells touching each pixel."""
    geom = axis_geometry(length, n_out, dtype, 'cpu')
    pos = query_positions(length, torch.tensor(float(n_out)), n_out, dtype).detach()
    assert torch.equal(geom.positions, pos)
    ref = AxisGeometry.from_positions(pos, length)
    for name in ('i0', 'i1', 'frac', 'inside', 'cell_lo', 'cell_hi'):
        assert torch.equal(getattr(geom, name), getattr(ref, name)), name
    touching = [set() for _ in range(length)]
    for k in range(2 * n_out):
        touching[int(geom.i0[k])].add(k // 2)
        touching[int(geom.i1[k])].add(k // 2)
    for h in range(length):
        cells = set(range(int(geom.cell_lo[h]), int(geom.cell_hi[h])))
        assert touching[h] <= cells, h
        assert len(cells) <= len(touching[h]) + 1  # at most one extra (zero weight) cell
    assert geom.max_cells == int((geom.cell_hi - geom.cell_lo).max())
    assert axis_geometry(length, n_out, dtype, 'cpu') is geom  # cached


def test_geometry_rejects_unsorted_positions_for_the_gather_backward():
    geom = AxisGeometry.from_positions(torch.tensor([3.0, 1.0, 2.0, 0.5]), 5)
    with pytest.raises(ValueError, match='non-decreasing'):
        geom.max_cells


# ------------------------------------------------------------ compiled Triton kernels


def _signatures(x_ty: str, is_max: bool):
    """Argument types of the three kernels (as the launchers in ops/triton pass them)."""
    acc = 'fp64' if x_ty == 'fp64' else 'fp32'
    arg = '*i8' if is_max else f'*{x_ty}'
    tables = {'r0_ptr': '*i64', 'r1_ptr': '*i64', 'fr_ptr': f'*{acc}', 'c0_ptr': '*i64',
              'c1_ptr': '*i64', 'fc_ptr': f'*{acc}'}
    strides = lambda p: {f's{p}{d}': 'i32' for d in 'nchw'}  # noqa: E731
    forward = {'x_ptr': f'*{x_ty}', 'out_ptr': f'*{x_ty}', 'arg_ptr': arg, **tables,
               'total': 'i32', 'C': 'i32', 'Ho': 'i32', 'Wo': 'i32', **strides('x'),
               **strides('o')}
    input_grad = {'g_ptr': f'*{x_ty}', 'arg_ptr': arg, 'gx_ptr': f'*{x_ty}', **tables,
                  'hlo_ptr': '*i64', 'hhi_ptr': '*i64', 'wlo_ptr': '*i64', 'whi_ptr': '*i64',
                  'total': 'i32', 'C': 'i32', 'H': 'i32', 'W': 'i32', 'span_h': 'i32',
                  'span_w': 'i32', **strides('g'), **strides('x')}
    position_grad = {'x_ptr': f'*{x_ty}', 'g_ptr': f'*{x_ty}', 'arg_ptr': arg,
                     'ph_ptr': f'*{acc}', 'pw_ptr': f'*{acc}', **tables, 'NC': 'i32',
                     'C': 'i32', 'Wo': 'i32', 'n_j_blocks': 'i32', 'sph': 'i32',
                     'spw_p': 'i32', 'spw_i': 'i32', **strides('x'), **strides('g')}
    return forward, input_grad, position_grad


@needs_triton
@pytest.mark.parametrize('x_ty,is_max,channels_last', [('fp32', True, False),
                                                        ('bf16', False, True)])
def test_triton_kernels_compile_for_sm90(x_ty, is_max, channels_last):
    """The kernels compile to a Hopper cubin (no GPU needed): catches compiled-mode errors
    the interpreter does not see (typing, constexpr branches, reductions)."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from mmseg_dynopool.ops.triton import kernels
    forward, input_grad, position_grad = _signatures(x_ty, is_max)
    layout = dict(IS_MAX=is_max, INT64=False)
    jobs = [(kernels.forward_kernel, forward, dict(layout, CHANNELS_LAST=channels_last,
                                                   BLOCK=512)),
            (kernels.input_grad_kernel, input_grad, dict(layout,
                                                         CHANNELS_LAST=channels_last,
                                                         BLOCK=256)),
            (kernels.position_grad_kernel, position_grad, dict(layout, BLOCK_NC=16,
                                                               BLOCK_J=64))]
    for fn, signature, constexprs in jobs:
        signature = dict(signature, **{k: 'constexpr' for k in constexprs})
        try:
            compiled = triton.compile(ASTSource(fn, signature, constexprs),
                                      target=GPUTarget('cuda', 90, 32))
        except (FileNotFoundError, RuntimeError) as err:
            if 'ptxas' in str(err):
                pytest.skip(f'no ptxas: {err}')
            raise
        assert compiled.asm.get('cubin'), fn.__name__
