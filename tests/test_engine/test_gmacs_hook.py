"""DynOPoolGMACsHook: the hook that wires the budget controller (tests/test_engine/
test_budget.py) into mmengine's Runner - arguments, profiling, the loss, the lock at
``lock_after``, logging, checkpoints (resume vs load_from) - on DynOPool models and on
models whose resizing layers are ShapeAdaptor or DiffStride. Under DDP (lambda taken
from rank 0): tests/integration/test_ddp.py."""
import json
import logging
import os.path as osp
import uuid

import pytest
import torch
from mmengine.logging import MessageHub, MMLogger
from mmengine.runner import Runner
from torch import nn

from mmseg_dynopool.analysis import model_report
from mmseg_dynopool.engine import BudgetController, DynOPoolGMACsHook
from mmseg_dynopool.layers import (DynOPool, ShapeAdaptor, ratio_parameter,
                                   resizing_layers)
from mmseg_dynopool.models.build import build_model_from_config
from mmseg_dynopool.models.cost import profile_gmacs, reset_to_initial_ratios

from ..conftest import resizing_layer_cfg
from ..helpers import (MOVING_SIZES, SYNTH_DP_CFG, RecorderHook, pool_items,
                       tiny_config)

pytestmark = pytest.mark.usefixtures('one_thread')  # beside the other worker's child processes


def _layers(model):
    return [m for _, m in resizing_layers(model)]


def _hook(runner) -> DynOPoolGMACsHook:
    return next(h for h in runner.hooks if isinstance(h, DynOPoolGMACsHook))


def _cfg(voc_root, work_dir, iters, hook_kwargs, loss_weight=0.0,
         checkpoint_interval=None):
    """The tiny DynOPool HRNet with moving sizes, this hook, seed 0, a logger and
    visualizer of the run's own (mmengine reuses the instances of a Runner built in the
    same second from the same config)."""
    cfg = tiny_config(SYNTH_DP_CFG, voc_root, str(work_dir), iters,
                      **dict(MOVING_SIZES, gmacs_hook=dict(loss_weight=loss_weight,
                                                           **hook_kwargs)),
                      randomness=dict(seed=0))
    if checkpoint_interval:
        cfg.default_hooks.checkpoint.interval = checkpoint_interval
    cfg.experiment_name = f'test-gmacs-hook-{uuid.uuid4().hex}'
    cfg.visualizer.name = cfg.experiment_name
    return cfg


def _train(voc_root, work_dir, iters, hook_kwargs, loss_weight=0.0, alpha_lr_mult=1.0,
           checkpoint_interval=None, **cfg_changes):
    cfg = _cfg(voc_root, work_dir, iters, hook_kwargs, loss_weight, checkpoint_interval)
    cfg.optim_wrapper.paramwise_cfg.custom_keys['.alpha']['lr_mult'] = alpha_lr_mult
    cfg.merge_from_dict(cfg_changes)
    runner = Runner.from_cfg(cfg)
    recorder = RecorderHook()
    runner.register_hook(recorder)
    runner.train()
    return runner, _hook(runner), recorder.records


def _log_text(runner) -> str:
    with open(osp.join(runner.log_dir, f'{runner.timestamp}.log')) as f:
        return f.read()


class _FakeRunner:
    """The parts of a Runner the hook uses outside ``train()``."""

    def __init__(self, model, resume=False, it=0):
        name = f'gmacs_hook_{uuid.uuid4().hex}'
        self.model, self._resume = model, resume
        self.logger = MMLogger.get_instance(name)
        self.message_hub = MessageHub.get_instance(name)
        self.iter, self.max_iters = it, 1
        self.lines = []
        handler = logging.StreamHandler(self)
        self.logger.addHandler(handler)

    def write(self, message):  # (the log handler's stream)
        self.lines.append(message)

    def flush(self):
        pass

    @property
    def log(self) -> str:
        return ''.join(self.lines)


def _set_up(model, shape, **kwargs):
    hook = DynOPoolGMACsHook(**kwargs)
    runner = _FakeRunner(model)
    hook.before_train(runner)
    hook._setup(runner, shape)
    return hook, runner


# ------------------------------------------------------------------ arguments


@pytest.mark.parametrize('kwargs, match', [
    (dict(target_ratio=0), 'target_ratio'),
    (dict(target_ratio=-0.5), 'target_ratio'),
    (dict(target_ratio=float('nan')), 'target_ratio'),
    (dict(target_ratio='0.8'), 'target_ratio'),
    (dict(target_ratio=0.8, lambda_lr=0), 'lambda_lr'),
    (dict(target_ratio=0.8, lambda_p=-1), 'lambda_p'),
    (dict(target_ratio=0.8, lock_after=0), 'lock_after'),
    (dict(target_ratio=0.8, lock_after=1.5), 'lock_after'),
    (dict(target_ratio=0.8, freeze_after=0), 'freeze_after'),
    (dict(target_gmacs=0), 'target_gmacs'),
    (dict(target_gmacs=float('inf')), 'target_gmacs'),
    (dict(target_gmacs=1.0, target_ratio=0.8), 'not both'),
    (dict(lock_after=0.5, freeze_after=0.5), 'not both lock_after and its deprecated'),
    (dict(loss_weight=-1), 'loss_weight'),
    (dict(input_shape=(64, )), 'input_shape'),
])
def test_bad_arguments_name_the_option(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DynOPoolGMACsHook(**kwargs)


def test_freeze_after_is_a_deprecated_name_of_lock_after():
    with pytest.warns(DeprecationWarning, match='use lock_after'):
        hook = DynOPoolGMACsHook(target_ratio=0.8, freeze_after=0.9)
    assert hook.lock_after == 0.9
    assert DynOPoolGMACsHook(target_ratio=0.8).lock_after == 1.0


def test_fixed_lambda_mode_is_unchanged_by_default():
    hook = DynOPoolGMACsHook(loss_weight=0.3)
    assert not hook.budget_mode and hook.lam == 0.3
    assert DynOPoolGMACsHook.priority == 'NORMAL'


def test_target_gmacs_is_an_absolute_budget_known_before_profiling():
    hook = DynOPoolGMACsHook(target_gmacs=1.5)
    assert hook.budget_mode and hook.target_gmacs == 1.5
    state = {}
    hook.before_save_checkpoint(None, state)
    assert state['dynopool_gmacs_hook']['target_gmacs'] == 1.5
    assert state['dynopool_gmacs_hook']['locked'] is None


# ------------------------------------------------------------------ checkpoints


def _chain():
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), DynOPool(0.5),
                         nn.Conv2d(8, 8, 3, padding=1), DynOPool(0.5))


def test_resume_reads_an_old_checkpoint_with_frozen_alphas():
    """Checkpoints written before the rename hold ``frozen``: a resume locks them."""
    model = _chain()
    values = [torch.tensor([2.5, 3.0]), torch.tensor([2.0, 2.2])]
    old = dict(lam=0.25, mu=0.1, exceeded=True, frozen=values, target_ratio=0.8,
               target_gmacs=None)
    hook = DynOPoolGMACsHook(target_ratio=0.8)
    runner = _FakeRunner(model, resume=True, it=3)
    hook.after_load_checkpoint(runner, dict(dynopool_gmacs_hook=old, meta=dict(iter=3)))
    hook.before_train(runner)
    assert hook.lam == 0.25 and hook.controller.exceeded
    for layer, value in zip(_layers(model), values):
        assert torch.equal(layer.alpha.detach(), value)
    assert hook.locked is hook.frozen and len(hook.locked) == 2
    hook._setup(runner, (32, 32))
    with torch.no_grad():
        for layer in _layers(model):
            layer.alpha.add_(0.5)  # the optimizer's step
    hook._last_estimate = hook.controller.host_cost()
    hook.after_train_iter(runner, 0)
    for layer, value in zip(_layers(model), values):
        assert torch.equal(layer.alpha.detach(), value)  # held
    saved = {}
    hook.before_save_checkpoint(runner, saved)
    assert set(saved['dynopool_gmacs_hook']) == {'lam', 'mu', 'exceeded', 'locked',
                                                 'target_ratio', 'target_gmacs'}


def test_load_from_drops_the_checkpoints_controller_state():
    model = _chain()
    old = dict(lam=0.25, mu=0.1, exceeded=True, locked=[torch.ones(2), torch.ones(2)],
               target_ratio=0.8, target_gmacs=None)
    hook = DynOPoolGMACsHook(target_ratio=0.8, loss_weight=0.01)
    runner = _FakeRunner(model, resume=False, it=0)
    hook.after_load_checkpoint(runner, dict(dynopool_gmacs_hook=old, meta=dict(iter=3)))
    hook.before_train(runner)
    assert hook.lam == 0.01 and not hook.controller.exceeded and hook.locked is None
    assert all(not torch.equal(m.alpha.detach(), torch.ones(2)) for m in _layers(model))
    assert 'load_from (not a resume): a new budget run' in runner.log


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
    assert 'ratios locked at iteration 12' in _log_text(runner)
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
    for name, pool in resizing_layers(runner.model):
        assert torch.equal(ckpt['state_dict'][f'{name}.alpha'], pool.alpha.detach())
    assert ckpt['dynopool_gmacs_hook']['locked'] is not None


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
    for name, pool in resizing_layers(runner.model):
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
def test_lock_after_holds_the_alphas_for_the_rest_of_training(voc_root, tmp_path):
    runner, hook, records = _train(voc_root, tmp_path, 8,
                                   dict(target_ratio=0.7, lambda_lr=0.5,
                                        lock_after=0.5))
    locked = [r['alpha'] for r in records[3:]]  # locked after iteration 4 of 8
    assert all(all(torch.equal(a[k], locked[0][k]) for k in a) for a in locked[1:])
    assert not all(torch.equal(records[0]['alpha'][k], locked[0][k])
                   for k in locked[0])
    # No GMACs loss once locked; the locked model keeps its budget.
    assert 'loss_gmacs' not in records[-1]['losses']
    assert hook.current_gmacs() <= 1.03 * 0.7 * hook.profile.total_gmacs
    assert 'ratios locked at iteration 4' in _log_text(runner)


@pytest.mark.slow
def test_resume_continues_the_exact_lambda_sequence(voc_root, tmp_path):
    kwargs = dict(target_ratio=0.7, lambda_lr=0.5)
    _, _, straight = _train(voc_root, tmp_path / 'straight', 6, kwargs)
    _train(voc_root, tmp_path / 'split', 6, kwargs, checkpoint_interval=3)
    # Resume the split run from its iteration-3 checkpoint in a new Runner.
    _, _, resumed = _train(voc_root, tmp_path / 'resumed', 6, kwargs, resume=True,
                           load_from=osp.join(str(tmp_path / 'split'), 'iter_3.pth'))
    assert len(resumed) == 3
    assert [r['lam'] for r in resumed] == [r['lam'] for r in straight[3:]]  # bitwise
    assert straight[2]['lam'] > 0  # the checkpointed lambda was not trivial


def test_projection_lands_within_the_rounding_of_the_budget(voc_root, tmp_path):
    """From sizes far below and far above the budget, in both directions."""
    cfg = _cfg(voc_root, tmp_path, 1, dict(target_ratio=0.84))
    cfg.model.data_preprocessor.size = (96, 96)
    runner = Runner.from_cfg(cfg)
    hook = _hook(runner)
    hook._before_train(runner)
    hook._setup(runner, (96, 96))
    target = hook.target_gmacs
    pools = _layers(runner.model)
    for ratios in ([(0.3, 0.35), (0.4, 0.3), (0.45, 0.5), (0.5, 0.4), (0.6, 0.5)],
                   [(0.7, 0.6), (0.55, 0.7), (0.6, 0.5), (0.5, 0.6), (0.6, 0.6)]):
        with torch.no_grad():
            for pool, r in zip(pools, ratios):
                pool.alpha.copy_(torch.tensor([1 / r[0], 1 / r[1]]))
        before = hook.current_gmacs()
        after = hook.controller.project()
        assert abs(before / target - 1) > 0.1  # the projection had work to do
        assert after == pytest.approx(hook.current_gmacs())
        assert 0.99 * target <= after <= target


def _ties_and_sizes(model, shape):
    """Per layer: ``in_size * r`` of both axes and the output size (a real forward)."""
    with torch.no_grad():
        model(torch.zeros(1, 3, *shape), mode='tensor')
    out = []
    for pool in _layers(model):
        r_h, r_w = pool.host_ratio
        (h_in, w_in), size = pool.last_input_size, pool.last_size
        out.append(((h_in * r_h, w_in * r_w), tuple(size)))
    return out


@pytest.mark.parametrize('target', [0.5, 0.6, 0.7, 0.84])
def test_lock_at_64_meets_the_budget_within_1_percent_off_ties(voc_root, tmp_path,
                                                               target):
    """At 64x64 the maps are small (stem 32x32 ... 2x2) and the integer sizes coarse."""
    model = Runner.from_cfg(_cfg(voc_root, tmp_path, 1, dict(target_ratio=target))).model
    hook, runner = _set_up(model, (64, 64), target_ratio=target)
    pools = _layers(model)
    for ratios in ([(0.6, 0.45), (0.55, 0.4), (0.45, 0.6), (0.5, 0.35), (0.7, 0.6)],
                   [(0.35, 0.3), (0.5, 0.5), (0.5, 0.5), (0.5, 0.5), (0.5, 0.5)]):
        with torch.no_grad():
            for pool, r in zip(pools, ratios):
                pool.alpha.copy_(torch.tensor([1 / r[0], 1 / r[1]]))
        hook.controller.locked, hook.controller.exceeded = None, True  # the budget binds
        del runner.lines[:]
        hook._lock(runner)
        budget = hook.target_gmacs
        final = hook.current_gmacs()
        assert final <= budget
        assert hook.profile.host_estimate(pools) <= budget
        # No ratio on a rounding tie: in_size * r at least 0.25 from any k + 0.5, i.e.
        # within 0.25 of the size it rounds to (the real forward's size).
        for products, size in _ties_and_sizes(model, (64, 64)):
            for product, n in zip(products, size):
                assert abs(product - n) <= 0.25, (products, size)
        projection = hook.controller.projection
        assert projection.below == pytest.approx(
            hook.profile.host_estimate(pools) / budget)
        assert 'ratios locked at iteration 1' in runner.log
        if final < 0.99 * budget:
            # Then the integer sizes allow nothing closer, and the log says so.
            assert 'not met within 1 %' in runner.log
            assert f'{projection.below:.4f}x' in runner.log
            assert projection.above is not None and projection.above > 1.0
            assert f'{projection.above:.4f}x' in runner.log


def test_the_log_says_how_close_integer_sizes_come_when_1_percent_is_impossible():
    """One layer on an 8x8 input, a budget of 0.8 x 16 cells: 12 cells is the best
    (test_budget.py checks the sizes); the hook's log warns with both ratios."""
    model = nn.Sequential(DynOPool(init_ratio=0.5), nn.Conv2d(3, 4, 3, padding=1))
    hook, runner = _set_up(model, (8, 8), target_ratio=0.8)
    hook.controller.exceeded = True
    hook._lock(runner)
    below, above = hook.controller.projection.below, hook.controller.projection.above
    assert below == pytest.approx(12 / 12.8)
    assert 'the budget is not met within 1 %' in runner.log
    assert f'{below:.4f}x' in runner.log and f'{above:.4f}x' in runner.log
    assert hook.current_gmacs() == pytest.approx(0.75 * hook.profile.total_gmacs,
                                                 rel=1e-6)
    # the lock iteration logs the locked model's values
    hub = runner.message_hub
    assert hub.get_scalar('train/gmacs').current() == hook.profile.host_estimate(
        _layers(model))
    assert hub.get_scalar('train/0/h').current() * hub.get_scalar(
        'train/0/w').current() == 12


# ------------------------------------------------------------------ load_from vs resume


class _StartHook(RecorderHook):
    """Records every layer's alpha at ``before_train`` (after the GMACs hook's)."""

    def before_train(self, runner) -> None:
        self.start = {n: m.alpha.detach().clone() for n, m in pool_items(runner.model)}


@pytest.mark.slow
def test_load_from_a_finished_budget_run_starts_a_new_budget_run(voc_root, tmp_path):
    first, first_hook, _ = _train(voc_root, tmp_path / 'first', 6,
                                  dict(target_ratio=0.7, lambda_lr=0.5))
    ckpt_path = osp.join(str(tmp_path / 'first'), 'iter_6.pth')
    ckpt = torch.load(ckpt_path, weights_only=False)
    state = ckpt['dynopool_gmacs_hook']
    assert state['locked'] is not None and state['lam'] > 0  # a finished, locked run
    # A new run from its weights with a tighter budget, `load_from` without resume.
    kwargs = dict(target_ratio=0.55, lambda_lr=0.5)
    cfg = _cfg(voc_root, tmp_path / 'second', 6, kwargs)
    cfg.load_from = ckpt_path
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
    fresh = BudgetController(hook._pools, hook.profile, **kwargs)
    fresh.step(runner.message_hub.get_scalar('train/gmacs').data[0][0])
    assert recorder.records[0]['lam'] == fresh.lam != state['lam']
    # ... the alphas are not locked: they move during training ...
    names = list(start.start)
    assert any(not torch.equal(recorder.records[0]['alpha'][n],
                               recorder.records[-2]['alpha'][n]) for n in names)
    assert 'loss_gmacs' in recorder.records[1]['losses']  # lambda > 0 after one step
    # ... and the new budget is enforced by a projection at the end.
    target = 0.55 * hook.profile.total_gmacs
    assert first_hook.current_gmacs() > 1.1 * target  # the loaded model was over it
    assert hook.locked is not None and hook.current_gmacs() <= target
    saved = torch.load(osp.join(str(tmp_path / 'second'), 'iter_6.pth'),
                       weights_only=False)
    assert saved['dynopool_gmacs_hook']['exceeded']
    for name, pool in resizing_layers(runner.model):
        assert torch.equal(saved['state_dict'][f'{name}.alpha'], pool.alpha.detach())
    assert 'load_from (not a resume): a new budget run' in _log_text(runner)


@pytest.mark.slow
def test_resume_from_a_locked_checkpoint_continues_locked(voc_root, tmp_path):
    kwargs = dict(target_ratio=0.7, lambda_lr=0.5, lock_after=0.5)
    _, straight_hook, straight = _train(voc_root, tmp_path / 'straight', 6, kwargs,
                                        checkpoint_interval=3)
    ckpt_path = osp.join(str(tmp_path / 'straight'), 'iter_3.pth')
    assert torch.load(ckpt_path, weights_only=False)['dynopool_gmacs_hook'][
        'locked'] is not None  # projected at iteration 3 of 6
    runner, hook, resumed = _train(voc_root, tmp_path / 'resumed', 6, kwargs,
                                   resume=True, load_from=ckpt_path)
    assert [r['iter'] for r in resumed] == [3, 4, 5]
    assert [r['lam'] for r in resumed] == [r['lam'] for r in straight[3:]]
    for mine, theirs in zip(resumed, straight[3:]):
        assert all(torch.equal(mine['alpha'][k], theirs['alpha'][k])
                   for k in theirs['alpha'])
        assert 'loss_gmacs' not in mine['losses']
    assert all(torch.equal(a, b) for a, b in zip(hook.locked, straight_hook.locked))
    assert hook.controller.exceeded == straight_hook.controller.exceeded
    assert 'load_from (not a resume)' not in _log_text(runner)


@pytest.mark.slow
def test_lock_iteration_logs_the_locked_model(voc_root, tmp_path):
    """The last logged GMACs, sizes and ratios are the saved (locked) model's, also
    when the logger does not log the last iteration (interval 2, 5 iterations)."""
    from mmseg_dynopool.analysis.plots import find_scalar_logs, load_scalar_logs
    cfg = _cfg(voc_root, tmp_path, 5, dict(target_ratio=0.7, lambda_lr=0.5))
    cfg.default_hooks.logger.interval = 2
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
    pools = resizing_layers(runner.model)
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


# ---------------------------------------------------- ShapeAdaptor and DiffStride

SHAPE = (64, 72)


def _baseline_model(kind, tmp_path):
    model = build_model_from_config(resizing_layer_cfg(kind, tmp_path))
    assert {type(m).__name__ for m in _layers(model)} == {kind}
    return model


def _set(model, values):
    """ShapeAdaptor: scales; DiffStride: strides (both axes)."""
    with torch.no_grad():
        for layer, v in zip(_layers(model), values):
            if isinstance(layer, ShapeAdaptor):
                layer.alpha.fill_(ShapeAdaptor.alpha_for_ratio(v))
            else:
                layer.stride.fill_(v)


@pytest.mark.parametrize('kind,moved', [('ShapeAdaptor', [0.7, 0.9, 0.6]),
                                        ('DiffStride', [1.5, 2.5, 3.0])])
def test_estimate_is_the_reports_cost_and_reaches_every_parameter(kind, moved,
                                                                  tmp_path):
    model = _baseline_model(kind, tmp_path)
    profile = profile_gmacs(model, SHAPE)
    layers = _layers(model)
    report = model_report(model, SHAPE)
    # Own cost of each layer by the one rule, included and owned by the layer itself.
    assert profile.pool_gmacs == pytest.approx([e['gmacs'] for e in report['layers']],
                                               rel=1e-12)
    assert profile.total_gmacs == pytest.approx(report['gmacs'], rel=1e-9)
    _set(model, moved)
    estimate = profile.estimate(layers)
    # The convolutions scale exactly with the output area; the layers' own cost (a
    # small share here) is scaled by the output area too, an approximation for these
    # two layers whose cost also depends on their input size.
    assert float(estimate) == pytest.approx(model_report(model, SHAPE)['gmacs'],
                                            rel=2e-3)
    assert float(estimate) != pytest.approx(profile.total_gmacs, rel=0.05)
    estimate.backward()
    for layer in layers:
        grad = ratio_parameter(layer).grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    reset_to_initial_ratios(model)
    # (float32 sizes: equal to the float64 profile up to rounding)
    assert float(profile.estimate(layers)) == pytest.approx(profile.total_gmacs,
                                                            rel=1e-6)


@pytest.mark.parametrize('kind', ['ShapeAdaptor', 'DiffStride'])
def test_fixed_lambda_adds_the_loss_and_logs(kind, tmp_path):
    model = _baseline_model(kind, tmp_path)
    _set(model, [0.8, 0.7, 0.9] if kind == 'ShapeAdaptor' else [1.8, 2.2, 2.6])
    hook, runner = _set_up(model, SHAPE, loss_weight=0.5)
    # The profile is taken at the initial ratios, whatever the model's current ones.
    reference = _baseline_model(kind, tmp_path)
    assert hook.profile.total_gmacs == pytest.approx(
        profile_gmacs(reference, SHAPE).total_gmacs, rel=1e-9)
    model.train()
    out = hook._add_loss(model, (torch.zeros(1, 3, *SHAPE), None, 'loss'), {}, {})
    assert out['loss_gmacs'].item() == pytest.approx(0.5 * hook.current_gmacs(),
                                                     rel=1e-6)
    out['loss_gmacs'].backward()
    for layer in _layers(model):
        assert ratio_parameter(layer).grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, *SHAPE), mode='tensor')
    hook.after_train_iter(runner, 0)
    name = hook.profile.pool_names[0]
    logged = runner.message_hub.get_scalar(f'train/{name}/r_h').current()
    assert logged == pytest.approx(_layers(model)[0].ratio[0].item())
    # The logged value is the host estimate (host sizes, summed in float64): the
    # float32 estimate's value up to its rounding.
    logged = runner.message_hub.get_scalar('train/gmacs').current()
    assert logged == hook.profile.host_estimate(hook._pools)
    assert logged == pytest.approx(hook.current_gmacs(), rel=1e-6)
    assert runner.message_hub.get_scalar('train/gmacs_lambda').current() == 0.5
    assert 'train/gmacs_to_target' not in runner.message_hub.log_scalars


@pytest.mark.parametrize('kind,target', [('DiffStride', 0.8), ('ShapeAdaptor', 1.3)])
def test_budget_projection_and_lock(kind, target, tmp_path):
    # ShapeAdaptor starts at its smallest scale (r1 = 0.5), so its budget is above the
    # initial cost and binds from below after an excess; DiffStride's is below it.
    model = _baseline_model(kind, tmp_path)
    hook, runner = _set_up(model, SHAPE, loss_weight=0.1, target_ratio=target)
    if target > 1:
        _set(model, [0.95, 0.95, 0.95])  # over the budget
    model.train()
    hook._add_loss(model, (torch.zeros(1, 3, *SHAPE), None, 'loss'), {}, {})
    assert hook._last_estimate > hook.target_gmacs
    hook.after_train_iter(runner, 0)   # dual step, then (last iteration) projection
    assert hook.controller.exceeded and hook.locked is not None
    final = hook.current_gmacs()
    assert final <= hook.target_gmacs * (1 + 1e-9)
    # From below, up to the size granularity at this tiny input: DiffStride's sizes are
    # odd (steps of 2 rows), ShapeAdaptor has one scale for both axes (measured: 0.95
    # and 0.96 of the target; DynOPool models get within 1 %, above).
    assert final >= 0.9 * hook.target_gmacs
    # No parameter on a rounding boundary: nudging any layer's ratio by 0.1 % either
    # way changes no size (the projection centres each one in its size's interval).
    sizes = hook.profile._host_sizes(hook._pools)
    for layer in _layers(model):
        param = ratio_parameter(layer).detach().clone()
        for nudge in (0.999, 1.001):
            layer.scale_ratio(param, torch.full((2, ), nudge, dtype=torch.float64))
            assert hook.profile._host_sizes(hook._pools) == sizes, (layer, nudge)
        with torch.no_grad():
            ratio_parameter(layer).copy_(param)
    # The locked parameters are held against later optimizer steps.
    locked = [v.clone() for v in hook.locked]
    with torch.no_grad():
        for layer in _layers(model):
            ratio_parameter(layer).add_(0.1)
    hook.after_train_iter(runner, 1)
    for value, layer in zip(locked, _layers(model)):
        assert torch.equal(ratio_parameter(layer).detach(), value)
    # ... and saved in checkpoints.
    ckpt = {}
    hook.before_save_checkpoint(runner, ckpt)
    assert all(torch.equal(a, b) for a, b in
               zip(ckpt['dynopool_gmacs_hook']['locked'], locked))
