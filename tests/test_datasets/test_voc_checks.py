"""A label map whose size differs from its image is reported with its file name: by
``CheckedPascalVOCDataset`` (when built, and for every sample it loads - at test time
too, where mmseg's IoU metric would raise an IndexError naming no file) and by the
synthetic VOC writer; a missing data root is reported with its path."""
import os.path as osp
import re

import numpy as np
import pytest
from mmengine.runner import Runner
from PIL import Image

import mmseg_dynopool  # noqa: F401  (registers the dataset)
from mmseg_dynopool.datasets import check_label_size, synthetic_voc, write_synthetic_voc
from mmseg_dynopool.datasets.synthetic_voc import image_size

from ..conftest import SYNTH_DP_CFG, tiny_config


def _dataset_cfg(root: str, split: str, pipeline=()) -> dict:
    return dict(type='CheckedPascalVOCDataset', data_root=root,
                data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClass'),
                ann_file=f'ImageSets/Segmentation/{split}.txt', pipeline=list(pipeline))


def _shrink_label(root: str, sample_id: str) -> str:
    """Overwrite a label PNG with one 3 px smaller per side; return its path."""
    path = osp.join(root, 'SegmentationClass', sample_id + '.png')
    label = Image.open(path)
    label.crop((0, 0, label.width - 3, label.height - 3)).save(path)
    return path


@pytest.fixture
def small_voc(tmp_path):
    root = str(tmp_path / 'VOC2012')
    splits = write_synthetic_voc(root, num_train=2, num_val=24, size_range=(20, 28),
                                 seed=1)
    return root, splits


def test_wrong_label_size_fails_when_the_dataset_is_built(small_voc):
    from mmseg.registry import DATASETS
    root, splits = small_voc
    bad = _shrink_label(root, splits['val'][0])
    with pytest.raises(ValueError, match=re.escape(bad)) as info:
        DATASETS.build(_dataset_cfg(root, 'val'))
    assert 'its image' in str(info.value)


def test_wrong_label_size_fails_when_the_sample_is_loaded(small_voc):
    """Beyond the samples checked up front (20), the check runs per sample."""
    from mmseg.registry import DATASETS
    root, splits = small_voc
    dataset = DATASETS.build(_dataset_cfg(root, 'val'))
    bad = _shrink_label(root, splits['val'][22])
    dataset[21]  # a good sample still loads
    with pytest.raises(ValueError, match=re.escape(bad)):
        dataset[22]


@pytest.mark.slow
def test_wrong_label_size_at_test_time_names_the_file(voc_root, tmp_path):
    """Runner.test (mmseg's tools/test.py): the error names the label, it is not the IoU
    metric's 'The shape of the mask ... does not match' IndexError."""
    import shutil
    root = str(tmp_path / 'VOC2012')
    shutil.copytree(voc_root, root)
    with open(osp.join(root, 'ImageSets', 'Segmentation', 'val.txt')) as f:
        last = f.read().split()[-1]
    cfg = tiny_config(SYNTH_DP_CFG, root, str(tmp_path / 'work'))
    runner = Runner.from_cfg(cfg)  # the dataset is built lazily, after the shrink
    bad = _shrink_label(root, last)
    with pytest.raises(ValueError, match=re.escape(bad)):
        runner.test()


def test_writer_refuses_a_label_of_another_size(tmp_path, monkeypatch):
    real = synthetic_voc.make_sample

    def wrong_size(rng, size, style='shapes'):
        image, label = real(rng, size, style)
        return image, label[:-2]

    monkeypatch.setattr(synthetic_voc, 'make_sample', wrong_size)
    root = str(tmp_path / 'VOC2012')
    with pytest.raises(ValueError, match=re.escape(
            osp.join(root, 'SegmentationClass', 'synth_train_00000.png'))):
        write_synthetic_voc(root, num_train=1, num_val=1, size_range=(20, 24))


def test_exif_rotated_jpeg_is_measured_as_mmcv_decodes_it(tmp_path):
    """cv2 (mmcv's default image decoder) applies the EXIF orientation; a label that
    matches the decoded image must pass, one matching the raw pixel grid must not."""
    from mmcv.transforms import LoadImageFromFile
    img_path = str(tmp_path / 'rotated.jpg')
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(img_path, exif=exif)
    decoded = LoadImageFromFile()(dict(img_path=img_path))['img'].shape[:2]
    assert image_size(img_path) == decoded == (30, 20)
    good, raw = str(tmp_path / 'good.png'), str(tmp_path / 'raw.png')
    Image.fromarray(np.zeros(decoded, np.uint8)).save(good)
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(raw)
    check_label_size(img_path, good)
    with pytest.raises(ValueError, match=re.escape(raw)):
        check_label_size(img_path, raw)


def test_missing_dataset_root_names_the_path(tmp_path):
    from mmseg.registry import DATASETS
    missing = str(tmp_path / 'no' / 'such' / 'VOC2012')
    with pytest.raises(FileNotFoundError, match=re.escape(missing)):
        DATASETS.build(dict(type='CheckedPascalVOCDataset', data_root=missing,
                            data_prefix=dict(img_path='JPEGImages',
                                             seg_map_path='SegmentationClass'),
                            ann_file='ImageSets/Segmentation/train.txt', pipeline=[]))
