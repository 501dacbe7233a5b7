"""Training, evaluation and resume through mmengine's Runner with the GMACs hook."""
import copy
import os.path as osp

import pytest
import torch
from mmengine.runner import Runner

from mmseg_dynopool import resizing_layers
from mmseg_dynopool.analysis import model_report, profile_gmacs
from mmseg_dynopool.engine import DynOPoolGMACsHook

from mmseg_dynopool.layers import ratio_parameter

from ..conftest import REPO, SYNTH_DP_CFG, SYNTH_HUMAN_CFG, tiny_config

pytestmark = pytest.mark.slow


def _alphas(model):
    return {n: p.alpha.detach().clone() for n, p in resizing_layers(model)}


def _hook(runner) -> DynOPoolGMACsHook:
    return next(h for h in runner.hooks if isinstance(h, DynOPoolGMACsHook))


def test_train_moves_alpha_logs_gmacs_and_evaluates(voc_root, tmp_path):
    cfg = tiny_config(SYNTH_DP_CFG, voc_root, str(tmp_path), iters=4)
    runner = Runner.from_cfg(cfg)
    before = _alphas(runner.model)
    runner.train()
    after = _alphas(runner.model)
    assert any(not torch.equal(before[k], after[k]) for k in before)
    hub = runner.message_hub
    assert 'train/loss_gmacs' in hub.log_scalars
    assert hub.get_scalar('train/loss_gmacs').current() > 0
    assert 'train/gmacs' in hub.log_scalars
    assert 'train/backbone.dynopool_stem/r_h' in hub.log_scalars
    # The loss is summed into the total (mmengine sums keys containing 'loss').
    assert hub.get_scalar('train/loss').current() > hub.get_scalar(
        'train/decode.loss_ce').current()
    # The alpha param group got the configured lr multiplier and no weight decay.
    groups = runner.optim_wrapper.optimizer.param_groups
    alpha_ids = {id(p) for _, p in runner.model.named_parameters() if
                 _.endswith('.alpha')}
    for group in groups:
        if any(id(p) in alpha_ids for p in group['params']):
            assert group['weight_decay'] == 0
    metrics = runner.val_loop.run()
    assert 'mIoU' in metrics and 0 <= metrics['mIoU'] <= 100
    # Checkpoint written by the Runner holds the alphas.
    ckpt = torch.load(osp.join(str(tmp_path), 'iter_4.pth'), weights_only=False)
    assert 'backbone.dynopool_stem.alpha' in ckpt['state_dict']


def test_gmacs_loss_alone_shrinks_feature_maps(voc_root, tmp_path):
    cfg = tiny_config(SYNTH_DP_CFG, voc_root, str(tmp_path), iters=6)
    cfg.model.decode_head.loss_decode.loss_weight = 0.0  # only the GMACs loss remains
    cfg.custom_hooks = [dict(type='DynOPoolGMACsHook', loss_weight=50.0)]
    runner = Runner.from_cfg(cfg)
    runner.train()
    for name, pool in resizing_layers(runner.model):
        r_h, r_w = pool.ratio.tolist()
        assert r_h < 0.5 and r_w < 0.5, (name, r_h, r_w)
    hook = _hook(runner)
    assert hook.current_gmacs() < hook.profile.total_gmacs * 0.9


def test_hook_estimate_matches_the_report_after_sizes_move(voc_root, tmp_path):
    # The estimate includes the pools' own cost (the cost model's one rule), so it is
    # compared with the report's total, which counts them by the same rule.
    cfg = tiny_config(SYNTH_DP_CFG, voc_root, str(tmp_path), iters=2)
    runner = Runner.from_cfg(cfg)
    runner.train()
    hook = _hook(runner)
    model = runner.model
    with torch.no_grad():
        for (_, pool), r in zip(resizing_layers(model),
                                [(0.7, 0.55), (0.4, 0.6), (0.62, 0.35), (0.45, 0.5),
                                 (0.6, 0.3)]):
            pool.alpha.copy_(torch.tensor([1 / r[0], 1 / r[1]]))
    counted = model_report(model, hook.profile.input_shape)['gmacs']
    estimate = hook.current_gmacs()
    assert counted != pytest.approx(hook.profile.total_gmacs, rel=0.05)  # sizes moved
    assert estimate == pytest.approx(counted, rel=0.01)


def test_profile_is_taken_at_initial_ratios_even_after_training(voc_root, tmp_path):
    cfg = tiny_config(SYNTH_DP_CFG, voc_root, str(tmp_path), iters=2)
    model = Runner.from_cfg(cfg).model
    fresh = profile_gmacs(copy.deepcopy(model), (64, 64))
    with torch.no_grad():
        model.backbone.dynopool_stem.alpha.fill_(1.5)
    hook = DynOPoolGMACsHook()

    class _R:  # the parts of a Runner the hook uses for setup
        pass
    r = _R()
    r.model = model
    r.logger = Runner.from_cfg(tiny_config(SYNTH_HUMAN_CFG, voc_root,
                                        str(tmp_path / 'h'), iters=1)).logger
    hook.before_train(r)
    hook._setup(r, (64, 64))
    assert hook.profile.total_gmacs == pytest.approx(fresh.total_gmacs, rel=1e-6)
    assert hook.current_gmacs() > fresh.total_gmacs  # stem ratio went 0.5 -> 0.67


def test_hook_rejects_model_without_dynopool(voc_root, tmp_path):
    cfg = tiny_config(SYNTH_HUMAN_CFG, voc_root, str(tmp_path), iters=1)
    cfg.custom_hooks = [dict(type='DynOPoolGMACsHook', loss_weight=1.0)]
    runner = Runner.from_cfg(cfg)
    with pytest.raises(ValueError, match='no DynOPool'):
        runner.train()


def test_resume_restores_alphas_and_iteration(voc_root, tmp_path):
    first = Runner.from_cfg(tiny_config(SYNTH_DP_CFG, voc_root, str(tmp_path / 'a'),
                                     iters=2))
    first.train()
    saved = _alphas(first.model)
    ckpt = osp.join(str(tmp_path / 'a'), 'iter_2.pth')
    cfg = tiny_config(SYNTH_DP_CFG, voc_root, str(tmp_path / 'b'), iters=4)
    cfg.resume = True
    cfg.load_from = ckpt
    second = Runner.from_cfg(cfg)
    second.load_or_resume()
    assert second.iter == 2
    for name, alpha in _alphas(second.model).items():
        assert torch.equal(alpha, saved[name]), name
    second.train()
    assert second.iter == 4


@pytest.mark.parametrize('kind, layer', [('shapeadaptor', 'ShapeAdaptor'),
                                         ('diffstride', 'DiffStride')])
def test_baseline_layers_train_under_a_budget_through_the_runner(kind, layer, voc_root,
                                                                 tmp_path):
    """The side-by-side configs (docs/baselines.md) train with mmengine's Runner: the
    layers' parameters move, lambda and the GMACs are logged, the projection at the end
    puts the model within its absolute budget, it evaluates and the checkpoint holds
    the layers' parameters."""
    config = osp.join(REPO, 'configs', 'synthetic',
                      f'fcn_{kind}-s-hr18tiny_1xb8-600it_synthvoc-96x96.py')
    cfg = tiny_config(config, voc_root, str(tmp_path), iters=4)
    runner = Runner.from_cfg(cfg)
    # 0.8 x the layers' own initial cost (at 64x64 DiffStride cannot reach 0.8 x the
    # human cost: its maps never shrink below 9x9 with R = 4)
    target = 0.8 * profile_gmacs(copy.deepcopy(runner.model), (64, 64)).total_gmacs
    cfg.custom_hooks = [dict(type='DynOPoolGMACsHook', target_gmacs=target,
                             lambda_lr=0.5)]
    runner = Runner.from_cfg(cfg)
    layers = resizing_layers(runner.model)
    assert len(layers) == 5 and all(type(m).__name__ == layer for _, m in layers)
    before = [ratio_parameter(m).detach().clone() for _, m in layers]
    runner.train()
    after = [ratio_parameter(m).detach().clone() for _, m in layers]
    assert any(not torch.equal(a, b) for a, b in zip(before, after))
    hook = _hook(runner)
    assert hook.current_gmacs() <= target * (1 + 1e-6)
    assert model_report(runner.model, (64, 64))['gmacs'] == pytest.approx(
        hook.current_gmacs(), rel=0.02)
    hub = runner.message_hub
    assert len(hub.get_scalar('train/gmacs_lambda').data[0]) == 4
    assert 'train/gmacs' in hub.log_scalars
    metrics = runner.val_loop.run()
    assert 0 <= metrics['mIoU'] <= 100
    ckpt = torch.load(osp.join(str(tmp_path), 'iter_4.pth'), weights_only=False)
    param = 'alpha' if layer == 'ShapeAdaptor' else 'stride'
    for (name, _), value in zip(layers, after):
        assert torch.equal(ckpt['state_dict'][f'{name}.{param}'], value)


def test_unreachable_budget_is_reported(voc_root, tmp_path):
    config = osp.join(REPO, 'configs', 'synthetic',
                      'fcn_diffstride-s-hr18tiny_1xb8-600it_synthvoc-96x96.py')
    cfg = tiny_config(config, voc_root, str(tmp_path), iters=2)
    cfg.custom_hooks = [dict(type='DynOPoolGMACsHook', target_gmacs=1e-4)]
    runner = Runner.from_cfg(cfg)
    runner.train()
    hook = _hook(runner)
    assert hook.current_gmacs() > 1e-4 and hook.locked is not None
    with open(runner.logger.log_file) as f:
        assert 'budget of 0.0001 GMACs is not reachable' in f.read()
