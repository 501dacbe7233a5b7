"""The DropClass head (mmseg_dynopool/dropclass/head.py, docs/dropclass.md): schedule,
sampling, the drop branch, the three losses, inference, the extra inference cost and
its registration."""
import importlib
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
from mmengine.structures import PixelData

import mmseg_dynopool  # noqa: F401  (registers the modules)
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample

from mmseg_dynopool.dropclass import DropClassFCNHead

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
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


def test_head_class_is_registered():
    assert MODELS.get('DropClassFCNHead') is DropClassFCNHead


def test_old_module_path_still_imports_with_a_deprecation_warning():
    """``mmseg_dynopool.models.decode_heads.dropclass_head`` is a shim over the new
    home: same class objects, a DeprecationWarning on import."""
    name = 'mmseg_dynopool.models.decode_heads.dropclass_head'
    sys.modules.pop(name, None)
    with pytest.warns(DeprecationWarning, match='mmseg_dynopool.dropclass'):
        old = importlib.import_module(name)
    assert old.DropClassFCNHead is DropClassFCNHead
    from mmseg_dynopool.dropclass import DROP_SCHEDULES, DropClassMixin
    assert old.DropClassMixin is DropClassMixin and old.DROP_SCHEDULES is DROP_SCHEDULES
    package = importlib.import_module('mmseg_dynopool.models.decode_heads')
    with pytest.warns(DeprecationWarning, match='moved to mmseg_dynopool.dropclass'):
        assert package.DropClassFCNHead is DropClassFCNHead
