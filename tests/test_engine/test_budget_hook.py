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
def test_binding_budget_ends_within_3_percent_and_lambda_rises(voc_root, tmp_path):
    runner, hook, records = _train(voc_root, tmp_path, 12,
                                   dict(target_ratio=0.7, lambda_lr=0.5))
    target = 0.7 * hook.profile.total_gmacs
    final = hook.current_gmacs()
    assert final == pytest.approx(target, rel=0.03)
    assert final <= target * 1.03
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
