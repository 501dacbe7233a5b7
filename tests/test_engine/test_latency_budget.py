"""The latency budget (DynOPoolLatencyHook, docs/budget.md "Latency budgets"): options,
the shipped config, and a few training iterations under it. The latency models here are
made up (no timing in the tests)."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import HOOKS
from mmengine.runner import Runner

from mmseg_dynopool import resizing_layers
from mmseg_dynopool.engine.hooks.latency_hook import DynOPoolLatencyHook
from mmseg_dynopool.models.latency import LatencyModel, predict_latency, profile_latency

from ..helpers import REPO, SYNTH_DP_CFG, SYNTH_HUMAN_CFG, build_segmentor, tiny_config

LAT_CFG = osp.join(REPO, 'configs', 'synthetic',
                   'fcn_dynopool-lat-hr18tiny_1xb8-600it_synthvoc-96x96.py')
DPS_CFG = osp.join(REPO, 'configs', 'synthetic',
                   'fcn_dynopool-s-hr18tiny_1xb8-600it_synthvoc-96x96.py')


@pytest.fixture
def latency_json(tmp_path):
    """A made-up device on which the feature maps' sizes dominate the time."""
    path = str(tmp_path / 'device.json')
    LatencyModel(per_gmac=100.0, per_mb=0.5, per_call=0.005, per_layer_call=0.01,
                 fixed=0.5, device='made up').save(path)
    return path


def _hook(runner) -> DynOPoolLatencyHook:
    return next(h for h in runner.hooks if isinstance(h, DynOPoolLatencyHook))


# ----------------------------------------------------------------------- options
@pytest.mark.parametrize('kwargs, match', [
    (dict(target_latency_ratio=0.8, target_latency=3.0), 'not both'),
    (dict(target_latency=0), 'target_latency'),
    (dict(target_latency_ratio=-1), 'target_ratio'),
    (dict(reference_config=SYNTH_HUMAN_CFG), 'target_latency_ratio'),
    (dict(target_latency_ratio=0.8, lambda_lr=0), 'lambda_lr'),
])
def test_bad_options_name_the_option(latency_json, kwargs, match):
    with pytest.raises(ValueError, match=match):
        DynOPoolLatencyHook(latency_model=latency_json, **kwargs)


def test_missing_files_are_named(tmp_path, latency_json):
    with pytest.raises(FileNotFoundError, match='calibrate_cost.py'):
        DynOPoolLatencyHook(latency_model=str(tmp_path / 'none.json'),
                            target_latency_ratio=0.8)
    with pytest.raises(FileNotFoundError, match='reference_config'):
        DynOPoolLatencyHook(latency_model=latency_json, target_latency_ratio=0.8,
                            reference_config=str(tmp_path / 'none.py'))


def test_latency_config_is_dp_s_with_a_latency_budget(latency_json):
    lat, dps = Config.fromfile(LAT_CFG), Config.fromfile(DPS_CFG)
    assert lat.model == dps.model and lat.optim_wrapper == dps.optim_wrapper
    assert lat.train_cfg == dps.train_cfg
    (hook, ) = lat.custom_hooks
    assert hook['type'] == 'DynOPoolLatencyHook'
    assert hook['target_latency_ratio'] == 0.84 and hook['lock_after'] == 0.9
    assert osp.samefile(hook['reference_config'], SYNTH_HUMAN_CFG)
    built = HOOKS.build(dict(hook, latency_model=latency_json))
    assert isinstance(built, DynOPoolLatencyHook) and built.budget_mode
    # GMACs stays the default: the DP-S config keeps its GMACs hook.
    assert [h['type'] for h in dps.custom_hooks] == ['DynOPoolGMACsHook']


# ------------------------------------------------------------------- training
def test_training_moves_the_latency_to_the_budget(voc_root, tmp_path, latency_json):
    """The shipped config (budget 0.84 x the human model's predicted latency) for a few
    iterations with the alphas at the full learning rate: the predicted latency falls
    toward the budget, the locked model is within it, and the profile is the latency
    model's (Eq. 4.7 in ms)."""
    cfg = tiny_config(LAT_CFG, voc_root, str(tmp_path / 'run'), iters=6, validate=False,
                      alpha_lr_mult=1.0)
    # A strong dual step, so that six iterations are enough to see the sizes move.
    cfg.custom_hooks[0].update(latency_model=latency_json, lock_after=1.0, lambda_lr=1.0,
                               lambda_p=5.0)
    runner = Runner.from_cfg(cfg)
    runner.train()
    hook = _hook(runner)
    shape = (64, 64)
    latency = LatencyModel.load(latency_json)
    # The budget is 0.84 x the human model's prediction at the training size.
    human = build_segmentor(Config.fromfile(SYNTH_HUMAN_CFG)).eval()
    assert hook.reference_ms == pytest.approx(predict_latency(human, shape, latency))
    assert hook.target_latency == pytest.approx(0.84 * hook.reference_ms)
    # The profile is the latency model's, of the initial model at the training size.
    initial = build_segmentor(cfg)
    assert hook.profile.initial_cost == pytest.approx(
        profile_latency(initial, shape, latency).initial_cost, rel=1e-9)
    history = runner.message_hub.get_scalar('train/latency').data[0]
    start = hook.profile.initial_cost
    assert start > hook.target_latency  # the budget binds
    assert history[-2] < start  # moved toward the budget before the lock ...
    locked = hook.current_latency()
    assert locked <= hook.target_latency * (1 + 1e-6)  # ... and the lock is within it
    assert history[-1] == pytest.approx(locked, rel=1e-6)
    # The GMACs are logged beside the latency, and fell with it.
    gmacs = runner.message_hub.get_scalar('train/gmacs').data[0]
    assert gmacs[-1] < hook.profile.gmacs.total_gmacs
    model = runner.model
    assert hook.profile.host_estimate([m for _, m in resizing_layers(model)]) == \
        pytest.approx(locked, rel=1e-5)


def test_target_latency_in_ms_without_reference(voc_root, tmp_path, latency_json):
    """An absolute budget in ms, and a lambda that stays 0 when the budget does not
    bind (so the run is the unconstrained one)."""
    cfg = tiny_config(SYNTH_DP_CFG, voc_root, str(tmp_path / 'run'), iters=3,
                      validate=False, alpha_lr_mult=1.0)
    cfg.custom_hooks = [dict(type='DynOPoolLatencyHook', latency_model=latency_json,
                             target_latency=1e6)]
    runner = Runner.from_cfg(cfg)
    runner.train()
    hook = _hook(runner)
    assert hook.target_latency == 1e6 and hook.reference_ms is None
    assert hook.lam == 0.0
    assert runner.message_hub.get_scalar('train/latency_lambda').data[0].max() == 0.0
    assert torch.isfinite(torch.tensor(hook.current_latency()))
