"""DropClass (docs/dropclass.md): head behaviour, configs, Runner training, per-class
report and the extra inference cost."""
import glob
import json
import os.path as osp
import sys
import uuid

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.analysis import FlopAnalyzer
from mmengine.config import Config
from mmengine.logging import MessageHub

import mmseg_dynopool  # noqa: F401  (registers the modules)
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from mmengine.structures import PixelData

from mmseg_dynopool.analysis.per_class import (PerClassIoUMetric, build_rows,
                                               check_head_matches_checkpoint,
                                               class_pixel_frequency, format_table,
                                               plot_gain_vs_frequency, summarize_gains)
from mmseg_dynopool.datasets import write_synthetic_voc
from mmseg_dynopool.models.decode_heads import DropClassFCNHead

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CFG_DIR = osp.join(REPO, 'configs', 'dropclass')
CHANNELS = [4, 8, 16, 32]  # HRNet-like streams; C = 60
NUM_CLASSES = 5


# ------------------------------------------------------------------------- helpers
def make_head(type_='DropClassFCNHead', channels=CHANNELS, num_classes=NUM_CLASSES,
              **kwargs):
    """A head with mmseg's FCN-on-HRNet settings (plain BN for CPU)."""
    cfg = dict(type=type_, in_channels=channels, in_index=tuple(range(len(channels))),
               channels=sum(channels), input_transform='resize_concat', kernel_size=1,
               num_convs=1, concat_input=False, dropout_ratio=-1,
               num_classes=num_classes, norm_cfg=dict(type='BN', requires_grad=True),
               align_corners=False,
               loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False,
                                loss_weight=1.0, avg_non_ignore=True))
    cfg.update(kwargs)
    head = MODELS.build(cfg)
    head.init_weights()
    # A classifier with clearly positive and negative weights, so S = ReLU(W) matters.
    with torch.no_grad():
        head.conv_seg.weight.normal_(0, 0.5)
    return head


def make_inputs(batch=2, size=(8, 8), channels=CHANNELS, seed=0):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(batch, c, size[0] // 2 ** i, size[1] // 2 ** i, generator=g)
                 for i, c in enumerate(channels))


def make_samples(labels):
    """SegDataSamples from a (B, H, W) long tensor."""
    samples = []
    for lab in labels:
        s = SegDataSample()
        s.gt_sem_seg = PixelData(data=lab[None].clone())
        samples.append(s)
    return samples


def two_class_labels(batch=2, size=(16, 16)):
    """Left half class 1, right half class 2, a void column in the middle."""
    lab = torch.full((batch, *size), 1, dtype=torch.long)
    lab[:, :, size[1] // 2:] = 2
    lab[:, :, size[1] // 2] = 255
    return lab


@pytest.fixture
def hub():
    """A fresh current MessageHub (the one the head reads the progress from)."""
    return MessageHub.get_instance(f'dropclass-test-{uuid.uuid4().hex}')


def set_progress(hub, it, max_iters):
    hub.update_info('iter', it)
    hub.update_info('max_iters', max_iters)


def ce(logits, label):
    """Reference: torch's CE (mean over non-ignored) on logits upsampled to the label."""
    up = F.interpolate(logits, size=label.shape[-2:], mode='bilinear',
                       align_corners=False)
    return F.cross_entropy(up, label, ignore_index=255)


# ------------------------------------------------------------------------- schedule
def test_linear_schedule_reads_progress_and_drops_with_that_probability(hub):
    head = make_head()
    for it, max_iters in ((0, 100), (30, 100), (75, 100), (99, 100)):
        set_progress(hub, it, max_iters)
        assert head.drop_probability() == pytest.approx(it / max_iters)
    set_progress(hub, 30, 100)
    torch.manual_seed(0)
    draws = [head.sample_drop(head.drop_probability()) for _ in range(4000)]
    rate = np.mean([d for _, d in draws])
    assert abs(rate - 0.3) < 0.03
    # uniform over all K classes (present or not)
    counts = np.bincount([z for z, _ in draws], minlength=NUM_CLASSES)
    assert counts.min() > 4000 / NUM_CLASSES * 0.8
    set_progress(hub, 0, 100)
    assert not any(head.sample_drop(head.drop_probability())[1] for _ in range(500))
    # the loss reports the t it used
    set_progress(hub, 25, 100)
    out = head.loss(make_inputs(), make_samples(two_class_labels()), None)
    assert out['dc_t'].item() == pytest.approx(0.25)


def test_constant_schedule_ignores_progress(hub):
    head = make_head(drop_schedule='constant', drop_prob=0.7)
    for it in (0, 50, 99):
        set_progress(hub, it, 100)
        assert head.drop_probability() == 0.7
    torch.manual_seed(1)
    rate = np.mean([head.sample_drop(0.7)[1] for _ in range(4000)])
    assert abs(rate - 0.7) < 0.03
    with pytest.raises(ValueError):
        make_head(drop_schedule='constant')
    with pytest.raises(ValueError):
        make_head(drop_prob=0.5)  # linear schedule takes no drop_prob
    with pytest.raises(ValueError):
        make_head(drop_schedule='cosine')


def test_linear_schedule_without_runner_progress_raises(hub):
    with pytest.raises(RuntimeError, match='max_iters'):
        make_head().drop_probability()


def test_sampling_is_seeded_and_can_be_restricted_to_present_classes(hub):
    head = make_head()
    torch.manual_seed(123)
    a = [head.sample_drop(0.5) for _ in range(50)]
    torch.manual_seed(123)
    b = [head.sample_drop(0.5) for _ in range(50)]
    torch.manual_seed(124)
    c = [head.sample_drop(0.5) for _ in range(50)]
    assert a == b and a != c
    present = make_head(sample_present_only=True)
    labels = two_class_labels()[:, None]
    torch.manual_seed(0)
    zs = {present.sample_drop(1.0, labels)[0] for _ in range(200)}
    assert zs == {1, 2}
    # no labelled pixel -> all classes
    zs = {present.sample_drop(1.0, torch.full_like(labels, 255))[0] for _ in range(200)}
    assert zs == set(range(NUM_CLASSES))


# ------------------------------------------------------------------------- features
def test_drop_branch_matches_definition_and_importance_is_not_detached():
    head = make_head().train()
    x = make_inputs()
    keep = head.keep_mask(3)
    assert keep.tolist() == [1, 1, 1, 0, 1]
    w = head.conv_seg.weight.flatten(1)
    gate = head.suppression_gate(keep)
    expected = F.relu(w)[[0, 1, 2, 4]].mean(0)
    assert torch.allclose(gate, expected)
    assert gate.requires_grad
    plain, drop = head.forward_train_logits(x, keep)
    feats = head.convs(head._transform_inputs(x))  # A = ReLU(BN(conv1x1(X)))
    assert (feats >= 0).all()
    assert torch.allclose(plain, head.conv_seg(feats), atol=1e-6)
    a_drop = head.suppress_conv(feats * expected.view(1, -1, 1, 1))
    assert torch.allclose(drop, head.conv_seg(a_drop), atol=1e-6)
    # The drop loss reaches W through g as well as through the classifier: the
    # gradient differs from the one with S computed from a detached W.
    grad = torch.autograd.grad(drop.logsumexp(1).mean(), head.conv_seg.weight)[0]
    gate_det = F.relu(w.detach())[[0, 1, 2, 4]].mean(0)
    drop_det = head.conv_seg(head.suppress_conv(feats * gate_det.view(1, -1, 1, 1)))
    grad_det = torch.autograd.grad(drop_det.logsumexp(1).mean(),
                                   head.conv_seg.weight)[0]
    assert not torch.allclose(grad, grad_det)


# ------------------------------------------------------------------------- losses
def test_dropped_class_pixels_are_ignored_in_drop_branch_loss(hub):
    head = make_head(drop_schedule='constant', drop_prob=1.0, sample_present_only=True)
    x = make_inputs()
    labels = two_class_labels()
    torch.manual_seed(0)
    out = head.loss(x, make_samples(labels), None)
    z = int(out['dc_class'].item())
    assert z in (1, 2)
    plain, drop = head.forward_train_logits(x, head.keep_mask(z))
    ignored = labels.clone()
    ignored[labels == z] = 255
    expected = ce(drop, ignored)
    assert out['loss_ce_drop'].item() == pytest.approx(expected.item(), rel=1e-5)
    # it would differ if the dropped class' pixels counted
    assert abs(ce(drop, labels).item() - expected.item()) > 1e-2
    # t = 1: the plain branch has weight 1 - t = 0
    assert out['loss_ce'].item() == pytest.approx(0.0, abs=1e-7)


def test_loss_weights_follow_t_and_suppression_only_when_dropped(hub):
    head = make_head(suppress_loss_weight=10.0)
    x = make_inputs()
    labels = two_class_labels()
    set_progress(hub, 50, 100)  # t = 0.5
    seen = {True: False, False: False}
    for seed in range(40):
        torch.manual_seed(seed)
        out = head.loss(x, make_samples(labels), None)
        z = int(out['dc_class'].item())
        dropped = z >= 0
        seen[dropped] = True
        plain, drop = head.forward_train_logits(x, head.keep_mask(z if dropped else None))
        target = labels.clone()
        if dropped:
            target[labels == z] = 255
        assert out['loss_ce'].item() == pytest.approx(0.5 * ce(plain, labels).item(),
                                                      rel=1e-5)
        assert out['loss_ce_drop'].item() == pytest.approx(
            0.5 * ce(drop, target).item(), rel=1e-5)
        if dropped:
            sup = 10.0 * F.softmax(drop, dim=1)[:, z].mean()
            assert out['loss_suppress'].item() == pytest.approx(sup.item(), rel=1e-5)
            assert out['loss_suppress'].item() > 0
            assert out['loss_suppress'].requires_grad
        else:
            assert out['loss_suppress'].item() == 0.0
            assert not out['loss_suppress'].requires_grad
        # monitoring values must stay out of mmengine's loss sum
        assert all('loss' not in k for k in ('dc_t', 'dc_class', 'acc_seg',
                                             'acc_seg_drop'))
        assert {'loss_ce', 'loss_ce_drop', 'loss_suppress', 'dc_t',
                'dc_class'} <= set(out)
        if all(seen.values()):
            break
    assert all(seen.values()), 'expected both a drop and a no-drop iteration'


def test_total_loss_through_segmentor_parse_losses(hub):
    """mmengine sums exactly the three DropClass terms ('loss' in the key)."""
    head = make_head(drop_schedule='constant', drop_prob=1.0)
    torch.manual_seed(3)
    out = head.loss(make_inputs(), make_samples(two_class_labels()), None)
    from mmengine.model import BaseModel
    total, log_vars = BaseModel.parse_losses(None, out)
    expected = out['loss_ce'] + out['loss_ce_drop'] + out['loss_suppress']
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)
    assert 'dc_class' in log_vars and 'dc_t' in log_vars


# ------------------------------------------------------------------------- inference
def test_inference_output_shape_determinism_and_no_rng_use():
    head = make_head().eval()
    x = make_inputs(batch=3, size=(12, 20))
    state = torch.get_rng_state()
    y1, y2 = head(x), head(x)
    assert torch.equal(torch.get_rng_state(), state)
    assert y1.shape == (3, NUM_CLASSES, 12, 20)
    assert torch.equal(y1, y2)
    # the output is the drop branch with nothing dropped, not the plain logits
    feats = head._forward_feature(x)
    all_kept = head.suppress(feats, torch.ones(NUM_CLASSES))
    assert torch.allclose(y1, head.conv_seg(all_kept), atol=1e-6)
    assert not torch.allclose(y1, head.conv_seg(feats), atol=1e-3)


def test_segmentor_predict_is_deterministic():
    cfg = Config.fromfile(osp.join(CFG_DIR, 'fcn-dropclass_hr18tiny_1xb8-600it_'
                                   'synthvoc-96x96.py'))
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.eval()
    img = torch.rand(1, 3, 40, 56)
    with torch.no_grad():
        a = model.predict(img)[0]
        b = model.predict(img)[0]
    assert a.seg_logits.data.shape == (21, 40, 56)
    assert a.pred_sem_seg.data.shape == (1, 40, 56)
    assert torch.equal(a.seg_logits.data, b.seg_logits.data)


# ------------------------------------------------------------------------- cost
def _macs(module, inputs):
    analyzer = FlopAnalyzer(module, (inputs, ))
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    return analyzer.total(), analyzer.by_module()


def test_extra_inference_cost_is_one_1x1_conv_bn_relu():
    chans = [18, 36, 72, 144]  # HRNet-W18: C = 270
    c = sum(chans)
    h, w = 16, 32
    x = make_inputs(batch=1, size=(h, w), channels=chans)
    plain = make_head('FCNHead', channels=chans, num_classes=19).eval()
    drop = make_head(channels=chans, num_classes=19).eval()
    plain_macs, _ = _macs(plain, x)
    drop_macs, by_module = _macs(drop, x)
    extra = drop_macs - plain_macs
    conv = c * c * h * w
    assert by_module['suppress_conv.conv'] == conv
    assert extra == by_module['suppress_conv']
    # FlopAnalyzer counts an affine BN as 2 flops per element in eval mode.
    assert conv <= extra <= conv + 2 * c * h * w
    assert extra / conv - 1 < 0.01


# ------------------------------------------------------------------------- configs
def test_configs_inherit_mmseg_and_follow_the_recipes():
    files = sorted(glob.glob(osp.join(CFG_DIR, '*.py')))
    assert len(files) >= 5
    cfgs = {osp.basename(f): Config.fromfile(f) for f in files}
    for name, cfg in cfgs.items():
        assert cfg.custom_imports['imports'] == ['mmseg_dynopool'], name
        assert cfg.model.pretrained is None, name
        is_drop = 'dropclass' in name
        assert (cfg.model.decode_head.type == 'DropClassFCNHead') == is_drop, name
    base = cfgs['fcn_hr18s_4xb12-59k_cityscapes-512x1024.py']
    drop = cfgs['fcn-dropclass_hr18s_4xb12-59k_cityscapes-512x1024.py']
    for cfg in (base, drop):
        assert cfg.train_dataloader.batch_size == 12
        assert cfg.optim_wrapper.optimizer == dict(type='SGD', lr=0.004, momentum=0.9,
                                                   weight_decay=0.0005)
        assert cfg.param_scheduler[0].power == 0.9
        assert cfg.param_scheduler[0].eta_min == 0.0
        assert cfg.train_cfg.max_iters == 968 * (2975 // 48) == 59048
        assert cfg.param_scheduler[0].end == 59048
        assert cfg.model.backbone.extra.stage4.num_modules == 2  # W18-small
        assert sum(cfg.model.decode_head.in_channels) == 270
        assert cfg.model.decode_head.num_classes == 19
    # only the head differs
    drop_model = drop.model.to_dict()
    drop_model['decode_head']['type'] = 'FCNHead'
    assert drop_model == base.model.to_dict()
    voc = cfgs['fcn-dropclass_hr48_4xb4-40k_voc12aug-512x512.py']
    assert sum(voc.model.decode_head.in_channels) == 720
    assert voc.train_cfg.max_iters == 40000 and voc.train_dataloader.batch_size == 4
    combo = cfgs['fcn-dropclass_dynopool-s-hr48_4xb4-40k_voc12aug-512x512.py']
    assert combo.model.backbone.type == 'DynOPoolHRNet'
    assert '.alpha' in combo.optim_wrapper.paramwise_cfg.custom_keys
    assert [h.type for h in combo.custom_hooks] == ['DynOPoolGMACsHook']
    assert sum(combo.model.decode_head.in_channels) == 720
    # = DynOPool-S with the DropClass head, nothing else changed
    dyno = Config.fromfile(osp.join(REPO, 'configs', 'dynopool_hrnet',
                                    'fcn_dynopool-s-hr48_4xb4-40k_voc12aug-512x512.py'))
    combo_dict = combo.to_dict()
    combo_dict['model']['decode_head']['type'] = 'FCNHead'
    assert combo_dict == dyno.to_dict()


def test_real_configs_build_models_hooks_and_optimizers():
    """What mmseg's tools/train.py builds from them before it touches data."""
    from mmengine.model import revert_sync_batchnorm
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import HOOKS
    for name in ('fcn-dropclass_hr18s_4xb12-59k_cityscapes-512x1024.py',
                 'fcn-dropclass_dynopool-s-hr48_4xb4-40k_voc12aug-512x512.py'):
        cfg = Config.fromfile(osp.join(CFG_DIR, name))
        model = revert_sync_batchnorm(MODELS.build(cfg.model))
        assert type(model.decode_head).__name__ == 'DropClassFCNHead'
        hooks = [HOOKS.build(h) for h in cfg.get('custom_hooks', [])]
        optim = build_optim_wrapper(model, cfg.optim_wrapper)
        lrs = {g['lr'] for g in optim.optimizer.param_groups}
        assert max(lrs) == cfg.optim_wrapper.optimizer.lr
        if 'dynopool' in name:
            assert [type(h).__name__ for h in hooks] == ['DynOPoolGMACsHook']
            assert len(lrs) == 2  # alpha has its own learning rate


# ------------------------------------------------------------------------- report logic
def test_class_frequency_and_report_rows(tmp_path):
    labels = [np.array([[0, 0, 1], [255, 2, 7]]), np.array([[1, 1, 255]])]
    freq = class_pixel_frequency(labels, num_classes=3)
    assert freq.tolist() == pytest.approx([2 / 6, 3 / 6, 1 / 6])
    assert class_pixel_frequency([np.full((2, 2), 255)], 3).tolist() == [0, 0, 0]
    rows = build_rows(['a', 'b', 'c', 'd'], [0.6, 0.3, 0.08, 0.02],
                      {'a': 90.0, 'b': 70.0, 'c': 40.0, 'd': float('nan')},
                      [91.0, 69.0, 45.0, 10.0])
    assert [r.gain for r in rows[:3]] == pytest.approx([1.0, -1.0, 5.0])
    s = summarize_gains(rows)
    assert s['miou_baseline'] == pytest.approx(200 / 3)
    assert s['mean_gain'] == pytest.approx(5 / 3)
    assert s['mean_gain_rare_half'] == pytest.approx(5.0)   # c (the rarer of a, b, c)
    assert s['mean_gain_frequent_half'] == pytest.approx(1.0)  # a
    assert s['spearman_freq_gain'] == pytest.approx(-0.5)  # ranks (2,1,0) vs (1,0,2)
    table = format_table(rows)
    for name in 'abcd':
        assert f'\n{name} ' in table
    assert '+5.00' in table and '-1.00' in table
    png = plot_gain_vs_frequency(rows, str(tmp_path / 'sub' / 'gain.png'))
    with open(png, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    with pytest.raises(ValueError):
        build_rows(['a'], [0.1, 0.2], [1.0], [2.0])


def test_per_class_iou_metric_returns_each_class():
    metric = PerClassIoUMetric(iou_metrics=['mIoU'])
    metric.dataset_meta = dict(classes=('bg', 'cat', 'dog'))
    pred = torch.tensor([[0, 0, 1, 1]])
    gt = torch.tensor([[0, 1, 1, 255]])
    sample = dict(pred_sem_seg=dict(data=pred), gt_sem_seg=dict(data=gt))
    metric.process([], [sample])
    res = metric.compute_metrics(metric.results)
    assert res['IoU.bg'] == pytest.approx(50.0)
    assert res['IoU.cat'] == pytest.approx(50.0)
    assert np.isnan(res['IoU.dog'])
    assert res['mIoU'] == pytest.approx(50.0)


# ------------------------------------------------------------------------- Runner
def _unformatted(cfg):
    """The same config without yapf formatting of its text (seconds per Runner; and
    mmengine 0.10.7's Config.fromfile ignores format_python_code=False)."""
    return Config(cfg.to_dict(), filename=cfg.filename, format_python_code=False)


def _tiny_cfg(config_file, data_root, work_dir, iters=3):
    """The synthetic configs shrunk to a few CPU iterations: batch 2, crop 64 (config
    text left unformatted: yapf would cost seconds per Runner)."""
    cfg = _unformatted(Config.fromfile(config_file))
    crop = (64, 64)
    cfg.model.data_preprocessor.size = crop
    for loader in (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader):
        loader.dataset.data_root = data_root
        loader.num_workers = 0
        loader.persistent_workers = False
    cfg.train_dataloader.batch_size = 2
    cfg.train_dataloader.dataset.pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations'),
        dict(type='RandomResize', scale=(72, 72), ratio_range=(0.9, 1.1),
             keep_ratio=True),
        dict(type='RandomCrop', crop_size=crop),
        dict(type='RandomFlip', prob=0.5),
        dict(type='Pad', size=crop),
        dict(type='PackSegInputs')
    ]
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters, val_interval=iters)
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None  # tested by test.py
    cfg.param_scheduler = [dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0,
                                end=iters, by_epoch=False)]
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1,
                                    log_metric_by_epoch=False)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', by_epoch=False,
                                        interval=iters)
    cfg.work_dir = work_dir
    cfg.randomness = dict(seed=0)
    return cfg


def _train(cfg, name):
    from mmengine.runner import Runner
    cfg.experiment_name = f'{name}-{uuid.uuid4().hex}'
    cfg.visualizer.name = cfg.experiment_name
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner


@pytest.fixture(scope='module')
def synth_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('synthvoc'))
    write_synthetic_voc(root, num_train=4, num_val=2, size_range=(64, 80), seed=0)
    return root


def _run_mmseg_tool(tool, args):
    """Run mmseg's own tools/<tool>.py (as installed under mmseg/.mim/tools) in this
    process, as ``python tools/<tool>.py ARGS`` would (saves re-importing mmseg)."""
    import runpy

    import mmseg
    path = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools', f'{tool}.py')
    argv = sys.argv
    sys.argv = [path] + list(args)
    try:
        runpy.run_path(path, run_name='__main__')
    finally:
        sys.argv = argv


@pytest.fixture(scope='module')
def trained(synth_root, tmp_path_factory):
    """A 3-iteration baseline (mmengine Runner) and DropClass model (mmseg's own
    tools/train.py on a dumped config)."""
    work = tmp_path_factory.mktemp('dropclass-work')
    base_cfg = _tiny_cfg(osp.join(REPO, 'configs', 'synthetic',
                                  'fcn_hr18tiny_1xb8-600it_synthvoc-96x96.py'),
                         synth_root, str(work / 'base'))
    _train(base_cfg, 'base')
    drop_cfg = _tiny_cfg(osp.join(CFG_DIR, 'fcn-dropclass_hr18tiny_1xb8-600it_'
                                  'synthvoc-96x96.py'), synth_root, str(work / 'drop'))
    drop_cfg.experiment_name = f'tools-train-{uuid.uuid4().hex}'
    drop_cfg.visualizer.name = drop_cfg.experiment_name
    cfg_file = str(work / 'dropclass_tiny.py')
    drop_cfg.dump(cfg_file)
    _run_mmseg_tool('train', [cfg_file])
    scalars = sorted(glob.glob(osp.join(str(work / 'drop'), '*', 'vis_data',
                                        'scalars.json')))
    assert scalars, 'tools/train.py wrote no scalars.json'
    with open(scalars[-1]) as f:
        logs = [json.loads(line) for line in f if line.strip()]
    return dict(work=work, base_ckpt=osp.join(str(work / 'base'), 'iter_3.pth'),
                drop_ckpt=osp.join(str(work / 'drop'), 'iter_3.pth'),
                drop_cfg_file=cfg_file,
                drop_logs=[r for r in logs if 'decode.loss_ce_drop' in r])


@pytest.mark.slow
def test_runner_trains_dropclass_through_mmseg_tools(trained):
    assert osp.isfile(trained['base_ckpt']) and osp.isfile(trained['drop_ckpt'])
    state = torch.load(trained['drop_ckpt'], map_location='cpu',
                       weights_only=False)['state_dict']
    assert any(k.startswith('decode_head.suppress_conv.conv') for k in state)
    # logged scalars: t of iteration i (0-based) of 3 is i/3; losses are logged as
    # window means, so only their sum relation is checked here (per iteration: below).
    train_logs = trained['drop_logs']
    assert len(train_logs) == 3
    assert [r['decode.dc_t'] for r in train_logs] == pytest.approx([0, 1 / 3, 2 / 3])
    for r in train_logs:
        expected = (r['decode.loss_ce'] + r['decode.loss_ce_drop']
                    + r['decode.loss_suppress'])
        assert np.isfinite(r['loss'])
        assert r['loss'] == pytest.approx(expected, rel=1e-4)
    # mmseg's tools/test.py on the DropClass checkpoint
    test_dir = str(trained['work'] / 'test')
    name = f'tools-test-{uuid.uuid4().hex}'
    _run_mmseg_tool('test', [trained['drop_cfg_file'], trained['drop_ckpt'],
                             '--work-dir', test_dir, '--cfg-options',
                             f'experiment_name={name}', f'visualizer.name={name}'])
    logs = glob.glob(osp.join(test_dir, '*', '*.log'))
    assert logs and 'mIoU' in open(logs[0]).read()


@pytest.mark.slow
def test_seeded_runner_training_is_reproducible(trained, tmp_path):
    """The same config and seed in a fresh Runner redraws the same dropped classes and
    reproduces the losses of the tools/train.py run; per iteration, the suppression
    term is non-zero exactly when a class was dropped."""
    cfg = _unformatted(Config.fromfile(trained['drop_cfg_file']))
    cfg.work_dir = str(tmp_path)
    cfg.default_hooks.checkpoint = None
    runner = _train(cfg, 'repro')
    hub = runner.message_hub
    history = {key: hub.get_scalar(f'train/decode.{key}').data[0].tolist()
               for key in ('dc_class', 'dc_t', 'loss_ce', 'loss_suppress')}
    assert history['dc_t'] == pytest.approx([0.0, 1 / 3, 2 / 3])
    for z, sup in zip(history['dc_class'], history['loss_suppress']):
        assert (sup > 0) == (z >= 0)
    logged = trained['drop_logs']
    assert [r['decode.dc_class'] for r in logged] == history['dc_class']
    assert logged[0]['decode.loss_ce'] == pytest.approx(history['loss_ce'][0], rel=1e-5)


@pytest.mark.slow
def test_dynopool_plus_dropclass_trains(synth_root, tmp_path):
    cfg = _tiny_cfg(osp.join(CFG_DIR, 'fcn-dropclass_dynopool-hr18tiny_1xb8-600it_'
                             'synthvoc-96x96.py'), synth_root, str(tmp_path), iters=2)
    cfg.default_hooks.checkpoint = None
    runner = _train(cfg, 'dynodrop')
    model = runner.model
    assert type(model.backbone).__name__ == 'DynOPoolHRNet'
    assert type(model.decode_head).__name__ == 'DropClassFCNHead'
    hub = runner.message_hub
    for key in ('train/loss_gmacs', 'train/decode.loss_ce_drop',
                'train/decode.loss_suppress', 'train/decode.dc_t', 'train/gmacs'):
        assert np.isfinite(hub.get_scalar(key).current()), key


@pytest.mark.slow
def test_per_class_report_tool_end_to_end(trained, synth_root, capsys):
    sys.path.insert(0, osp.join(REPO, 'tools', 'analysis'))
    try:
        import per_class_report as tool
    finally:
        sys.path.pop(0)
    out_dir = str(trained['work'] / 'report')
    # CONFIG = the DropClass config; each checkpoint's own model comes from its meta.
    assert tool.main([trained['drop_cfg_file'], trained['base_ckpt'],
                      trained['drop_ckpt'], '--out-dir', out_dir]) == 0
    printed = capsys.readouterr().out
    assert 'IoU base' in printed and 'background' in printed
    with open(osp.join(out_dir, 'per_class_report.json')) as f:
        report = json.load(f)
    rows = report['rows']
    assert len(rows) == 21
    assert sum(r['frequency'] for r in rows) == pytest.approx(1.0)
    assert rows[0]['name'] == 'background' and rows[0]['frequency'] > 0.3
    bg = rows[0]
    assert bg['gain'] == pytest.approx(bg['iou_dropclass'] - bg['iou_baseline'])
    assert osp.getsize(osp.join(out_dir, 'gain_vs_frequency.png')) > 1000
    # evaluating the plain checkpoint with the DropClass model is refused
    drop_model = Config.fromfile(trained['drop_cfg_file']).model
    with pytest.raises(ValueError, match='DropClass'):
        check_head_matches_checkpoint(drop_model, trained['base_ckpt'])


def test_head_class_is_registered():
    assert MODELS.get('DropClassFCNHead') is DropClassFCNHead
