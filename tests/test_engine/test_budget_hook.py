"""Budget mode of DynOPoolGMACsHook: lambda by dual ascent, projection, resume, DDP."""
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.runner import Runner

from mmseg_dynopool import dynopool_layers
from mmseg_dynopool.engine import DynOPoolGMACsHook

from ..conftest import REPO
from ..reliability_helpers import RecorderHook, tiny_config


def _hook(runner) -> DynOPoolGMACsHook:
    return next(h for h in runner.hooks if isinstance(h, DynOPoolGMACsHook))


def _train(voc_root, work_dir, iters, hook_kwargs, loss_weight=0.0, alpha_lr_mult=1.0,
           checkpoint_interval=None):
    cfg = tiny_config(voc_root, str(work_dir), iters, loss_weight=loss_weight,
                      hook_kwargs=hook_kwargs, checkpoint_interval=checkpoint_interval)
    cfg.optim_wrapper.paramwise_cfg.custom_keys['.alpha']['lr_mult'] = alpha_lr_mult
    _own_names(cfg)
    runner = Runner.from_cfg(cfg)
    recorder = RecorderHook()
    runner.register_hook(recorder)
    runner.train()
    return runner, _hook(runner), recorder.records


# ------------------------------------------------------------------ arguments


@pytest.mark.parametrize('kwargs, match', [
    (dict(target_ratio=0), 'target_ratio'),
    (dict(target_ratio=-0.5), 'target_ratio'),
    (dict(target_ratio=float('nan')), 'target_ratio'),
    (dict(target_ratio='0.8'), 'target_ratio'),
    (dict(target_ratio=0.8, lambda_lr=0), 'lambda_lr'),
    (dict(target_ratio=0.8, lambda_p=-1), 'lambda_p'),
    (dict(target_ratio=0.8, freeze_after=0), 'freeze_after'),
    (dict(target_ratio=0.8, freeze_after=1.5), 'freeze_after'),
    (dict(target_gmacs=0), 'target_gmacs'),
    (dict(target_gmacs=float('inf')), 'target_gmacs'),
    (dict(target_gmacs=1.0, target_ratio=0.8), 'not both'),
])
def test_bad_budget_arguments_name_the_option(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DynOPoolGMACsHook(**kwargs)


def test_fixed_lambda_mode_is_unchanged_by_default():
    hook = DynOPoolGMACsHook(loss_weight=0.3)
    assert not hook.budget_mode and hook.lam == 0.3


# ------------------------------------------------------------------ dual update


class _FakeProfile:
    total_gmacs = 2.0


def test_dual_step_follows_the_documented_rule_and_never_goes_negative():
    hook = DynOPoolGMACsHook(loss_weight=0.0, target_ratio=0.5, lambda_lr=0.1,
                             lambda_p=0.0)
    hook.profile = _FakeProfile()  # T = 1 GMACs
    assert not hook.exceeded
    hook._dual_step(1.5)  # 50% over the budget: mu = 0 + 0.1 * 0.5
    assert hook.lam == pytest.approx(0.05) and hook.exceeded
    hook._dual_step(1.2)  # mu = 0.05 + 0.1 * 0.2
    assert hook.lam == pytest.approx(0.07)
    hook._dual_step(0.2)  # far below: mu would be 0.07 - 0.08 < 0 -> 0
    assert hook.lam == 0.0
    hook._dual_step(0.5)
    assert hook.lam == 0.0 and hook.exceeded  # the excess is remembered


def test_dual_step_starts_from_loss_weight_and_adds_the_proportional_term():
    hook = DynOPoolGMACsHook(loss_weight=0.4, target_ratio=0.5, lambda_lr=0.1,
                             lambda_p=1.0)
    hook.profile = _FakeProfile()  # T = 1 GMACs, mu_0 = 0.4
    hook._dual_step(0.9)  # e = -0.1: mu = 0.39, lambda = 0.39 - 0.1
    assert hook.mu == pytest.approx(0.39) and hook.lam == pytest.approx(0.29)
    assert not hook.exceeded  # under the budget so far
    hook._dual_step(0.5)  # e = -0.5: mu = 0.34, lambda = max(0, 0.34 - 0.5) = 0
    assert hook.mu == pytest.approx(0.34) and hook.lam == 0.0


def test_target_gmacs_is_an_absolute_budget():
    hook = DynOPoolGMACsHook(target_gmacs=1.5, lambda_lr=0.1, lambda_p=0.0)
    assert hook.budget_mode and hook.target_gmacs == 1.5  # known before profiling
    hook.profile = _FakeProfile()  # initial 2 GMACs: T stays 1.5, not a fraction of it
    hook._dual_step(3.0)  # 100% over T = 1.5: mu = 0.1, lambda = mu / T
    assert hook.lam == pytest.approx(0.1 / 1.5) and hook.exceeded
    state = {}
    hook.before_save_checkpoint(None, state)
    assert state['dynopool_gmacs_hook']['target_gmacs'] == 1.5


# ------------------------------------------------------------------ through the Runner


@pytest.mark.slow
def test_binding_budget_ends_within_1_percent_and_lambda_rises(voc_root, tmp_path):
    runner, hook, records = _train(voc_root, tmp_path, 12,
                                   dict(target_ratio=0.7, lambda_lr=0.5))
    target = 0.7 * hook.profile.total_gmacs
    final = hook.current_gmacs()
    assert final <= target
    if final < 0.99 * target:  # only where the integer sizes allow nothing closer
        assert 'not met within 1 %' in _log_text(runner)
    # lambda grew while the model was above its budget, and the GMACs loss moved the
    # sizes towards it before the final projection.
    lams = [r['lam'] for r in records]
    assert lams[0] > 0 and max(lams) > lams[0]
    hub = runner.message_hub
    ratio_log = hub.get_scalar('train/gmacs_to_target').data[0]
    assert ratio_log[0] == pytest.approx(1 / 0.7, rel=1e-3)
    assert ratio_log[-1] < ratio_log[0] - 0.05
    assert len(hub.get_scalar('train/gmacs_lambda').data[0]) == 12
    # The checkpoint holds the projected alphas: the model that is saved keeps the budget.
    ckpt = torch.load(osp.join(str(tmp_path), 'iter_12.pth'), weights_only=False)
    for name, pool in dynopool_layers(runner.model):
        assert torch.equal(ckpt['state_dict'][f'{name}.alpha'], pool.alpha.detach())
    assert ckpt['dynopool_gmacs_hook']['frozen'] is not None


@pytest.mark.slow
def test_slack_budget_lets_lambda_fall_to_zero_and_leaves_the_model(voc_root, tmp_path):
    runner, hook, records = _train(voc_root, tmp_path, 8,
                                   dict(target_ratio=3.0, lambda_lr=0.5),
                                   loss_weight=0.2)
    target = 3.0 * hook.profile.total_gmacs
    assert records[0]['lam'] < 0.2
    assert records[-1]['lam'] == 0.0
    assert hook.current_gmacs() < target
    # No projection happened: the alphas are what the optimizer left (the last
    # iteration's record equals the final state).
    for name, pool in dynopool_layers(runner.model):
        assert torch.equal(records[-1]['alpha'][name].float(), pool.alpha.detach())


@pytest.mark.slow
def test_budget_caps_a_model_whose_maps_grow(voc_root, tmp_path):
    # Control: without a GMACs loss, alpha at 20x the base lr, the task loss grows the
    # maps (as in the original main job) ...
    _, free, _ = _train(voc_root, tmp_path / 'free', 8, dict(), alpha_lr_mult=20.0)
    assert free.current_gmacs() > 1.03 * free.profile.total_gmacs
    # ... the same run with a budget of 1.0 holds it.
    _, capped, _ = _train(voc_root, tmp_path / 'capped', 8,
                          dict(target_ratio=1.0, lambda_lr=0.5), alpha_lr_mult=20.0)
    assert capped.current_gmacs() <= 1.03 * capped.profile.total_gmacs
    assert capped.current_gmacs() >= 0.97 * capped.profile.total_gmacs


@pytest.mark.slow
def test_freeze_after_holds_the_alphas_for_the_rest_of_training(voc_root, tmp_path):
    runner, hook, records = _train(voc_root, tmp_path, 8,
                                   dict(target_ratio=0.7, lambda_lr=0.5,
                                        freeze_after=0.5))
    frozen = [r['alpha'] for r in records[3:]]  # frozen after iteration 4 of 8
    assert all(all(torch.equal(a[k], frozen[0][k]) for k in a) for a in frozen[1:])
    assert not all(torch.equal(records[0]['alpha'][k], frozen[0][k])
                   for k in frozen[0])
    # No GMACs loss once frozen; the frozen model keeps its budget.
    assert 'loss_gmacs' not in records[-1]['losses']
    assert hook.current_gmacs() <= 1.03 * 0.7 * hook.profile.total_gmacs


@pytest.mark.slow
def test_resume_continues_the_exact_lambda_sequence(voc_root, tmp_path):
    kwargs = dict(target_ratio=0.7, lambda_lr=0.5)
    _, _, straight = _train(voc_root, tmp_path / 'straight', 6, kwargs)
    _train(voc_root, tmp_path / 'split', 6, kwargs, checkpoint_interval=3)
    # Resume the split run from its iteration-3 checkpoint in a new Runner.
    cfg = tiny_config(voc_root, str(tmp_path / 'resumed'), 6, loss_weight=0.0,
                      hook_kwargs=kwargs)
    cfg.resume = True
    cfg.load_from = osp.join(str(tmp_path / 'split'), 'iter_3.pth')
    runner = Runner.from_cfg(cfg)
    recorder = RecorderHook()
    runner.register_hook(recorder)
    runner.train()
    resumed = [r['lam'] for r in recorder.records]
    assert len(resumed) == 3
    assert resumed == [r['lam'] for r in straight[3:]]  # bitwise: float equality
    assert straight[2]['lam'] > 0  # the checkpointed lambda was not trivial


@pytest.mark.slow
def test_ddp_ranks_share_lambda(voc_root, tmp_path):
    out = tmp_path / 'ranks'
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone',
           '--nproc_per_node', '2', osp.join(REPO, 'tests', 'dist_worker.py'),
           '--data-root', voc_root, '--work-dir', str(tmp_path / 'work'),
           '--out', str(out), '--iters', '4', '--loss-weight', '0.0',
           '--target-ratio', '0.7']
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0 = torch.load(out / 'rank0.pt', weights_only=False)
    r1 = torch.load(out / 'rank1.pt', weights_only=False)
    lam0 = [r['lam'] for r in r0['records']]
    lam1 = [r['lam'] for r in r1['records']]
    assert len(lam0) == 4 and lam0 == lam1
    assert max(lam0) > 0


def test_projection_lands_within_the_rounding_of_the_budget(voc_root, tmp_path):
    """From sizes far below and far above the budget, in both directions."""
    cfg = tiny_config(voc_root, str(tmp_path), 1, loss_weight=0.0,
                      hook_kwargs=dict(target_ratio=0.84))
    cfg.model.data_preprocessor.size = (96, 96)
    runner = Runner.from_cfg(cfg)
    hook = _hook(runner)
    hook._before_train(runner)
    hook._setup(runner, (96, 96))
    target = hook.target_gmacs
    pools = [m for _, m in dynopool_layers(runner.model)]
    for ratios in ([(0.3, 0.35), (0.4, 0.3), (0.45, 0.5), (0.5, 0.4), (0.6, 0.5)],
                   [(0.7, 0.6), (0.55, 0.7), (0.6, 0.5), (0.5, 0.6), (0.6, 0.6)]):
        with torch.no_grad():
            for pool, r in zip(pools, ratios):
                pool.alpha.copy_(torch.tensor([1 / r[0], 1 / r[1]]))
        before = hook.current_gmacs()
        after = hook.project_to_budget()
        assert abs(before / target - 1) > 0.1  # the projection had work to do
        assert after == pytest.approx(hook.current_gmacs())
        assert 0.99 * target <= after <= target


# ------------------------------------------------------------------ load_from vs resume


class _StartHook(RecorderHook):
    """Records every pool's alpha at ``before_train`` (after the GMACs hook's)."""

    def before_train(self, runner) -> None:
        from ..reliability_helpers import pool_items
        self.start = {n: m.alpha.detach().clone() for n, m in pool_items(runner.model)}


def _own_names(cfg) -> None:
    """A logger and visualizer of the run's own: mmengine reuses the instances (and
    their files) of a Runner built in the same second from the same config."""
    import uuid
    cfg.experiment_name = f'test-budget-{uuid.uuid4().hex}'
    cfg.visualizer.name = cfg.experiment_name


def _log_text(runner) -> str:
    with open(osp.join(runner.log_dir, f'{runner.timestamp}.log')) as f:
        return f.read()


@pytest.mark.slow
def test_load_from_a_finished_budget_run_starts_a_new_budget_run(voc_root, tmp_path):
    first, first_hook, _ = _train(voc_root, tmp_path / 'first', 6,
                                  dict(target_ratio=0.7, lambda_lr=0.5))
    ckpt_path = osp.join(str(tmp_path / 'first'), 'iter_6.pth')
    ckpt = torch.load(ckpt_path, weights_only=False)
    state = ckpt['dynopool_gmacs_hook']
    assert state['frozen'] is not None and state['lam'] > 0  # a finished, frozen run
    # A new run from its weights with a tighter budget, `load_from` without resume.
    kwargs = dict(target_ratio=0.55, lambda_lr=0.5)
    cfg = tiny_config(voc_root, str(tmp_path / 'second'), 6, loss_weight=0.0,
                      hook_kwargs=kwargs)
    cfg.load_from = ckpt_path
    _own_names(cfg)
    runner = Runner.from_cfg(cfg)
    recorder, start = RecorderHook(), _StartHook()
    runner.register_hook(recorder)
    runner.register_hook(start)
    runner.train()
    hook = _hook(runner)
    # The loaded alphas are the starting point ...
    for name, value in start.start.items():
        assert torch.equal(value, ckpt['state_dict'][f'{name}.alpha'])
    # ... lambda starts afresh (from loss_weight = 0, by the dual rule on the first
    # logged estimate), not from the checkpoint's value ...
    fresh = DynOPoolGMACsHook(loss_weight=0.0, **kwargs)
    fresh.profile = hook.profile
    fresh._dual_step(runner.message_hub.get_scalar('train/gmacs').data[0][0])
    assert recorder.records[0]['lam'] == fresh.lam != state['lam']
    # ... the alphas are not frozen: they move during training ...
    names = list(start.start)
    assert any(not torch.equal(recorder.records[0]['alpha'][n],
                               recorder.records[-2]['alpha'][n]) for n in names)
    assert 'loss_gmacs' in recorder.records[1]['losses']  # lambda > 0 after one step
    # ... and the new budget is enforced by a projection at the end.
    target = 0.55 * hook.profile.total_gmacs
    assert first_hook.current_gmacs() > 1.1 * target  # the loaded model was over it
    assert hook.frozen is not None and hook.current_gmacs() <= target
    saved = torch.load(osp.join(str(tmp_path / 'second'), 'iter_6.pth'),
                       weights_only=False)
    assert saved['dynopool_gmacs_hook']['exceeded']
    for name, pool in dynopool_layers(runner.model):
        assert torch.equal(saved['state_dict'][f'{name}.alpha'], pool.alpha.detach())
    assert 'load_from (not a resume): a new budget run' in _log_text(runner)


@pytest.mark.slow
def test_resume_from_a_frozen_checkpoint_continues_frozen(voc_root, tmp_path):
    kwargs = dict(target_ratio=0.7, lambda_lr=0.5, freeze_after=0.5)
    _, straight_hook, straight = _train(voc_root, tmp_path / 'straight', 6, kwargs,
                                        checkpoint_interval=3)
    ckpt_path = osp.join(str(tmp_path / 'straight'), 'iter_3.pth')
    assert torch.load(ckpt_path, weights_only=False)['dynopool_gmacs_hook'][
        'frozen'] is not None  # projected at iteration 3 of 6
    cfg = tiny_config(voc_root, str(tmp_path / 'resumed'), 6, loss_weight=0.0,
                      hook_kwargs=kwargs)
    cfg.resume = True
    cfg.load_from = ckpt_path
    _own_names(cfg)
    runner = Runner.from_cfg(cfg)
    recorder = RecorderHook()
    runner.register_hook(recorder)
    runner.train()
    hook = _hook(runner)
    resumed = recorder.records
    assert [r['iter'] for r in resumed] == [3, 4, 5]
    assert [r['lam'] for r in resumed] == [r['lam'] for r in straight[3:]]
    for mine, theirs in zip(resumed, straight[3:]):
        assert all(torch.equal(mine['alpha'][k], theirs['alpha'][k])
                   for k in theirs['alpha'])
        assert 'loss_gmacs' not in mine['losses']
    assert all(torch.equal(a, b) for a, b in zip(hook.frozen, straight_hook.frozen))
    assert hook.exceeded == straight_hook.exceeded
    assert 'load_from (not a resume)' not in _log_text(runner)


# ------------------------------------------------------------------ projection


class _FakeRunner:
    """The parts of a Runner the hook's projection uses."""

    def __init__(self, model):
        from mmengine.logging import MessageHub, MMLogger
        self.model = model
        name = f'budget_{id(self)}'
        self.logger = MMLogger.get_instance(name)
        self.message_hub = MessageHub.get_instance(name)
        self.iter, self.max_iters = 0, 1


def test_projection_says_how_close_integer_sizes_come_when_1_percent_is_impossible():
    """One pool on an 8x8 input: every cost is proportional to h * w (the pool's own
    sampling and the conv it feeds), 4x4 = 16 at the start. A budget of 0.8 x initial is
    12.8 "cells": no product h * w of sizes >= 2 lies in [0.99 * 12.8, 12.8], so the best
    is 12 (3x4 or 4x3) and the log explains the gap."""
    import logging

    from torch import nn

    from mmseg_dynopool import DynOPool
    model = nn.Sequential(DynOPool(init_ratio=0.5), nn.Conv2d(3, 4, 3, padding=1))
    hook = DynOPoolGMACsHook(target_ratio=0.8)
    runner = _FakeRunner(model)
    hook.before_train(runner)
    hook._setup(runner, (8, 8))
    budget_cells = 0.8 * 16
    products = {h * w for h in range(2, 33) for w in range(2, 33)}
    assert not [p for p in products if 0.99 <= p / budget_cells <= 1.0]
    records = _Records()
    handler = logging.StreamHandler(records)
    runner.logger.addHandler(handler)
    try:
        hook.exceeded = True
        hook._freeze(runner)
    finally:
        runner.logger.removeHandler(handler)
    pool = model[0]
    with torch.no_grad():
        model(torch.zeros(1, 3, 8, 8))
    h, w = pool.last_size
    assert h * w == max(p for p in products if p <= budget_cells) == 12
    assert hook.current_gmacs() == pytest.approx(12 / 16 * hook.profile.total_gmacs,
                                                 rel=1e-6)
    below, above = hook.projection_gap
    assert below == pytest.approx(12 / budget_cells)
    assert above is not None and above > 1.0
    text = ''.join(records)
    assert 'not met within 1 %' in text
    assert f'{below:.4f}x' in text and f'{above:.4f}x' in text


def _ties_and_sizes(runner, shape):
    """Per pool: ``in_size * r`` of both axes and the output size, from a real forward."""
    model = runner.model
    with torch.no_grad():
        model(torch.zeros(1, 3, *shape), mode='tensor')
    out = []
    for _, pool in dynopool_layers(model):
        r_h, r_w = pool.host_ratio
        (h_in, w_in), size = pool.last_input_size, pool.last_size
        out.append(((h_in * r_h, w_in * r_w), tuple(size)))
    return out


class _Records(list):
    def write(self, message):
        self.append(message)

    def flush(self):
        pass


@pytest.mark.parametrize('target', [0.5, 0.6, 0.7, 0.84])
def test_projection_at_64_meets_the_budget_within_1_percent_off_ties(
        voc_root, tmp_path, target):
    """At 64x64 the maps are small (stem 32x32 ... 2x2) and the integer sizes coarse."""
    import logging
    cfg = tiny_config(voc_root, str(tmp_path), 1, loss_weight=0.0,
                      hook_kwargs=dict(target_ratio=target))
    runner = Runner.from_cfg(cfg)
    hook = _hook(runner)
    hook._before_train(runner)
    hook._setup(runner, (64, 64))
    records = _Records()
    handler = logging.StreamHandler(records)
    runner.logger.addHandler(handler)
    pools = [m for _, m in dynopool_layers(runner.model)]
    try:
        for ratios in ([(0.6, 0.45), (0.55, 0.4), (0.45, 0.6), (0.5, 0.35), (0.7, 0.6)],
                       [(0.35, 0.3), (0.5, 0.5), (0.5, 0.5), (0.5, 0.5), (0.5, 0.5)]):
            with torch.no_grad():
                for pool, r in zip(pools, ratios):
                    pool.alpha.copy_(torch.tensor([1 / r[0], 1 / r[1]]))
            hook.frozen, hook.exceeded = None, True  # the budget binds
            del records[:]
            hook._freeze(runner)
            budget = hook.target_gmacs
            final = hook.current_gmacs()
            assert final <= budget
            assert hook.profile.host_estimate(pools) <= budget
            # No ratio on a rounding tie: in_size * r at least 0.25 from any k + 0.5,
            # i.e. within 0.25 of the size it rounds to (the real forward's size).
            for products, size in _ties_and_sizes(runner, (64, 64)):
                for product, n in zip(products, size):
                    assert abs(product - n) <= 0.25, (products, size)
            below, above = hook.projection_gap
            assert below == pytest.approx(hook.profile.host_estimate(pools) / budget)
            if final < 0.99 * budget:
                # Then the integer sizes allow nothing closer, and the log says so.
                text = ''.join(records)
                assert 'not met within 1 %' in text and f'{below:.4f}x' in text
                assert above is not None and above > 1.0
                assert f'{above:.4f}x' in text
    finally:
        runner.logger.removeHandler(handler)


@pytest.mark.slow
def test_projection_iteration_logs_the_projected_model(voc_root, tmp_path):
    """The last logged GMACs, sizes and ratios are the saved (projected) model's, also
    when the logger does not log the last iteration (interval 2, 5 iterations)."""
    import json

    from mmseg_dynopool.analysis.plots import find_scalar_logs, load_scalar_logs
    cfg = tiny_config(voc_root, str(tmp_path), 5, loss_weight=0.0,
                      hook_kwargs=dict(target_ratio=0.7, lambda_lr=0.5))
    cfg.default_hooks.logger.interval = 2
    _own_names(cfg)
    runner = Runner.from_cfg(cfg)
    runner.train()
    hook = _hook(runner)
    budget = hook.target_gmacs
    # The saved model, measured by a forward of its checkpoint's weights.
    ckpt = torch.load(osp.join(str(tmp_path), 'iter_5.pth'), weights_only=False)
    runner.model.load_state_dict(ckpt['state_dict'])
    runner.model.eval()
    with torch.no_grad():
        runner.model(torch.zeros(1, 3, 64, 64), mode='tensor')
    pools = dynopool_layers(runner.model)
    saved_gmacs = hook.profile.host_estimate([m for _, m in pools])
    logs = find_scalar_logs(str(tmp_path))
    assert len(logs) == 1
    with open(logs[0]) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    last = [r for r in rows if r.get('iter') == 5]
    assert len(last) == 1  # only the hook's row: the logger skips iteration 5
    last = last[0]
    assert last['gmacs'] == pytest.approx(saved_gmacs, rel=1e-12)
    assert last['gmacs_to_target'] == pytest.approx(saved_gmacs / budget, rel=1e-12)
    assert last['gmacs_to_target'] <= 1.0
    for name, pool in pools:
        assert (last[f'{name}/h'], last[f'{name}/w']) == tuple(map(float, pool.last_size))
        r_h, r_w = pool.host_ratio
        assert (last[f'{name}/r_h'], last[f'{name}/r_w']) == (r_h, r_w)
    # The forward of iteration 5 (before the projection) had another cost: that is
    # what would have been logged last.
    assert hook._last_estimate != pytest.approx(last['gmacs'], rel=1e-6)
    assert [r['iter'] for r in rows if 'loss' in r] == [2, 4]  # the logger's lines
    # The message hub's current values (what a logger line of iteration 5 would show).
    hub = runner.message_hub
    assert hub.get_scalar('train/gmacs').current() == last['gmacs']
    # The plot tool's series end at the saved model.
    series = load_scalar_logs(logs)
    assert series['gmacs'][0][-1] == 5 and series['gmacs'][1][-1] == last['gmacs']
