"""Toy datasets of thesis chapter 3: CIFAR-stretch-V, CIFAR-tile, CIFAR-large."""
import os.path as osp

import cv2
import numpy as np
import pytest
from mmengine.config import Config
from mmengine.dataset import Compose

import mmseg_dynopool  # noqa: F401  (registers the transforms)
from mmpretrain.registry import TRANSFORMS
from mmseg_dynopool.datasets import CIFARLarge, CIFARStretchV, CIFARTile

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CFG_DIR = osp.join(REPO, 'configs',
                   'dynopool_cls')


def coded_image(h: int = 32, w: int = 32) -> np.ndarray:
    """Channel 0 encodes the row (8 * r), channel 1 the column (8 * c), channel 2 noise."""
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = (np.arange(h) * 8)[:, None]
    img[..., 1] = (np.arange(w) * 8)[None, :]
    img[..., 2] = np.random.RandomState(1).randint(0, 256, (h, w))
    return img


def block_mean(img: np.ndarray, k: int) -> np.ndarray:
    h, w, c = img.shape
    return img.reshape(h // k, k, w // k, k, c).astype(np.float64).mean(axis=(1, 3))


def test_registered_in_mmpretrain():
    for name, cls in (('CIFARStretchV', CIFARStretchV), ('CIFARTile', CIFARTile),
                      ('CIFARLarge', CIFARLarge)):
        assert TRANSFORMS.get(name) is cls


def test_stretch_v_is_a_vertical_stretch_and_crop():
    img = coded_image()
    out = CIFARStretchV(interpolation='nearest', seed=0)(dict(img=img.copy()))['img']
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    # Horizontally untouched: full width, every column in place.
    assert np.array_equal(out[..., 1], img[:32, :, 1])
    # Vertically stretched x2: 16 consecutive source rows, each shown twice.
    rows = out[:, 0, 0].astype(int) // 8
    assert len(set(rows.tolist())) in (16, 17)
    assert np.all(np.diff(rows) >= 0) and rows[-1] - rows[0] <= 16
    values, counts = np.unique(rows, return_counts=True)
    assert np.all(counts[1:-1] == 2)
    # Each output row is one source row (all three channels).
    for r_out, r_src in enumerate(rows):
        assert np.array_equal(out[r_out], img[r_src])


def test_stretch_v_bilinear_keeps_columns_and_interpolates_rows():
    img = coded_image()
    out = CIFARStretchV(seed=3)(dict(img=img.copy()))['img']
    assert out.shape == (32, 32, 3)
    assert np.array_equal(out[..., 1], img[:32, :, 1])
    row_code = out[:, 0, 0].astype(int)
    steps = np.diff(row_code)
    # Half-pixel steps of a x2 bilinear stretch (8 per source row -> ~4 per output row).
    assert np.all((steps >= 3) & (steps <= 5)), steps


def test_stretch_v_randomness_is_seeded():
    img = coded_image()

    def tops(transform, n=12):
        return [int(transform(dict(img=img.copy()))['img'][0, 0, 0]) for _ in range(n)]

    a, b = tops(CIFARStretchV(seed=7)), tops(CIFARStretchV(seed=7))
    assert a == b and len(set(a)) > 3  # reproducible, yet random offsets
    assert tops(CIFARStretchV(seed=8)) != a
    # Without a seed it draws from np.random, which mmengine seeds.
    np.random.seed(5)
    c = tops(CIFARStretchV())
    np.random.seed(5)
    assert tops(CIFARStretchV()) == c
    # Evaluation: centred crop (offset 16 of the 64-row stretch), always the same.
    center = CIFARStretchV(random_crop=False, interpolation='nearest')
    out = center(dict(img=img.copy()))['img']
    assert out[0, 0, 0] // 8 == 8 and out[-1, 0, 0] // 8 == 23


def test_tile_repeats_the_half_size_image():
    img = coded_image()
    results = CIFARTile()(dict(img=img.copy(), img_shape=(32, 32)))
    out = results['img']
    assert out.shape == (64, 64, 3) and results['img_shape'] == (64, 64)
    tile = out[:16, :16]
    for i in range(4):
        for j in range(4):
            assert np.array_equal(out[16 * i:16 * (i + 1), 16 * j:16 * (j + 1)], tile)
    # The tile is the image downsampled in half (area: mean of each 2x2 block).
    assert np.abs(tile.astype(float) - block_mean(img, 2)).max() <= 1
    assert not np.array_equal(out[:16, :16], out[:16, 8:24])  # not a constant image


def test_large_enlarges_the_same_half_size_image():
    img = coded_image()
    out = CIFARLarge()(dict(img=img.copy()))['img']
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    small = block_mean(img, 2)
    # Exactly: area-downsample to 16x16, then bilinear enlargement to 64x64.
    reference = cv2.resize(cv2.resize(img, (16, 16), interpolation=cv2.INTER_AREA),
                           (64, 64), interpolation=cv2.INTER_LINEAR)
    assert np.array_equal(out, reference)
    # On the linear row/column codes the enlargement is smooth: averaging 4x4 blocks of
    # the output gives the 16x16 image back.
    assert np.abs(block_mean(out, 4) - small)[..., :2].max() <= 2
    # Row and column codes grow monotonically across the whole canvas (one image, not
    # tiles), unlike CIFAR-tile.
    assert np.all(np.diff(out[:, 32, 0].astype(int)) >= 0)
    assert np.all(np.diff(out[32, :, 1].astype(int)) >= 0)
    tiled = CIFARTile()(dict(img=img.copy()))['img']
    assert np.any(np.diff(tiled[:, 32, 0].astype(int)) < 0)
    # Same content as a tile of CIFAR-tile.
    assert np.abs(block_mean(out, 4) - tiled[:16, :16])[..., :2].max() <= 2



def test_arguments_are_validated():
    with pytest.raises(ValueError):
        CIFARTile(size=0)
    with pytest.raises(ValueError):
        CIFARLarge(up_interpolation='cubicish')
    with pytest.raises(ValueError):
        CIFARStretchV(scale=-1)
    with pytest.raises(ValueError, match='smaller than the crop'):
        CIFARStretchV(crop_size=40)(dict(img=coded_image()))
    with pytest.raises(TypeError):
        CIFARTile()(dict(img=[[1, 2], [3, 4]]))


@pytest.mark.parametrize('toy,size', [('stretchv', 32), ('tile', 64), ('large', 64)])
def test_toy_configs_build_their_pipelines(toy, size):
    for prefix in ('vgg16bn-1fc_1xb128_', 'dynopool-s_vgg16bn-1fc_1xb128-250e_'):
        cfg = Config.fromfile(osp.join(CFG_DIR, f'{prefix}cifar100-{toy}.py'))
        for pipeline in (cfg.train_dataloader.dataset.pipeline,
                         cfg.test_dataloader.dataset.pipeline):
            # mmpretrain's CIFAR100 dataset hands uint8 HxWx3 arrays to the pipeline.
            transforms = Compose([TRANSFORMS.build(t) for t in pipeline])
            packed = transforms(dict(img=coded_image(), gt_label=3))
            assert tuple(packed['inputs'].shape) == (3, size, size)
