"""Host synchronisation of ShapeAdaptor and DiffStride (``ops/host_cache.py``).

Both keep a host copy of their parameter's value (ShapeAdaptor: its scale; DiffStride:
its guarded stride), keyed by the parameter's version counter, storage and dtype, and
refreshed together with every other stale resizing layer's copy - DynOPool's included -
in one device->host transfer. Checked here:

* a training iteration (forward, the GMACs hook's ``host_estimate`` and its per-layer
  ``host_ratio`` logging, backward, optimizer step) of models with several ShapeAdaptor
  and DiffStride layers (one also with a DynOPool; DynOPoolHRNet with either type, 5
  layers called 17 times) reads the device exactly once, a forward without a parameter
  update not at all; on a GPU the same with ``torch.cuda.set_sync_debug_mode``;
* the host sizes and ratios are bit-identical to the device computation they replace;
* every way the parameter can change is seen, and DiffStride's guard still works.
"""
import copy

import pytest
import torch
from torch import nn

import mmseg_dynopool.layers.baselines.diffstride as diffstride_module
from mmseg_dynopool import DynOPool, resizing_layers
from mmseg_dynopool.models.backbones import DynOPoolHRNet
from mmseg_dynopool.models.cost import profile_gmacs
from mmseg_dynopool.layers import (DiffStride, ShapeAdaptor, ratio_parameter,
                                spectral_output_sizes)
from mmseg_dynopool.layers.host_cache import LIVE_LAYERS

from ..conftest import cuda_sync_messages
from .test_dynopool_host_sync import EXTRA, _py_reads, count_host_reads


class _Mixed(nn.Module):
    """Four ShapeAdaptors and DiffStrides (two of them called three times, on several
    sizes) between convs, optionally a DynOPool too."""

    def __init__(self, with_dynopool: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.sa1 = ShapeAdaptor(0.7)
        self.ds1 = DiffStride(init_stride=(1.6, 2.2), smoothness=1.0)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.sa2 = ShapeAdaptor(0.5, r1=0.25)
        self.ds2 = DiffStride(init_stride=1.5, smoothness=2.0, shared_stride=True)
        self.dp = DynOPool((0.6, 0.7)) if with_dynopool else None

    def forward(self, x):
        x = self.ds1(self.sa1(self.conv1(x)))
        total = 0
        for _ in range(3):  # shared layers, several calls per forward
            y = self.ds2(self.sa2(self.conv2(x)))
            total = total + y.mean()
            x = x + 0.1
        if self.dp is not None:
            total = total + self.dp(x).mean()
        return total


def _iteration(model, opt, profile, layers, x, loss=None) -> float:
    """One training iteration as the GMACs hook drives it: forward, the logged
    estimate from host sizes, backward, step, the logged per-layer ratios."""
    opt.zero_grad()
    out = model(x)
    gmacs = profile.host_estimate(layers)
    out = loss(out) if loss is not None else out
    out.backward()
    opt.step()
    for layer in layers:
        layer.host_ratio
    return gmacs


@pytest.mark.parametrize('with_dynopool', [False, True])
def test_one_host_read_per_training_iteration(with_dynopool):
    torch.manual_seed(0)
    model = _Mixed(with_dynopool).train()
    layers = [m for _, m in resizing_layers(model)]
    assert len(layers) == (5 if with_dynopool else 4)
    profile = profile_gmacs(model, (29, 34))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x = torch.randn(2, 3, 29, 34)
    _iteration(model, opt, profile, layers, x)
    params = []
    for _ in range(3):
        with count_host_reads() as counts:
            _iteration(model, opt, profile, layers, x)
        assert _py_reads(counts) == 1, counts
        assert counts.get('tolist') == 1, counts
        # The host estimate is the differentiable one's value (Eq. 4.7).
        assert profile.host_estimate(layers) == pytest.approx(
            float(profile.estimate(layers)), rel=1e-6)  # estimate(): float32
        params.append(torch.cat([ratio_parameter(m).detach().reshape(-1).clone()
                                 for m in layers]))
    assert not torch.equal(params[0], params[-1])  # the parameters did move
    with torch.no_grad():
        with count_host_reads() as counts:
            model(x)  # nothing changed since the last iteration's logging read
            profile.host_estimate(layers)
            [m.output_size((40, 31)) for m in layers if not isinstance(m, DynOPool)]
        assert _py_reads(counts) == 0, counts


def test_gmacs_loss_estimate_reads_nothing_more():
    """With lambda > 0 the hook adds the differentiable estimate (Eq. 4.7) to the loss:
    chained layers get their integer input sizes from the host copies (in_values), so
    the iteration still reads the device once, and the estimate's value and gradient
    are those of the chain without them."""
    torch.manual_seed(0)
    model = _Mixed(with_dynopool=True).train()
    layers = [m for _, m in resizing_layers(model)]
    profile = profile_gmacs(model, (29, 34))
    assert any(p is not None for p in profile.pool_parents)  # layers are chained
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x = torch.randn(2, 3, 29, 34)

    def loss(out):
        return out + 0.1 * profile.estimate(layers)

    _iteration(model, opt, profile, layers, x, loss)
    for _ in range(2):
        with count_host_reads() as counts:
            _iteration(model, opt, profile, layers, x, loss)
        assert _py_reads(counts) == 1, counts
    # Same value and gradient as the chain that reads the sizes back.
    with_host = profile.estimate(layers)
    grads = torch.autograd.grad(with_host, [ratio_parameter(m) for m in layers])
    sizes = [None] * len(layers)
    for i in profile.pool_order:
        parent = profile.pool_parents[i]
        in_size = sizes[parent] if parent is not None else profile.pool_in_sizes[i]
        sizes[i] = layers[i].continuous_size(in_size)
    plain = sum((h * w) / float(h0 * w0) * g for (h, w), (h0, w0), g in
                zip(sizes, profile.pool_out_sizes, profile.owned_gmacs)) + \
        profile.fixed_gmacs
    assert float(plain) == pytest.approx(float(with_host), rel=1e-6)
    for a, b in zip(grads, torch.autograd.grad(plain, [ratio_parameter(m) for m in
                                                       layers])):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize('kind', ['ShapeAdaptor', 'DiffStride'])
def test_one_host_read_per_training_iteration_hrnet(kind):
    """DynOPoolHRNet with ShapeAdaptor / DiffStride layers: 5 layers, 17 calls."""
    torch.manual_seed(0)
    cfg = dict(type=kind, r1=0.25) if kind == 'ShapeAdaptor' else dict(type=kind)
    model = DynOPoolHRNet(EXTRA, pool_cfg=cfg).train()
    layers = [m for _, m in resizing_layers(model)]
    assert len(layers) == 5 and {type(m).__name__ for m in layers} == {kind}
    calls = []
    for layer in layers:
        layer.register_forward_pre_hook(lambda mod, args: calls.append(1))
    shape = (64, 56)
    profile = profile_gmacs(model, shape)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x = torch.randn(2, 3, *shape)
    calls.clear()

    def loss(outs):
        return sum(o.square().mean() for o in outs)

    _iteration(model, opt, profile, layers, x, loss)
    assert len(calls) >= 15
    for _ in range(2):
        with count_host_reads() as counts:
            _iteration(model, opt, profile, layers, x, loss)
        assert _py_reads(counts) == 1, counts


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_cuda_sync_debug_mode_one_sync_per_iteration():
    """On a GPU, torch's own sync detector sees one synchronisation per iteration."""
    torch.manual_seed(0)
    model = _Mixed(with_dynopool=True).cuda().train()
    layers = [m for _, m in resizing_layers(model)]
    profile = profile_gmacs(model, (29, 34))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x = torch.randn(2, 3, 29, 34, device='cuda')
    _iteration(model, opt, profile, layers, x)
    torch.cuda.synchronize()
    for _ in range(2):
        syncs = cuda_sync_messages(lambda: _iteration(model, opt, profile, layers, x))
        assert len(syncs) <= 1, syncs


def test_all_stale_layers_of_all_types_refresh_in_one_read():
    a, b, c = ShapeAdaptor(0.75), DiffStride(init_stride=2.0), DynOPool(0.5)
    x = torch.randn(1, 1, 32, 32)
    a(x), b(x), c(x)
    with torch.no_grad():
        a.alpha.fill_(ShapeAdaptor.alpha_for_ratio(0.5, eps=1e-6))
        b.stride.fill_(4.0)
        c.alpha.fill_(4.0)
    with count_host_reads() as counts:
        assert a(x).shape[2:] == (16, 16)
        assert b(x).shape[2:] == (15, 15)  # 2 ceil(4 + 4) - 1
        assert c(x).shape[2:] == (8, 8)
    assert _py_reads(counts) == 1, counts


# ------------------------------------------------------------------ host arithmetic


def _old_shape_adaptor_sizes(layer: ShapeAdaptor, in_size) -> tuple:
    """The size computation before the host copy (on the device, read per call)."""
    alpha = layer.alpha.detach().double()
    w = torch.sigmoid(alpha)
    s = (w * layer.r1 + (1.0 - w) * layer.r2) * layer.size_penalty
    n = torch.tensor(in_size, dtype=torch.float64)
    sizes = torch.clamp(torch.floor(n * s + 1e-6), min=float(layer.min_size))
    return tuple(int(v) for v in sizes.tolist())


def _old_diffstride_sizes(layer: DiffStride, in_size) -> tuple:
    """The forward's size computation before the host copy: the bounded stride built
    with ``torch.tensor(lo)``, then spectral_output_sizes with a ``torch.tensor`` n."""
    s = layer.stride.detach().expand(2)
    lo = [layer.lower_bound(in_size[0]), layer.lower_bound(in_size[1])]
    if layer.shared_stride:
        lo = [max(lo)] * 2
    clamped = torch.minimum(torch.maximum(s, torch.tensor(lo, dtype=s.dtype)),
                            torch.full_like(s, layer.upper_limit_stride))
    eff = (s + (clamped - s)).to(torch.float64)
    n = torch.tensor([float(v) for v in in_size], dtype=torch.float64)
    half = torch.clamp(n / eff, min=2.0) / 2
    sizes = torch.minimum(n, 2 * (torch.ceil(half + layer.smoothness) - 1) + 1)
    return tuple(int(v) for v in sizes.tolist())


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_shape_adaptor_host_sizes_bit_identical(dtype):
    g = torch.Generator().manual_seed(0)
    for r1, r2, min_size in ((0.5, 1.0, 1), (0.25, 1.0, 3), (1.5, 0.5, 1)):
        layer = ShapeAdaptor(r1=r1, r2=r2, min_size=min_size).to(dtype)
        for trial in range(1500):
            with torch.no_grad():
                layer.alpha.copy_(torch.randn(1, generator=g, dtype=torch.float64) * 4)
            layer.size_penalty = 1.0 if trial % 2 else \
                float(torch.rand((), generator=g)) * 0.9 + 0.1
            in_size = tuple(int(v) for v in torch.randint(1, 2000, (2, ), generator=g))
            old = _old_shape_adaptor_sizes(layer, in_size)
            assert layer.output_size(in_size) == old
            assert layer.host_output_size(in_size) == old
            assert tuple(int(v) for v in layer._size_values(in_size)) == old
            h, w = layer.continuous_size(in_size)
            assert (float(h), float(w)) == old
            assert list(layer.host_ratio) == layer.ratio.tolist()
    # Products that are integers up to round-off (the floor tolerance's case).
    layer = ShapeAdaptor(0.75).to(dtype)
    for n in range(1, 400):
        assert layer.output_size((n, 4 * n)) == _old_shape_adaptor_sizes(layer, (n, 4 * n))


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_diffstride_host_sizes_bit_identical(dtype):
    g = torch.Generator().manual_seed(0)
    for shared in (False, True):
        for adaptive in (True, False):
            for upper in (None, 7.3):
                smoothness = float(torch.rand((), generator=g)) * 5 + 0.1
                layer = DiffStride(init_stride=2.0, smoothness=smoothness,
                                   adaptive_lower_bound=adaptive, shared_stride=shared,
                                   upper_limit_stride=upper).to(dtype)
                for trial in range(300):
                    shape = layer.stride.shape
                    value = (1.0 + torch.rand(shape, generator=g, dtype=torch.float64)
                             * (0.3 if trial % 3 == 0 else 8))
                    with torch.no_grad():
                        layer.stride.copy_(value)
                    in_size = tuple(int(v) for v in torch.randint(1, 300, (2, ),
                                                                  generator=g))
                    old = _old_diffstride_sizes(layer, in_size)
                    assert layer.output_size(in_size) == old
                    assert layer.host_output_size(in_size) == old
                    new = spectral_output_sizes(in_size, layer.effective_stride(in_size),
                                                layer.smoothness)
                    assert tuple(int(v) for v in new) == old
                    assert list(layer.host_ratio) == layer.ratio.tolist()
                    if trial % 50 == 0:
                        y = layer(torch.randn(1, 1, *in_size, dtype=dtype))
                        assert tuple(y.shape[2:]) == old


def test_forward_output_and_gradients_unchanged():
    """DiffStride's forward with host sizes is the functional core on the bounded
    stride; ShapeAdaptor's is its two branches blended at the old size."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 19, 23, dtype=torch.float64)
    layer = DiffStride(init_stride=(1.7, 2.6), smoothness=1.5).double()
    xg = x.clone().requires_grad_()
    y = layer(xg)
    up = torch.randn_like(y)
    (y * up).sum().backward()
    ref_x = x.clone().requires_grad_()
    stride = layer.stride.detach().clone().requires_grad_()
    eff = stride.expand(2) + (layer.effective_stride((19, 23)).detach() - stride.detach())
    ref = diffstride_module.spectral_pool(ref_x, eff, 1.5)
    (ref * up).sum().backward()
    assert torch.equal(y, ref) and torch.equal(xg.grad, ref_x.grad)
    assert torch.equal(layer.stride.grad, stride.grad)
    adaptor = ShapeAdaptor(0.65).double()
    out = adaptor(x)
    assert tuple(out.shape[2:]) == _old_shape_adaptor_sizes(adaptor, (19, 23))


# ------------------------------------------------------------ changes are detected


@pytest.mark.parametrize('kind', ['ShapeAdaptor', 'DiffStride'])
def test_sizes_follow_every_kind_of_parameter_change(kind):
    def make():
        return ShapeAdaptor(0.5, r1=0.25) if kind == 'ShapeAdaptor' else \
            DiffStride(init_stride=2.0, smoothness=0.5)

    def set_ratio(layer, r, via_data=False):
        value = (ShapeAdaptor.alpha_for_ratio(r, layer.r1, layer.r2, 1e-9)
                 if kind == 'ShapeAdaptor' else 1.0 / r)
        target = ratio_parameter(layer)
        if via_data:
            target.data.fill_(value)
        else:
            with torch.no_grad():
                target.fill_(value)

    def size(layer, n=40):
        return layer(torch.randn(1, 1, n, n, dtype=ratio_parameter(layer).dtype)
                     ).shape[2]

    # The expected sizes: ShapeAdaptor floor(40 r); DiffStride 2 ceil(20 r + 0.5) - 1.
    expect = {0.5: 20, 0.25: 10, 1.0: 40, 0.8: 32} if kind == 'ShapeAdaptor' else \
        {0.5: 21, 0.25: 11, 1.0: 40, 0.8: 33}
    layer = make()
    assert size(layer) == expect[0.5]
    set_ratio(layer, 0.25)                      # in-place edit
    assert size(layer) == expect[0.25]
    state = {k: v.clone() for k, v in layer.state_dict().items()}
    set_ratio(layer, 0.8)
    assert size(layer) == expect[0.8]
    layer.load_state_dict(state)                # load_state_dict
    assert size(layer) == expect[0.25]
    param = ratio_parameter(layer)
    set_ratio(layer, 0.5)
    target = param.detach().clone()
    set_ratio(layer, 0.8)
    assert size(layer) == expect[0.8]
    param.grad = param.detach() - target
    torch.optim.SGD(layer.parameters(), lr=1.0).step()  # optimizer step: to ratio 0.5
    assert size(layer) == expect[0.5]
    set_ratio(layer, 0.25, via_data=True)       # bypasses the version counter ...
    assert size(layer) == expect[0.5]
    layer.invalidate_sizes()                    # ... so tell the layer
    assert size(layer) == expect[0.25]
    set_ratio(layer, 0.8, via_data=True)
    layer.train()                               # already training: no resync ...
    assert size(layer) == expect[0.25]
    layer.eval()                                # ... a mode switch resyncs
    assert size(layer) == expect[0.8]
    layer.double()                              # new storage and dtype
    set_ratio(layer, 0.5)
    assert size(layer) == expect[0.5]
    clone = copy.deepcopy(layer)                # a copy is a live layer of its own
    assert clone in LIVE_LAYERS and clone._host is None
    set_ratio(clone, 0.25)
    assert size(clone) == expect[0.25] and size(layer) == expect[0.5]


def test_diffstride_guard_in_the_batched_read(monkeypatch):
    messages = []
    monkeypatch.setattr(diffstride_module, 'print_log',
                        lambda msg, *a, **k: messages.append(str(msg)))
    layer = DiffStride(init_stride=2.0, upper_limit_stride=8.0, smoothness=1.0)
    other = ShapeAdaptor(0.75)
    x = torch.randn(1, 1, 16, 16)
    layer(x), other(x)
    with torch.no_grad():
        layer.stride.copy_(torch.tensor([0.5, 20.0]))
        other.alpha.add_(0.1)
    with count_host_reads() as counts:
        y = layer(x)
        layer(x)
        other(x)
    assert _py_reads(counts) == 1, counts
    assert layer.stride.tolist() == [1.0, 8.0] and tuple(y.shape[2:]) == (16, 3)
    assert messages == ['DiffStride: stride guard engaged, stride [0.5, 20.0] -> '
                        '[1.0, 8.0]. Reported once per layer.']
    with torch.no_grad():
        layer.stride.copy_(torch.tensor([float('nan'), 3.0]))
    y = layer(x)
    assert torch.isfinite(y).all() and layer.stride.tolist() == [1.0, 3.0]
    assert len(messages) == 1  # reported once per layer


def test_shape_adaptor_size_limit_reads_once():
    layers = [ShapeAdaptor(0.9), ShapeAdaptor(0.8), ShapeAdaptor(0.7)]
    expected = 64 * 0.9 * 0.8 * 0.7
    from mmseg_dynopool.layers import shape_adaptor_size_limit
    with count_host_reads() as counts:
        p = shape_adaptor_size_limit(layers, 64, 16)
    assert _py_reads(counts) == 1, counts
    final = 64.0
    for layer in layers:
        final *= float(layer.scale(with_penalty=False).detach())
    assert final == pytest.approx(expected, rel=1e-6)
    assert p == (16 / final) ** (1 / 3)
