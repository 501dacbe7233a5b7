"""The per-class metric and class frequencies (mmseg_dynopool/dropclass/metric.py)."""
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.config import Config
from PIL import Image

import mmseg_dynopool  # noqa: F401  (registers the modules)
from mmseg.registry import METRICS

from mmseg_dynopool.datasets import write_synthetic_voc
from mmseg_dynopool.dropclass import (PerClassIoUMetric, class_pixel_frequency,
                                      dataset_class_frequency)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SYNTH_HUMAN_CFG = osp.join(REPO, 'configs', 'synthetic',
                           'fcn_hr18tiny_1xb8-600it_synthvoc-96x96.py')


def test_class_pixel_frequency_counts_labelled_pixels_only():
    labels = [np.array([[0, 0, 1], [255, 2, 7]]), np.array([[1, 1, 255]])]
    freq = class_pixel_frequency(labels, num_classes=3)
    assert freq.tolist() == pytest.approx([2 / 6, 3 / 6, 1 / 6])
    assert class_pixel_frequency([np.full((2, 2), 255)], 3).tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match='num_classes'):
        class_pixel_frequency(labels, num_classes=0)


def test_dataset_class_frequency_counts_the_stored_label_maps(tmp_path):
    """Against the PNGs read directly (the dataset's pipeline is replaced by
    LoadAnnotations; the training pipeline's crops would change the counts)."""
    root = str(tmp_path / 'VOC2012')
    ids = write_synthetic_voc(root, num_train=4, num_val=1, size_range=(32, 48),
                              seed=3)['train']
    maps = [np.array(Image.open(osp.join(root, 'SegmentationClass', f'{i}.png')))
            for i in ids]
    dataset_cfg = Config.fromfile(SYNTH_HUMAN_CFG).train_dataloader.dataset
    dataset_cfg.data_root = root
    freq = dataset_class_frequency(dataset_cfg)
    assert len(freq) == 21  # from the dataset's metainfo
    assert freq == pytest.approx(class_pixel_frequency(maps, 21))
    assert freq.sum() == pytest.approx(1.0)
    # max_images: evenly spaced images (here the first and the last)
    quick = dataset_class_frequency(dataset_cfg, max_images=2)
    assert quick == pytest.approx(class_pixel_frequency([maps[0], maps[-1]], 21))
    assert not np.allclose(quick, freq)


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


def test_metric_is_registered_by_the_package_import():
    """Configs name it as ``type='PerClassIoUMetric'`` after
    ``custom_imports=dict(imports=['mmseg_dynopool'])``."""
    assert METRICS.get('PerClassIoUMetric') is PerClassIoUMetric
    metric = METRICS.build(dict(type='PerClassIoUMetric', iou_metrics=['mIoU']))
    assert isinstance(metric, PerClassIoUMetric)
