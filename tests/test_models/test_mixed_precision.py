"""A DynOPool segmentor under mixed precision (docs/reliability.md, section 3): the tiny
DynOPool HRNet trains under mmengine's CPU bf16 autocast with the GMACs loss without a
NaN, and mmengine's ``AmpOptimWrapper`` (``--amp``) refuses a CPU-only machine up front.
The layer alone under autocast: tests/test_layers/test_dynopool_mixed_precision.py."""
import copy

import pytest
import torch
from mmengine.structures import PixelData
from mmseg.structures import SegDataSample

from mmseg_dynopool import resizing_layers
from mmseg_dynopool.models.cost import profile_gmacs, reset_to_initial_ratios

from ..helpers import SYNTH_DP_CFG, build_segmentor, tiny_config

pytestmark = pytest.mark.usefixtures('one_thread')


def _fake_batch(n: int, size: int, num_classes: int, seed: int):
    """Normalised images and SegDataSamples with random blob labels."""
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randn(n, 3, size, size, generator=g)
    samples = []
    for i in range(n):
        labels = torch.randint(0, num_classes, (1, size // 8, size // 8), generator=g)
        labels = labels.repeat_interleave(8, 1).repeat_interleave(8, 2)
        inputs[i] += labels.float() / num_classes  # learnable signal
        sample = SegDataSample(metainfo=dict(img_shape=(size, size),
                                             ori_shape=(size, size),
                                             pad_shape=(size, size)))
        sample.gt_sem_seg = PixelData(data=labels)
        samples.append(sample)
    return inputs, samples


@pytest.mark.slow
def test_hrnet_trains_under_bf16_autocast(voc_root, tmp_path):
    """The tiny DynOPool HRNet trains 4 iterations under mmengine's CPU bf16 autocast
    (the context AmpOptimWrapper would use) with the GMACs loss: no NaN anywhere."""
    from mmengine.runner.amp import autocast
    cfg = tiny_config(SYNTH_DP_CFG, voc_root, str(tmp_path))
    model = build_segmentor(cfg).train()
    pools = [m for _, m in resizing_layers(model)]
    reference = copy.deepcopy(model)
    reset_to_initial_ratios(reference)
    profile = profile_gmacs(reference, (64, 64))
    del reference
    conv_dtypes = []
    model.backbone.conv1.register_forward_hook(
        lambda m, a, o: conv_dtypes.append(o.dtype))
    alpha_ids = {id(p.alpha) for p in pools}
    optimizer = torch.optim.SGD([
        dict(params=[p for p in model.parameters() if id(p) not in alpha_ids]),
        dict(params=[p.alpha for p in pools], weight_decay=0.0)
    ], lr=0.05, momentum=0.9, weight_decay=5e-4)
    start = torch.stack([p.alpha.detach().clone() for p in pools])
    for it in range(4):
        inputs, samples = _fake_batch(2, 64, 21, seed=it)
        optimizer.zero_grad()
        with autocast(device_type='cpu', dtype=torch.bfloat16):
            losses = model(inputs, samples, mode='loss')
            losses['loss_gmacs'] = 0.5 * profile.estimate(pools)
        assert losses['loss_gmacs'].dtype == torch.float32
        total = sum(v for k, v in losses.items() if 'loss' in k)
        assert torch.isfinite(total), (it, {k: float(v) for k, v in losses.items()})
        total.backward()
        for p in pools:
            assert p.alpha.grad is not None and torch.isfinite(p.alpha.grad).all()
        optimizer.step()
        for p in pools:
            assert p.alpha.dtype == torch.float32 and torch.isfinite(p.alpha).all()
            assert p.last_size is not None and min(p.last_size) >= 2
    assert conv_dtypes and all(d == torch.bfloat16 for d in conv_dtypes)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    moved = torch.stack([p.alpha.detach() for p in pools]) - start
    assert float(moved.abs().max()) > 1e-4


def test_amp_optim_wrapper_refuses_cpu_clearly():
    """What mmseg's ``--amp`` builds (AmpOptimWrapper, loss_scale='dynamic'): on a
    machine without GPU it fails at once, saying AMP needs a GPU (not a NaN later)."""
    if torch.cuda.is_available():
        pytest.skip('a GPU is present: AmpOptimWrapper is supported')
    from mmengine.optim import build_optim_wrapper
    model = torch.nn.Conv2d(3, 3, 3)
    with pytest.raises(AssertionError, match='only available training on gpu'):
        build_optim_wrapper(model, dict(type='AmpOptimWrapper', loss_scale='dynamic',
                                        optimizer=dict(type='SGD', lr=0.01)))
