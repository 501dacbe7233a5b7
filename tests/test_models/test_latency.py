"""The latency cost model (mmseg_dynopool/models/latency.py): operator counts and their
ownership, Eq. 4.7 in time, the fit and the JSON file. No timing here."""
import dataclasses
import json
import random

import numpy as np
import pytest
import torch
from torch import nn

from mmseg_dynopool import DynOPool, resizing_layers
from mmseg_dynopool.models.cost import profile_gmacs
from mmseg_dynopool.models.latency import (LatencyModel, LatencyProfile, OpCounts,
                                           count_ops, fit_latency_model, predict_latency,
                                           profile_latency)

#: Constants of a made-up device (ms per GMAC / MB / call / resizing-layer call / forward).
DEVICE = dict(per_gmac=50.0, per_mb=0.4, per_call=0.01, per_layer_call=0.03, fixed=0.7)


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),               # 16x16: before any pool, fixed
        DynOPool(0.5), nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        DynOPool(0.5), nn.Conv2d(16, 4, 1))


def _pools(model):
    return [m for _, m in resizing_layers(model)]


def _set_alpha(model, values):
    with torch.no_grad():
        for pool, v in zip(_pools(model), values):
            pool.alpha.copy_(torch.tensor(v, dtype=pool.alpha.dtype))


# --------------------------------------------------------------------- the counts
def test_counts_own_the_bytes_of_each_pool_resolution():
    model = _model()
    counts = count_ops(model, (16, 16))
    # Only the first conv runs before a pool: its float32 output is the fixed part.
    assert counts.fixed_mb * 1e6 == pytest.approx(8 * 16 * 16 * 4)
    assert counts.layer_calls == 2 and counts.calls > 2
    assert counts.gmacs == pytest.approx(profile_gmacs(model, (16, 16)).total_gmacs)
    # Everything a pool owns is at its output resolution: 8x8 -> 6x6 and 4x4 -> 3x3
    # scale the owned megabytes by the areas exactly, the fixed part not at all.
    _set_alpha(model, [(16 / 6, 16 / 6), (2.0, 2.0)])
    moved = count_ops(model, (16, 16))
    assert moved.fixed_mb == pytest.approx(counts.fixed_mb)
    assert moved.owned_mb[0] == pytest.approx(counts.owned_mb[0] * 36 / 64)
    assert moved.owned_mb[1] == pytest.approx(counts.owned_mb[1] * 9 / 16)
    assert moved.calls == counts.calls  # the same operators, smaller


def test_counts_of_a_model_without_resizing_layers():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
    counts = count_ops(model, (10, 12))
    assert counts.owned_mb == [] and counts.layer_calls == 0
    assert counts.gmacs == pytest.approx(8 * 3 * 9 * 10 * 12 / 1e9)
    assert counts.mb * 1e6 == pytest.approx(2 * 8 * 10 * 12 * 4)  # conv + relu outputs


# ----------------------------------------------------------------- Eq. 4.7 in time
def test_estimate_is_the_linear_model_at_the_profiled_state():
    model, latency = _model(), LatencyModel(**DEVICE, batch=4)
    profile = profile_latency(model, (16, 16), latency)
    counts = count_ops(model, (16, 16))
    c = counts
    by_hand = (DEVICE['per_gmac'] * 4 * c.gmacs + DEVICE['per_mb'] * 4 * c.mb
               + DEVICE['per_call'] * c.calls + DEVICE['per_layer_call'] * c.layer_calls
               + DEVICE['fixed'])
    assert profile.initial_cost == pytest.approx(by_hand, rel=1e-12)
    assert predict_latency(model, (16, 16), latency) == pytest.approx(by_hand, rel=1e-12)
    pools = _pools(model)
    assert float(profile.estimate(pools)) == pytest.approx(by_hand, rel=1e-6)
    assert profile.host_estimate(pools) == pytest.approx(by_hand, rel=1e-12)


def test_estimate_follows_the_sizes_like_a_recount():
    """Away from the profiled state the Eq. 4.7 form equals the linear model of a new
    count (exactly here: every owned operator is at its owner's resolution)."""
    model, latency = _model(), LatencyModel(**DEVICE)
    profile = profile_latency(model, (16, 16), latency)
    for alphas in ([(16 / 6, 16 / 5), (2.0, 2.0)], [(1.6, 2.0), (2.5, 1.25)]):
        _set_alpha(model, alphas)
        recount = latency.predict_counts(count_ops(model, (16, 16)))
        assert profile.host_estimate(_pools(model)) == pytest.approx(recount, rel=1e-9)
        assert float(profile.estimate(_pools(model))) == pytest.approx(recount, rel=1e-6)
        assert profile.cost_of_sizes(profile.host_sizes(_pools(model))) == \
            pytest.approx(recount, rel=1e-9)


def test_gradient_is_eq_4_7_with_the_owned_times():
    model = _model()
    _set_alpha(model, [(2.3, 1.9), (2.2, 2.0)])
    latency = LatencyModel(**DEVICE)
    profile = profile_latency(model, (16, 16), latency)
    pools = _pools(model)
    profile.estimate(pools).backward()
    grads = [p.alpha.grad.clone() for p in pools]
    # Eq. 4.7 of the GMACs profile with the owned times in place of the owned GMACs.
    eq47 = dataclasses.replace(profile.gmacs, owned_gmacs=profile.owned_ms,
                               fixed_gmacs=profile.fixed_ms)
    for p in pools:
        p.alpha.grad = None
    eq47.estimate(pools).backward()
    for g, p in zip(grads, pools):
        assert torch.allclose(g, p.alpha.grad, rtol=1e-5, atol=0)
        assert (g < 0).all()  # a larger alpha, a smaller map: less time
    # The owned times are what the linear model gives the owned GMACs and megabytes.
    for ms, g, mb in zip(profile.owned_ms, profile.counts.owned_gmacs,
                         profile.counts.owned_mb):
        assert ms == pytest.approx(DEVICE['per_gmac'] * g + DEVICE['per_mb'] * mb)
    # The first pool owns far more time than the second, and so its gradient is larger.
    assert grads[0].abs().sum() > grads[1].abs().sum()


def test_latency_profile_checks_its_inputs():
    model = _model()
    gmacs = profile_gmacs(model, (16, 16))
    counts = count_ops(model, (16, 16))
    short = dataclasses.replace(counts, owned_mb=counts.owned_mb[:1])
    with pytest.raises(ValueError, match='resizing layers'):
        LatencyProfile(gmacs, short, LatencyModel(**DEVICE))
    with pytest.raises(TypeError, match='LatencyModel'):
        profile_latency(model, (16, 16), DEVICE)


# ------------------------------------------------------------------------- the fit
def _synthetic_counts(rng: random.Random, n: int):
    return [OpCounts(gmacs=rng.uniform(0.01, 50), mb=rng.uniform(1, 500),
                     calls=rng.randint(50, 3000), layer_calls=rng.choice([0, 5, 17, 40]))
            for _ in range(n)]


def test_fit_recovers_known_constants():
    rng = random.Random(0)
    counts = _synthetic_counts(rng, 20)
    truth = LatencyModel(**DEVICE, batch=2)
    times = [truth.predict_counts(c) for c in counts]
    fitted = fit_latency_model(counts, times, batch=2, threads=2, device='made up')
    for name, value in DEVICE.items():
        assert getattr(fitted, name) == pytest.approx(value, rel=1e-6), name
    assert max(abs(e) for e in fitted.meta['rel_errors']) < 1e-9
    assert (fitted.batch, fitted.threads, fitted.device) == (2, 2, 'made up')


def test_fit_keeps_constants_non_negative_and_errors_small_under_noise():
    rng = random.Random(1)
    counts = _synthetic_counts(rng, 30)
    truth = LatencyModel(per_gmac=50.0, per_mb=0.4, per_call=0.01, per_layer_call=0.0,
                         fixed=0.0)
    noise = np.random.default_rng(1).uniform(0.97, 1.03, len(counts))
    times = [truth.predict_counts(c) * k for c, k in zip(counts, noise)]
    fitted = fit_latency_model(counts, times, batch=1, threads=1)
    values = [fitted.per_gmac, fitted.per_mb, fitted.per_call, fitted.per_layer_call,
              fitted.fixed]
    assert min(values) >= 0  # an unconstrained fit makes some of these negative here
    unconstrained, *_ = np.linalg.lstsq(
        np.array([[c.gmacs, c.mb, c.calls, c.layer_calls, 1.0] for c in counts])
        / np.array(times)[:, None], np.ones(len(counts)), rcond=None)
    assert unconstrained.min() < 0
    assert fitted.per_gmac == pytest.approx(50.0, rel=0.05)
    assert max(abs(e) for e in fitted.meta['rel_errors']) < 0.05


def test_fit_needs_enough_positive_samples():
    counts = _synthetic_counts(random.Random(2), 3)
    with pytest.raises(ValueError, match='at least'):
        fit_latency_model(counts, [1.0, 2.0, 3.0], batch=1, threads=1)
    counts = _synthetic_counts(random.Random(2), 6)
    with pytest.raises(ValueError, match='positive'):
        fit_latency_model(counts, [1.0, 2.0, 0.0, 1.0, 1.0, 1.0], batch=1, threads=1)


# --------------------------------------------------------------------------- JSON
def test_json_round_trip(tmp_path):
    model = LatencyModel(**DEVICE, batch=8, threads=2, device='a CPU',
                         meta=dict(rel_errors=[0.01, -0.02], samples=['x', 'y']))
    path = str(tmp_path / 'sub' / 'cpu.json')
    model.save(path)
    assert LatencyModel.load(path) == model
    with open(path) as f:
        assert json.load(f)['per_gmac'] == DEVICE['per_gmac']


@pytest.mark.parametrize('change, match', [
    (dict(format=99), 'format'),
    (dict(per_mb=-1.0), 'per_mb'),
    (dict(per_gmac=0.0, per_mb=0.0), 'sizes'),
    (dict(batch=0), 'batch'),
    (dict(extra=1), 'unknown'),
])
def test_bad_latency_files_are_refused_by_name(tmp_path, change, match):
    data = dict(LatencyModel(**DEVICE).to_dict(), **change)
    path = tmp_path / 'bad.json'
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=match):
        LatencyModel.load(str(path))


def test_missing_latency_file_says_how_to_make_one(tmp_path):
    with pytest.raises(FileNotFoundError, match='calibrate_cost.py'):
        LatencyModel.load(str(tmp_path / 'none.json'))
    (tmp_path / 'broken.json').write_text('{')
    with pytest.raises(ValueError, match='not valid JSON'):
        LatencyModel.load(str(tmp_path / 'broken.json'))
