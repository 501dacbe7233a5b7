"""Per-class evaluation for DropClass: a per-class IoU metric and class frequencies.

The DropClass paper claims its largest gains on under-represented classes; these are
the two measurements that question needs, usable in any config or report:

* :class:`PerClassIoUMetric` (registered in mmseg's ``METRICS``): mmseg's
  ``IoUMetric`` that also returns each class' IoU (``IoU.<class>``, in percent)
  instead of only printing it, e.g. ``test_evaluator=dict(type='PerClassIoUMetric')``;
* :func:`class_pixel_frequency` / :func:`dataset_class_frequency`: the share of each
  class among the labelled (non-ignored) pixels of a dataset's stored label maps.

The comparison of two checkpoints built on them is :mod:`mmseg_dynopool.dropclass.report`
(not imported with the package).
"""
import copy
from typing import Dict, Iterable, List, Optional, Sequence, Union

import numpy as np
from mmengine.config import ConfigDict

from mmseg.evaluation import IoUMetric
from mmseg.registry import METRICS


def class_pixel_frequency(label_maps: Iterable[np.ndarray], num_classes: int,
                          ignore_index: int = 255) -> np.ndarray:
    """Fraction of labelled pixels of each class over ``label_maps``.

    Pixels equal to ``ignore_index`` or outside ``[0, num_classes)`` are not counted.
    Returns a float64 array of length ``num_classes`` summing to 1 (all zeros when no
    pixel is labelled).
    """
    if num_classes < 1:
        raise ValueError(f'num_classes must be >= 1, got {num_classes}')
    counts = np.zeros(num_classes, dtype=np.int64)
    for label in label_maps:
        flat = np.asarray(label).astype(np.int64).ravel()
        flat = flat[(flat != ignore_index) & (flat >= 0) & (flat < num_classes)]
        counts += np.bincount(flat, minlength=num_classes)[:num_classes]
    total = counts.sum()
    if total == 0:
        return np.zeros(num_classes, dtype=np.float64)
    return counts / float(total)


def _with_pipeline(dataset_cfg: Union[dict, ConfigDict], pipeline: List[dict]) -> dict:
    """Copy of a dataset config with every (nested) ``pipeline`` replaced."""
    cfg = copy.deepcopy(dataset_cfg)

    def visit(node):
        if isinstance(node, dict):
            if 'pipeline' in node:
                node['pipeline'] = copy.deepcopy(pipeline)
            for key in ('dataset', 'datasets'):
                if key in node:
                    visit(node[key])
        elif isinstance(node, (list, tuple)):
            for item in node:
                visit(item)

    visit(cfg)
    return cfg


def dataset_class_frequency(dataset_cfg: Union[dict, ConfigDict],
                            num_classes: Optional[int] = None,
                            ignore_index: int = 255,
                            max_images: Optional[int] = None) -> np.ndarray:
    """:func:`class_pixel_frequency` over a dataset built from ``dataset_cfg``.

    The dataset's pipeline is replaced by mmseg's ``LoadAnnotations`` (label maps only,
    with the dataset's ``reduce_zero_label`` / ``label_map`` applied), so the counts are
    those of the stored annotations, before any augmentation. Wrappers
    (``ConcatDataset``, ``RepeatDataset``) are followed. ``max_images`` counts only that
    many images (evenly spaced) for a quick estimate. ``num_classes`` defaults to the
    number of classes in the dataset's metainfo.
    """
    from mmengine.registry import DefaultScope

    import mmseg.datasets  # noqa: F401  (registers the transforms and datasets)
    from mmseg.registry import DATASETS

    # mmseg scope: unscoped names (LoadAnnotations!) would resolve to mmcv's otherwise.
    with DefaultScope.overwrite_default_scope('mmseg'):
        dataset = DATASETS.build(
            _with_pipeline(dataset_cfg, [dict(type='mmseg.LoadAnnotations')]))
        if num_classes is None:
            num_classes = len(dataset.metainfo['classes'])
        n = len(dataset)
        indices: Sequence[int] = range(n)
        if max_images is not None and 0 < max_images < n:
            indices = np.linspace(0, n - 1, max_images).round().astype(int).tolist()
        return class_pixel_frequency((dataset[i]['gt_seg_map'] for i in indices),
                                     num_classes, ignore_index)


@METRICS.register_module()
class PerClassIoUMetric(IoUMetric):
    """``IoUMetric`` whose results also hold every class' IoU as ``IoU.<class>`` (%).

    A class absent from both prediction and ground truth gets NaN, as in mmseg's
    printed table. Arguments are ``IoUMetric``'s.

    Example:
        >>> test_evaluator = dict(type='PerClassIoUMetric', iou_metrics=['mIoU'])
    """

    def compute_metrics(self, results: list) -> Dict[str, float]:
        """Summary metrics of ``IoUMetric`` plus ``IoU.<class>`` for every class."""
        metrics = super().compute_metrics(results)
        if self.format_only:
            return metrics
        columns = tuple(zip(*results))
        intersect = sum(columns[0]).double()
        union = sum(columns[1]).double()
        iou = (intersect / union).numpy() * 100.0  # 0/0 -> nan
        for name, value in zip(self.dataset_meta['classes'], iou):
            metrics[f'IoU.{name}'] = float(np.round(value, 4))
        return metrics


__all__ = ['PerClassIoUMetric', 'class_pixel_frequency', 'dataset_class_frequency']
