"""The built-in data's second style, ``'blobs'`` (issue 23's second data set)."""
import numpy as np
import pytest
from PIL import Image

from mmseg_dynopool.datasets import write_synthetic_voc
from mmseg_dynopool.datasets.synthetic_voc import NUM_CLASSES, make_sample


def test_default_style_is_the_shapes_data():
    a, b = np.random.RandomState(3), np.random.RandomState(3)
    for _ in range(3):
        img_a, lbl_a = make_sample(a, (40, 56))
        img_b, lbl_b = make_sample(b, (40, 56), 'shapes')
        assert np.array_equal(img_a, img_b) and np.array_equal(lbl_a, lbl_b)


def test_blobs_differ_from_shapes_and_are_valid_labels():
    img_s, lbl_s = make_sample(np.random.RandomState(0), (64, 80), 'shapes')
    img_b, lbl_b = make_sample(np.random.RandomState(0), (64, 80), 'blobs')
    assert img_b.shape == (64, 80, 3) and img_b.dtype == np.uint8
    assert lbl_b.shape == (64, 80)
    assert not np.array_equal(lbl_s, lbl_b)
    values = set(np.unique(lbl_b).tolist())
    assert values <= set(range(NUM_CLASSES)) | {255}
    assert 255 in values and len(values - {0, 255}) >= 1  # outlines and an object


def test_blob_objects_have_no_preferred_axis():
    """Extent of every object along H and along W, over many samples: equal on average
    (the 'shapes' style has a horizontal bar class; this one must not)."""
    rng = np.random.RandomState(0)
    heights, widths = [], []
    for _ in range(60):
        _, label = make_sample(rng, (96, 96), 'blobs')
        for cls in set(np.unique(label).tolist()) - {0, 255}:
            ys, xs = np.nonzero(label == cls)
            heights.append(ys.max() - ys.min() + 1)
            widths.append(xs.max() - xs.min() + 1)
    assert len(heights) > 60
    assert np.mean(widths) / np.mean(heights) == pytest.approx(1.0, abs=0.05)


def test_write_blobs_dataset_and_reject_unknown_style(tmp_path):
    root = tmp_path / 'VOC2012'
    splits = write_synthetic_voc(str(root), num_train=2, num_val=1, size_range=(32, 40),
                                 style='blobs')
    label = np.array(Image.open(root / 'SegmentationClass' / f"{splits['val'][0]}.png"))
    assert label.ndim == 2 and label.max() <= 255
    with pytest.raises(ValueError, match=r"style must be one of \('shapes', 'blobs'\)"):
        write_synthetic_voc(str(tmp_path / 'other'), style='stripes')
