"""A cost model in time: the latency of one forward on one device, in the form of Eq. 4.7.

GMACs (:mod:`.cost`, Eq. 4.7) miss what a larger feature map costs besides its
multiply-adds: batch norm, activations, additions, resizes and the resizing layers
themselves scale with pixels, not MACs, and every operator call costs a fixed overhead
that MACs do not see at all. On a small model (the main job's tiny HRNet at 96x96) these
dominate: its DynOPool-S at 0.84x the human GMACs ran at 1.02-1.11x the human time.

The latency model (:class:`LatencyModel`, fitted per device by
``tools/analysis/calibrate_cost.py``) is linear in four counts of one forward::

    t = a * GMACs + b * MB + c * calls + e * layer_calls + d       [ms per forward]

``GMACs`` as the GMACs cost model counts them (FlopAnalyzer plus each resizing layer's
own rule), ``MB`` the megabytes the forward writes (the outputs of every operator that
makes a new tensor or writes one in place; views write nothing), ``calls`` the number of
operators dispatched (PyTorch's dispatcher, :class:`TorchDispatchMode`), ``layer_calls``
the calls of resizing layers, whose Python-side work (size look-up, sampling tables, the
kernel's wrapper) the dispatcher does not see; GMACs and MB for a batch of ``batch``
images (the model's ``batch``), the calls per forward.

**Eq. 4.7 in time.** A module's MACs and the bytes it writes both scale with the area of
its output, i.e. with the area of the resizing layer that owns it (:mod:`.cost`: the
layer that sets its output resolution), while the number of calls does not change with
the sizes. So the latency has exactly the form of Eq. 4.7::

    t^t = t_fixed + sum_l (H^t(l) W^t(l)) / (H^0(l) W^0(l)) * t_owned(l)

    t_owned(l) = a * GMACs_owned(l) + b * MB_owned(l)
    t_fixed    = a * GMACs_fixed + b * MB_fixed + c * calls + e * layer_calls + d

and :class:`LatencyProfile` computes it with :class:`~.cost.GMACsProfile`'s
straight-through sizes: differentiable in the resizing layers' parameters, with the
same interface the budget controller takes (``estimate``, ``host_estimate``,
``initial_cost``, the size graph and ``cost_of_sizes``), so a budget can be set in
milliseconds instead of GMACs. The ownership of the bytes follows the GMACs profile's
rule per operator: an operator run inside a resizing layer is owned by that layer, any
other one by the last resizing layer whose output had its output's spatial size (none:
fixed).
"""
import json
import math
import os
import platform
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn
from torch.utils._python_dispatch import TorchDispatchMode

from ..layers import resizing_layers
from .cost import (GMACsProfile, call_model, count_gmacs, probe, profile_gmacs)

Size = Tuple[int, int]

#: The version of the JSON file :meth:`LatencyModel.save` writes.
FORMAT_VERSION = 1


# ------------------------------------------------------------------ the fitted model
@dataclass
class LatencyModel:
    """``t = per_gmac * GMACs + per_mb * MB + per_call * calls + per_layer_call *
    layer_calls + fixed`` (ms per forward of ``batch`` images), fitted on one device
    (``tools/analysis/calibrate_cost.py``; module doc).

    Attributes:
        per_gmac (float): ``a``, ms per GMAC (multiply-add, as FlopAnalyzer counts).
        per_mb (float): ``b``, ms per megabyte (1e6 bytes) written by the operators.
        per_call (float): ``c``, ms per operator call.
        per_layer_call (float): ``e``, ms per resizing-layer call (on top of its
            operators).
        fixed (float): ``d``, ms per forward.
        batch (int): images per forward it was fitted for (GMACs and MB are per batch).
        threads (int): intra-op threads it was fitted for.
        device (str): the device it was fitted on, in words.
        runtime (str): what was timed (``'pytorch-eager'``: frozen models, ``no_grad``).
        meta (dict): the fit's details (samples, relative errors, clock, load).
    """
    per_gmac: float
    per_mb: float
    per_call: float
    per_layer_call: float = 0.0
    fixed: float = 0.0
    batch: int = 1
    threads: int = 1
    device: str = ''
    runtime: str = 'pytorch-eager'
    meta: Dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ('per_gmac', 'per_mb', 'per_call', 'per_layer_call', 'fixed'):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or \
                    not math.isfinite(value) or value < 0:
                raise ValueError(f'LatencyModel.{name} must be a finite number >= 0, '
                                 f'got {value!r}')
            setattr(self, name, float(value))
        if not isinstance(self.batch, int) or self.batch < 1:
            raise ValueError(f'LatencyModel.batch must be an int >= 1, got {self.batch!r}')
        if not isinstance(self.threads, int) or self.threads < 1:
            raise ValueError(f'LatencyModel.threads must be an int >= 1, got '
                             f'{self.threads!r}')
        if self.per_gmac == self.per_mb == 0:
            raise ValueError('LatencyModel: per_gmac and per_mb are both 0, so no time '
                             'depends on the feature-map sizes (a budget in it cannot '
                             'move them); re-run the calibration')

    def predict(self, gmacs: float, mb: float, calls: float, layer_calls: float = 0.0
                ) -> float:
        """The time in ms of one forward with these per-batch counts."""
        return (self.per_gmac * gmacs + self.per_mb * mb + self.per_call * calls
                + self.per_layer_call * layer_calls + self.fixed)

    def predict_counts(self, counts: 'OpCounts') -> float:
        """The time in ms of one forward of ``batch`` images of a model whose per-image
        counts are ``counts`` (:func:`count_ops`)."""
        return self.predict(counts.gmacs * self.batch, counts.mb * self.batch,
                            counts.calls, counts.layer_calls)

    # ------------------------------------------------------------------------ JSON
    def to_dict(self) -> Dict:
        """The JSON-able content (with the format version)."""
        return dict(format=FORMAT_VERSION, **asdict(self))

    def save(self, path: str) -> None:
        """Write the model as JSON (folders are created)."""
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        with open(path, 'w') as f:
            json.dump(self.to_dict(), f, indent=2)

    @classmethod
    def from_dict(cls, data: Dict) -> 'LatencyModel':
        """The model of :meth:`to_dict`'s output (clear errors for other dicts)."""
        if not isinstance(data, dict):
            raise ValueError(f'a latency model is a JSON object, got {type(data).__name__}')
        version = data.get('format')
        if version != FORMAT_VERSION:
            raise ValueError(f'latency model format {version!r} is not supported (this '
                             f'version reads format {FORMAT_VERSION}); re-run '
                             'tools/analysis/calibrate_cost.py')
        names = ('per_gmac', 'per_mb', 'per_call', 'per_layer_call', 'fixed', 'batch',
                 'threads', 'device', 'runtime', 'meta')
        missing = [n for n in ('per_gmac', 'per_mb', 'per_call') if n not in data]
        if missing:
            raise ValueError(f'latency model without {missing}')
        unknown = sorted(set(data) - set(names) - {'format'})
        if unknown:
            raise ValueError(f'latency model with unknown keys {unknown}')
        return cls(**{n: data[n] for n in names if n in data})

    @classmethod
    def load(cls, path: str) -> 'LatencyModel':
        """Read a JSON file written by :meth:`save`."""
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f'latency model {path!r} not found: fit one on the target device with '
                f'tools/analysis/calibrate_cost.py --out {path}')
        with open(path) as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as e:
                raise ValueError(f'latency model {path!r} is not valid JSON: {e}') from e
        return cls.from_dict(data)


def device_description(device: str = 'cpu') -> str:
    """The device in words, for :attr:`LatencyModel.device`."""
    if device.startswith('cuda') and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    name = platform.processor() or platform.machine()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    name = line.split(':', 1)[1].strip()
                    break
    except OSError:
        pass
    return f'{name} ({os.cpu_count()} logical CPUs)'


# ------------------------------------------------------------- counting the operators
@dataclass
class OpCounts:
    """What one forward of one image does, as the latency model counts it.

    Attributes:
        gmacs (float): GMACs (:mod:`.cost`'s count, resizing layers by their rule).
        mb (float): megabytes written by the operators.
        calls (int): operators dispatched (views included: each costs a dispatch).
        layer_calls (int): calls of resizing layers.
        module_calls (int): calls of modules (recorded, not used by the fit).
        owned_gmacs, owned_mb (list[float]): the part owned by each resizing layer (the
            order of :func:`~mmseg_dynopool.resizing_layers`); the rest is fixed.
    """
    gmacs: float
    mb: float
    calls: int
    layer_calls: int = 0
    module_calls: int = 0
    owned_gmacs: List[float] = field(default_factory=list)
    owned_mb: List[float] = field(default_factory=list)

    @property
    def fixed_gmacs(self) -> float:
        return self.gmacs - sum(self.owned_gmacs)

    @property
    def fixed_mb(self) -> float:
        return self.mb - sum(self.owned_mb)


def _written_bytes(func, out) -> int:
    """Bytes an operator writes: its tensor outputs', unless it returns a view."""
    if getattr(func, 'is_view', False):
        return 0
    outs = out if isinstance(out, (tuple, list)) else (out, )
    return sum(t.numel() * t.element_size() for t in outs if isinstance(t, Tensor))


class _OpRecorder(TorchDispatchMode):
    """Counts every operator of a forward and the bytes it writes, each owned by a
    resizing layer (see the module doc) or by none (index -1)."""

    def __init__(self, n_layers: int) -> None:
        super().__init__()
        self.calls = 0
        self.bytes = [0] * (n_layers + 1)  # last entry: fixed
        self.inside: List[int] = []  # resizing layers being run (nested: innermost last)
        self.latest_by_size: Dict[Size, int] = {}
        self.layer_calls: List[int] = []

    def owner(self, out) -> int:
        if self.inside:
            return self.inside[-1]
        t = out[0] if isinstance(out, (tuple, list)) and out else out
        if isinstance(t, Tensor) and t.dim() == 4:
            return self.latest_by_size.get((int(t.shape[-2]), int(t.shape[-1])), -1)
        return -1

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.calls += 1
        written = _written_bytes(func, out)
        if written:
            self.bytes[self.owner(out)] += written
        return out


def count_ops(model: nn.Module, input_shape: Sequence[int], in_channels: int = 3,
              gmacs: Optional[GMACsProfile] = None) -> OpCounts:
    """Count one forward of one ``1 x C x H x W`` image (the cost model's probe, eval
    mode, ``no_grad``): GMACs, megabytes written and operator calls, with the GMACs and
    megabytes owned by each resizing layer.

    The forward runs once before it is counted (first calls fill caches a deployed
    model has filled long ago). ``gmacs``: the model's GMACs profile at its current
    parameters, if already computed
    (else it is computed here; for a model without resizing layers the total is
    :func:`~.cost.count_gmacs`). A frozen model (``deploy.freeze_dynopool``) runs the
    same operators as the live one it was frozen from, so count the live one.
    """
    layers = [m for _, m in resizing_layers(model)]
    index = {id(m): i for i, m in enumerate(layers)}
    recorder = _OpRecorder(len(layers))

    def pre_hook(module, args):
        recorder.inside.append(index[id(module)])
        recorder.layer_calls.append(index[id(module)])

    def post_hook(module, args, out):
        recorder.inside.pop()
        if isinstance(out, Tensor) and out.dim() == 4:
            recorder.latest_by_size[(int(out.shape[-2]), int(out.shape[-1]))] = \
                index[id(module)]

    modules = [0]

    def count_module(module, args):
        modules[0] += 1

    with probe(model, input_shape, in_channels) as x:
        # Once before counting: first calls fill caches (a resizing layer's host copy
        # and sampling tables) that a deployed model has filled long ago.
        call_model(model, x)
        handles = [nn.modules.module.register_module_forward_pre_hook(count_module)]
        for layer in layers:
            handles.append(layer.register_forward_pre_hook(pre_hook))
            handles.append(layer.register_forward_hook(post_hook))
        try:
            with recorder:
                call_model(model, x)
        finally:
            for h in handles:
                h.remove()
    layer_calls = len(recorder.layer_calls)
    if layers:
        if gmacs is None:
            gmacs = profile_gmacs(model, tuple(input_shape), in_channels)
        total_gmacs, owned_gmacs = gmacs.total_gmacs, list(gmacs.owned_gmacs)
    else:
        total_gmacs, owned_gmacs = count_gmacs(model, tuple(input_shape), in_channels), []
    return OpCounts(gmacs=total_gmacs, mb=sum(recorder.bytes) / 1e6,
                    calls=recorder.calls, layer_calls=layer_calls,
                    module_calls=modules[0], owned_gmacs=owned_gmacs,
                    owned_mb=[b / 1e6 for b in recorder.bytes[:-1]])


def predict_latency(model: nn.Module, input_shape: Sequence[int],
                    latency_model: LatencyModel, in_channels: int = 3) -> float:
    """The latency model's time in ms of one forward of ``latency_model.batch`` images at
    ``input_shape`` through ``model`` at its current parameters (any model, with or
    without resizing layers)."""
    return latency_model.predict_counts(count_ops(model, input_shape, in_channels))


def _from_gmacs_profile(name: str) -> property:
    """A read-only attribute of :class:`LatencyProfile` that is its GMACs profile's."""
    return property(lambda self: getattr(self.gmacs, name),
                    doc=f'``{name}`` of the underlying GMACs profile.')


# ---------------------------------------------------------------------- Eq. 4.7 in time
class LatencyProfile:
    """The latency of a model with resizing layers in the form of Eq. 4.7 (module doc):
    ``t = fixed_ms + sum_l (h_l w_l) / (h0_l w0_l) * owned_ms[l]`` in ms per forward of
    ``latency_model.batch`` images at the profiled input size.

    It takes the place of a :class:`~.cost.GMACsProfile` in the budget controller
    (``engine/budget``): :meth:`estimate` (differentiable), :meth:`host_estimate`,
    :attr:`initial_cost`, :meth:`host_sizes`, :meth:`cost_of_sizes` and the size graph
    (``pool_order``, ``pool_parents``, ``pool_in_sizes``, ``pool_out_sizes``), which
    are the GMACs profile's.

    Attributes:
        gmacs (GMACsProfile): the GMACs profile it was built from (the size graph).
        counts (OpCounts): the counts at the profiled state.
        latency_model (LatencyModel): the fitted constants.
        owned_ms (list[float]): ``a * GMACs_owned(l) + b * MB_owned(l)`` per layer.
        fixed_ms (float): ``a * GMACs_fixed + b * MB_fixed + c * calls + d``.
    """

    def __init__(self, gmacs: GMACsProfile, counts: OpCounts,
                 latency_model: LatencyModel) -> None:
        if len(counts.owned_gmacs) != len(gmacs.pool_names) or \
                len(counts.owned_mb) != len(gmacs.pool_names):
            raise ValueError(f'the counts have {len(counts.owned_mb)} resizing layers, '
                             f'the GMACs profile {len(gmacs.pool_names)}')
        self.gmacs = gmacs
        self.counts = counts
        self.latency_model = latency_model
        m, n = latency_model, latency_model.batch
        self.owned_ms = [m.per_gmac * g * n + m.per_mb * b * n
                         for g, b in zip(counts.owned_gmacs, counts.owned_mb)]
        self.fixed_ms = (m.per_gmac * counts.fixed_gmacs * n
                         + m.per_mb * counts.fixed_mb * n
                         + m.per_call * counts.calls
                         + m.per_layer_call * counts.layer_calls + m.fixed)

    # The size graph is the GMACs profile's (the same layers, sizes and ownership).
    input_shape = _from_gmacs_profile('input_shape')
    pool_names = _from_gmacs_profile('pool_names')
    pool_order = _from_gmacs_profile('pool_order')
    pool_parents = _from_gmacs_profile('pool_parents')
    pool_in_sizes = _from_gmacs_profile('pool_in_sizes')
    pool_out_sizes = _from_gmacs_profile('pool_out_sizes')

    @property
    def initial_cost(self) -> float:
        """The latency in ms at the profiled (initial) state."""
        return self.fixed_ms + sum(self.owned_ms)

    total_ms = initial_cost

    def host_sizes(self, pools: Sequence[nn.Module]) -> List[Size]:
        """Every layer's integer output size at the profiled input size (host)."""
        return self.gmacs.host_sizes(pools)

    def cost_of_sizes(self, sizes: Sequence[Size]) -> float:
        """The latency in ms of the layers' integer output sizes ``sizes`` (no
        forward)."""
        if len(sizes) != len(self.owned_ms):
            raise ValueError(f'profile has {len(self.owned_ms)} resizing layers, got '
                             f'{len(sizes)} sizes')
        total = self.fixed_ms
        for (h, w), (h0, w0), ms in zip(sizes, self.pool_out_sizes, self.owned_ms):
            total += (h * w) / float(h0 * w0) * ms
        return total

    def host_estimate(self, pools: Sequence[nn.Module]) -> float:
        """The value of :meth:`estimate` from the layers' host sizes (no device
        synchronisation)."""
        return self.cost_of_sizes(self.host_sizes(pools))

    def estimate(self, pools: Sequence[nn.Module]) -> Tensor:
        """The latency in ms for the current parameters (Eq. 4.7 with the owned times);
        differentiable w.r.t. them through the layers' straight-through sizes."""
        sizes = self.gmacs.sizes(pools)
        total = torch.zeros((), device=sizes[0][0].device)
        for (h, w), (h0, w0), ms in zip(sizes, self.pool_out_sizes, self.owned_ms):
            total = total + (h * w) / float(h0 * w0) * ms
        return total + self.fixed_ms


def profile_latency(model: nn.Module, input_shape: Tuple[int, int],
                    latency_model: LatencyModel, in_channels: int = 3
                    ) -> LatencyProfile:
    """Profile ``model`` (with resizing layers, at its current parameters: pass it at its
    initial state for a budget) at ``input_shape``: its GMACs profile (Eq. 4.7) and its
    operator counts (:func:`count_ops`), priced by ``latency_model``."""
    if not isinstance(latency_model, LatencyModel):
        raise TypeError(f'latency_model must be a LatencyModel, got '
                        f'{type(latency_model).__name__}')
    gmacs = profile_gmacs(model, input_shape, in_channels)
    counts = count_ops(model, input_shape, in_channels, gmacs=gmacs)
    return LatencyProfile(gmacs, counts, latency_model)


# ------------------------------------------------------------------------ the fit
#: The counts the fit uses, in the order of :func:`fit_latency_model`'s columns.
FEATURES = ('gmacs', 'mb', 'calls', 'layer_calls', 'one')


def _nnls(a, b):
    """``argmin ||a x - b||`` subject to ``x >= 0`` (numpy): the unconstrained least
    squares on every subset of the columns, the best one with no negative entry. Exact,
    and cheap for the handful of columns a latency model has."""
    import itertools

    import numpy as np
    n = a.shape[1]
    best, best_res = np.zeros(n), float(np.sum(b ** 2))
    for k in range(1, n + 1):
        for cols in itertools.combinations(range(n), k):
            sol, *_ = np.linalg.lstsq(a[:, cols], b, rcond=None)
            if np.any(sol < 0):
                continue
            x = np.zeros(n)
            x[list(cols)] = sol
            res = float(np.sum((a @ x - b) ** 2))
            if res < best_res - 1e-15 * max(1.0, best_res):
                best, best_res = x, res
    return best


def fit_latency_model(counts: Sequence[OpCounts], times_ms: Sequence[float], batch: int,
                      threads: int, device: str = '', runtime: str = 'pytorch-eager',
                      meta: Optional[Dict] = None) -> LatencyModel:
    """Fit ``t = a GMACs + b MB + c calls + e layer_calls + d`` to measured times of one
    forward of ``batch`` images (``counts`` per image, :func:`count_ops`) by
    non-negative least squares on the relative errors (every sample weighs the same,
    whether it takes 5 ms or 5 s). ``meta`` gets the per-sample relative errors
    (``rel_errors``)."""
    import numpy as np
    if len(counts) != len(times_ms):
        raise ValueError(f'{len(counts)} counts but {len(times_ms)} times')
    if len(counts) < len(FEATURES):
        raise ValueError(f'the fit needs at least {len(FEATURES)} samples, got '
                         f'{len(counts)}')
    t = np.asarray(times_ms, dtype=np.float64)
    if not np.all(np.isfinite(t)) or np.any(t <= 0):
        raise ValueError('times_ms must be positive and finite')
    x = np.array([[c.gmacs * batch, c.mb * batch, c.calls, c.layer_calls, 1.0]
                  for c in counts], dtype=np.float64)
    # Columns scaled to unit size so the subsets' least squares are well conditioned.
    scale = np.maximum(np.abs(x / t[:, None]).max(axis=0), 1e-300)
    theta = _nnls(x / t[:, None] / scale, np.ones_like(t)) / scale
    pred = x @ theta
    meta = dict(meta or {})
    meta['rel_errors'] = [float(v) for v in pred / t - 1]
    a, b, c, e, d = (float(v) for v in theta)
    return LatencyModel(per_gmac=a, per_mb=b, per_call=c, per_layer_call=e, fixed=d,
                        batch=batch, threads=threads, device=device, runtime=runtime,
                        meta=meta)
