"""Deprecated: the per-class DropClass evaluation moved to ``mmseg_dynopool.dropclass``.

``PerClassIoUMetric`` and the class-frequency helpers are in
:mod:`mmseg_dynopool.dropclass.metric` (registered when the package is imported), the
report (evaluation, table, plot) in :mod:`mmseg_dynopool.dropclass.report`, and
``model_cfg_from_checkpoint`` in :mod:`mmseg_dynopool.models.build`. This module keeps
the old imports working; the package never imports it.
"""
import warnings

from ..dropclass.metric import (PerClassIoUMetric, class_pixel_frequency,  # noqa: F401
                                dataset_class_frequency)
from ..dropclass.report import (ClassRow, build_rows,  # noqa: F401
                                check_head_matches_checkpoint, evaluate_per_class_iou,
                                format_table, per_class_report, plot_gain_vs_frequency,
                                summarize_gains)
from ..models.build import model_cfg_from_checkpoint  # noqa: F401

warnings.warn('mmseg_dynopool.analysis.per_class is deprecated: import '
              'PerClassIoUMetric and the class frequencies from '
              'mmseg_dynopool.dropclass, the report from mmseg_dynopool.dropclass.report',
              DeprecationWarning, stacklevel=2)

__all__ = ['ClassRow', 'PerClassIoUMetric', 'build_rows',
           'check_head_matches_checkpoint', 'class_pixel_frequency',
           'dataset_class_frequency', 'evaluate_per_class_iou', 'format_table',
           'model_cfg_from_checkpoint', 'per_class_report', 'plot_gain_vs_frequency',
           'summarize_gains']
