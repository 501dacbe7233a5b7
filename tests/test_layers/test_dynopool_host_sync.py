"""Host synchronisation of DynOPool: one device->host transfer per alpha update.

The integer output size (Eqs. 4.1, 4.3) is needed on the host; it changes only when alpha
changes. DynOPool keeps a host copy of every live layer's alpha, refreshed in one batched
transfer at the first forward after any alpha changed, and computes the sizes on the host
with the device's float32 operations (``ops/dynopool.py``). Checked here:

* the number of host reads per training iteration (forward, backward, optimizer step) of
  models that call their pools many times - DynOPoolHRNet (20 calls of 5 pools per
  forward) and a module calling 3 shared pools 30 times each - is exactly one, and zero
  for a forward without an alpha update; on a GPU the same is checked with
  ``torch.cuda.set_sync_debug_mode``;
* the host sizes are bit-identical to the device computation;
* every way alpha can change (optimizer step, in-place edit, ``load_state_dict``, dtype
  or device moves, ``.data`` writes followed by ``invalidate_sizes``/``train()``) is seen;
* the output and every gradient (alpha's included) are bitwise those of computing the
  sizes from the device alpha on every call, as before.
"""
import contextlib
import copy
import math
from typing import Dict, Iterator

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import mmseg_dynopool.layers.dynopool as dynopool_module
from mmseg_dynopool import DynOPool, resizing_layers
from mmseg_dynopool.models.backbones import DynOPoolHRNet
from mmseg_dynopool.ops import dynopool_sample, query_positions
from mmseg_dynopool.layers.host_cache import LIVE_LAYERS

from ..conftest import cuda_sync_messages, tiny_hrnet_extra

EXTRA = tiny_hrnet_extra()

# Tensor -> host reads that Python code can make.
_PY_READS = ('tolist', 'item', 'numpy', '__bool__', '__float__', '__int__', '__index__')
# aten ops that read device data back to the host (a CPU run executes them too).
_SYNC_OPS = ('_local_scalar_dense', 'nonzero', 'masked_select', 'equal', 'is_nonzero',
             '_unique2', 'unique_consecutive', 'unique_dim')


class _SyncOps(TorchDispatchMode):

    def __init__(self, counts: Dict[str, int]) -> None:
        super().__init__()
        self.counts = counts

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in _SYNC_OPS:
            self.counts[f'aten.{name}'] = self.counts.get(f'aten.{name}', 0) + 1
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def count_host_reads() -> Iterator[Dict[str, int]]:
    """Count device->host reads: Tensor.tolist/item/numpy/bool()/float()/int() calls
    from Python and the aten ops that read data back (``.item()`` and friends dispatch
    to ``aten._local_scalar_dense``; ``tolist`` and ``numpy`` do not dispatch, hence the
    wrappers). On a CPU run none of them stalls anything, but each would be a
    synchronisation on a GPU."""
    counts: Dict[str, int] = {}
    saved = {name: getattr(torch.Tensor, name) for name in _PY_READS}

    def wrap(name, method):
        def counted(self, *args, **kwargs):
            counts[name] = counts.get(name, 0) + 1
            return method(self, *args, **kwargs)
        return counted

    for name, method in saved.items():
        setattr(torch.Tensor, name, wrap(name, method))
    try:
        with _SyncOps(counts):
            yield counts
    finally:
        for name, method in saved.items():
            setattr(torch.Tensor, name, method)


def _py_reads(counts: Dict[str, int]) -> int:
    """Reads that are not the nested aten op of a counted Python read."""
    py = sum(v for k, v in counts.items() if not k.startswith('aten.'))
    aten = sum(v for k, v in counts.items() if k.startswith('aten.'))
    # item()/float()/bool() from Python show up twice (Python call + its aten op).
    nested = min(aten, sum(counts.get(k, 0) for k in ('item', '__bool__', '__float__',
                                                      '__int__', '__index__')))
    return py + aten - nested


def _calls(model: nn.Module) -> Dict[int, int]:
    calls: Dict[int, int] = {}

    def hook(module, args):
        calls[id(module)] = calls.get(id(module), 0) + 1

    for _, pool in resizing_layers(model):
        pool.register_forward_pre_hook(hook)
    return calls


@pytest.fixture
def hrnet():
    torch.manual_seed(0)
    model = DynOPoolHRNet(EXTRA, init_ratios=[0.5, (0.45, 0.55), 0.5, 0.6, 0.4]).train()
    return model


def _hrnet_step(model, opt, x) -> None:
    opt.zero_grad()
    outs = model(x)
    sum(o.square().mean() for o in outs).backward()
    opt.step()


def test_one_host_read_per_training_iteration_hrnet(hrnet):
    """DynOPoolHRNet calls its 5 pools 17 times per forward here; a training iteration
    reads the device once (all 5 alphas together), a forward without a step not at all."""
    calls = _calls(hrnet)
    opt = torch.optim.SGD(hrnet.parameters(), lr=1e-3)
    x = torch.randn(1, 3, 48, 48)
    _hrnet_step(hrnet, opt, x)  # first iteration: also builds the geometry tables
    assert len(calls) == 5 and sum(calls.values()) >= 15, calls
    alphas = []
    for _ in range(2):
        with count_host_reads() as counts:
            _hrnet_step(hrnet, opt, x)
        assert _py_reads(counts) == 1, counts
        assert counts.get('tolist') == 1, counts
        alphas.append(torch.stack([p.alpha.detach().clone() for _, p in
                                   resizing_layers(hrnet)]))
    assert not torch.equal(alphas[0], alphas[-1])  # alpha did move every step
    with torch.no_grad():
        with count_host_reads() as counts:
            hrnet(x)  # after the last step: reads the new alphas once
        assert _py_reads(counts) == 1, counts
        with count_host_reads() as counts:
            hrnet(x)  # nothing changed since
        assert _py_reads(counts) == 0, counts


def test_one_host_read_per_iteration_as_mmengine_loops_drive_it(hrnet):
    """mmengine's IterBasedTrainLoop calls model.train() before every iteration and the
    GMACs hook reads the pools' host ratios after the optimizer step: still one read
    per iteration (train() without a mode switch keeps the host copies)."""
    opt = torch.optim.SGD(hrnet.parameters(), lr=1e-3)
    x = torch.randn(1, 3, 48, 48)
    _hrnet_step(hrnet, opt, x)
    [p.host_ratio for _, p in resizing_layers(hrnet)]  # as the hook logs after a step
    for _ in range(3):
        with count_host_reads() as counts:
            hrnet.train()
            _hrnet_step(hrnet, opt, x)
            ratios = [p.host_ratio for _, p in resizing_layers(hrnet)]  # hook logging
        assert _py_reads(counts) == 1, counts
    assert all(isinstance(v, float) for r in ratios for v in r)


def test_one_host_read_per_iteration_with_checkpointing():
    """with_cp recomputes the blocks (and so calls the pools again) in the backward."""
    torch.manual_seed(0)
    model = DynOPoolHRNet(EXTRA, with_cp=True).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.randn(1, 3, 32, 32, requires_grad=True)
    _hrnet_step(model, opt, x)
    for _ in range(1):
        with count_host_reads() as counts:
            _hrnet_step(model, opt, x)
        assert _py_reads(counts) == 1, counts


class _ManyCalls(nn.Module):
    """Three pools shared by 12 call sites each (and a conv to train)."""

    def __init__(self) -> None:
        super().__init__()
        self.pools = nn.ModuleList([DynOPool(0.5), DynOPool((0.7, 0.45)), DynOPool(1.3)])
        self.conv = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x):
        total = 0
        for _ in range(12):
            for pool in self.pools:
                total = total + pool(self.conv(x)).mean()
        return total


def test_one_host_read_for_many_calls_of_shared_pools():
    torch.manual_seed(0)
    model = _ManyCalls()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    x = torch.randn(1, 2, 15, 17)
    for it in range(2):
        with count_host_reads() as counts:
            opt.zero_grad()
            model(x).backward()
            opt.step()
        assert _py_reads(counts) == 1, (it, counts)
    # No alpha update: no host read (two forwards in a row).
    model(x)
    with count_host_reads() as counts:
        model(x)
    assert _py_reads(counts) == 0, counts


def test_all_stale_layers_refresh_in_one_read():
    """Layers of different models whose alphas changed are refreshed together by the
    first forward that needs one of them."""
    a, b = DynOPool(0.5), DynOPool(0.25)
    x = torch.randn(1, 1, 16, 16)
    a(x), b(x)
    with torch.no_grad():
        a.alpha.fill_(4.0)
        b.alpha.fill_(2.0)
    with count_host_reads() as counts:
        assert a(x).shape[2:] == (4, 4)
        assert b(x).shape[2:] == (8, 8)
    assert _py_reads(counts) == 1, counts


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_cuda_sync_debug_mode_one_sync_per_iteration(hrnet):
    """On a GPU, torch's own sync detector sees one synchronisation per iteration."""
    model = hrnet.cuda()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.randn(2, 3, 64, 64, device='cuda')
    _hrnet_step(model, opt, x)
    torch.cuda.synchronize()
    for _ in range(2):
        syncs = cuda_sync_messages(lambda: _hrnet_step(model, opt, x))
        assert len(syncs) <= 1, syncs


# ------------------------------------------------------------------ host arithmetic


def test_host_sizes_bit_identical_to_device():
    """The host computes round(max(H r, min_size)) with the device's float32 operations:
    identical for 40k random (alpha, H) pairs (float32 and float64 alphas, exact ratios
    k/200 whose products hit rounding ties), and through the forward's own code path
    (a Python int H) for a subset."""
    g = torch.Generator().manual_seed(0)
    n = 10_000
    alpha = torch.cat((torch.rand(n, generator=g, dtype=torch.float64) * 20 + 0.25,
                       1 / (torch.randint(1, 400, (n, ), generator=g).double() / 200),
                       torch.full((n, ), 2.0, dtype=torch.float64),
                       torch.rand(n, generator=g, dtype=torch.float64) * 3 + 0.9))
    alpha[:n] = alpha[:n].float().double()  # a quarter exactly float32 alphas
    h_in = torch.randint(1, 2000, (alpha.numel(), ), generator=g)
    for min_size, max_size in ((1.5, None), (1.3, None), (1.5, 40)):
        layer = DynOPool(0.5, min_size=min_size, max_size=max_size)
        ratio = 1.0 / alpha.float()
        device_sizes, _ = layer.continuous_size((h_in, h_in), torch.stack((ratio, ratio)))
        alpha32 = alpha.float().numpy()
        host = [dynopool_module._host_size(int(h), a, np.float32(min_size), max_size)
                for h, a in zip(h_in.tolist(), alpha32)]
        assert host == device_sizes.int().tolist()
        for i in range(0, alpha.numel(), 97):  # scalar path: int * float32 tensor
            size, _ = layer.continuous_size((int(h_in[i]), 1), ratio[i].expand(2))
            assert host[i] == int(size), i


def test_sizes_follow_every_kind_of_alpha_change():
    layer = DynOPool(0.5)
    x = torch.randn(1, 1, 40, 40)
    assert layer(x).shape[2:] == (20, 20)
    with torch.no_grad():                      # in-place edit (bumps the version)
        layer.alpha.copy_(torch.tensor([4.0, 8.0]))
    assert layer(x).shape[2:] == (10, 5)
    layer.load_state_dict({'alpha': torch.tensor([2.5, 2.0])})
    assert layer(x).shape[2:] == (16, 20)
    opt = torch.optim.SGD(layer.parameters(), lr=1.0)
    layer.alpha.grad = torch.tensor([-0.5, 0.0])
    opt.step()                                 # alpha 3.0 / 2.0
    assert layer(x).shape[2:] == (13, 20)
    layer.alpha.data.fill_(1.0)                # bypasses the version counter ...
    layer.invalidate_sizes()                   # ... so tell the layer
    assert layer(x).shape[2:] == (40, 40)
    layer.alpha.data.fill_(2.0)
    layer.eval()                               # mode switches resynchronise too
    assert layer(x).shape[2:] == (20, 20)
    layer.train()
    layer.double()                             # new storage
    with torch.no_grad():
        layer.alpha.fill_(4.0)
    assert layer(x.double()).shape[2:] == (10, 10)
    clone = copy.deepcopy(layer)               # a copy is a live layer of its own
    with torch.no_grad():
        clone.alpha.fill_(float('nan'))
    assert clone(x.double()).shape[2:] == (10, 10)  # guarded: last valid alpha
    assert clone in LIVE_LAYERS
    assert layer.host_ratio == (0.25, 0.25)


def test_guard_restores_nan_and_warns_once_with_one_read(monkeypatch):
    messages = []
    monkeypatch.setattr(dynopool_module, 'print_log',
                        lambda msg, *a, **k: messages.append(str(msg)))
    layer = DynOPool(0.4, max_ratio=2.0)
    x = torch.randn(1, 1, 10, 10)
    layer(x)
    with torch.no_grad():
        layer.alpha[0] = float('nan')
        layer.alpha[1] = 0.1                   # ratio 10 > max_ratio: clamped to 2
    with count_host_reads() as counts:
        y = layer(x)
        layer(x)
    assert _py_reads(counts) == 1, counts
    assert tuple(y.shape[2:]) == (4, 20)
    assert torch.allclose(layer.alpha, torch.tensor([2.5, 0.5]))
    assert len(messages) == 1 and 'output 4x20 for input 10x10' in messages[0]


# --------------------------------------------------------- gradient is unchanged


def _uncached(layer: DynOPool, x: torch.Tensor) -> torch.Tensor:
    """The pre-cache forward: sizes read from the device alpha on every call, tables
    built from the positions."""
    h_in, w_in = x.shape[2:]
    layer.guard_alpha()
    with torch.autocast(device_type=x.device.type, enabled=False):
        ratio = 1.0 / layer.alpha.float()
        h, w = layer.continuous_size((h_in, w_in), ratio)
        h_out, w_out = (int(v) for v in torch.stack((h, w)).detach().tolist())
        pos_h = query_positions(h_in, h, h_out, x.dtype)
        pos_w = query_positions(w_in, w, w_out, x.dtype)
    return dynopool_sample(x, pos_h, pos_w, layer.aggregation)


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
@pytest.mark.parametrize('aggregation', ['max', 'avg'])
@pytest.mark.parametrize('ratio', [(0.45, 0.6), (0.5, 0.5), (1.3, 0.37)])
def test_output_and_gradients_bitwise_unchanged(dtype, aggregation, ratio):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 13, 17, dtype=dtype)
    upstream = None
    results = []
    for forward in (DynOPool.forward, _uncached):
        layer = DynOPool(ratio, aggregation=aggregation).to(dtype)
        xg = x.clone().requires_grad_()
        y = forward(layer, xg)
        if upstream is None:
            upstream = torch.randn(y.shape, dtype=dtype)
        (y * upstream).sum().backward()
        results.append((y, xg.grad, layer.alpha.grad))
    for cached, before in zip(*results):
        assert torch.equal(cached, before)
    assert math.isfinite(float(results[0][2].abs().sum()))
