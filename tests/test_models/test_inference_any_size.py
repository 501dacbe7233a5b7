"""A DynOPool segmentor at any input size (docs/reliability.md, section 5): mmseg's
``whole`` and ``slide`` test modes on odd, non-square and large images give logits of
the input's size, and every backbone call (each crop in slide mode) has the feature-map
sizes of Eq. 4.1 chained over the five levels."""
from typing import List, Tuple

import pytest
import torch
from mmengine.config import ConfigDict
from mmseg.structures import SegDataSample

from ..helpers import SYNTH_DP_CFG, build_segmentor, round_half_up, tiny_config

pytestmark = pytest.mark.usefixtures('one_thread')
LEVELS = ('stem', 'stream1', 'stream2', 'stream3', 'stream4')


def _level_sizes(h: int, w: int, ratio: float = 0.5) -> List[Tuple[int, int]]:
    """Expected (h, w) after each of the five chained pools (Eq. 4.1, min_size 1.5)."""
    sizes = []
    for _ in LEVELS:
        h = round_half_up(max(h * ratio, 1.5))
        w = round_half_up(max(w * ratio, 1.5))
        sizes.append((h, w))
    return sizes


@pytest.fixture(scope='module')
def tiny_segmentor(voc_root, tmp_path_factory) -> torch.nn.Module:
    cfg = tiny_config(SYNTH_DP_CFG, voc_root, str(tmp_path_factory.mktemp('seg')))
    return build_segmentor(cfg).eval()


def _predict(model, h: int, w: int, test_cfg: dict, seed: int = 0):
    """Run mmseg's test_step on one random uint8 image; record backbone I/O sizes."""
    model.test_cfg = ConfigDict(test_cfg)
    g = torch.Generator().manual_seed(seed)
    img = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g)
    meta = dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w))
    calls = []
    handle = model.backbone.register_forward_hook(
        lambda m, a, o: calls.append((tuple(a[0].shape[2:]),
                                      [tuple(t.shape[2:]) for t in o])))
    try:
        with torch.no_grad():
            out = model.test_step(dict(inputs=[img],
                                       data_samples=[SegDataSample(metainfo=meta)]))
    finally:
        handle.remove()
    return out[0], calls


SLIDE_SMALL = dict(mode='slide', crop_size=(48, 48), stride=(31, 31))
SLIDE_LARGE = dict(mode='slide', crop_size=(160, 160), stride=(117, 117))


@pytest.mark.slow
@pytest.mark.parametrize('h,w', [(33, 33), (97, 61), (61, 97), (700, 1000)])
@pytest.mark.parametrize('mode', ['whole', 'slide'])
def test_inference_any_size(tiny_segmentor, h, w, mode):
    test_cfg = dict(mode='whole') if mode == 'whole' else (
        SLIDE_LARGE if max(h, w) > 200 else SLIDE_SMALL)
    result, calls = _predict(tiny_segmentor, h, w, test_cfg)
    assert tuple(result.seg_logits.data.shape) == (21, h, w)
    assert tuple(result.pred_sem_seg.data.shape) == (1, h, w)
    assert torch.isfinite(result.seg_logits.data).all()
    # mmseg resizes the logits to the input size at the end, which would hide wrong
    # internal sizes: check every backbone call (each crop in slide mode) directly.
    if mode == 'whole':
        assert [c[0] for c in calls] == [(h, w)]
    else:
        ch, cw = test_cfg['crop_size']
        sh, sw = test_cfg['stride']
        grid = (max(h - ch + sh - 1, 0) // sh + 1) * (max(w - cw + sw - 1, 0) // sw + 1)
        assert len(calls) == grid
        assert all(c[0] == (min(h, ch), min(w, cw)) for c in calls)
    for in_size, streams in calls:
        assert streams == _level_sizes(*in_size)[1:], in_size


@pytest.mark.slow
def test_slide_equals_whole_when_image_fits_one_crop(tiny_segmentor):
    whole, _ = _predict(tiny_segmentor, 33, 45, dict(mode='whole'), seed=3)
    slide, calls = _predict(tiny_segmentor, 33, 45, SLIDE_SMALL, seed=3)
    assert len(calls) == 1
    assert torch.allclose(whole.seg_logits.data, slide.seg_logits.data, atol=1e-5)
