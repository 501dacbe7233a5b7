"""DropClass (Chu, Kim & Han, NeurIPS 2021, https://arxiv.org/abs/2111.00531) in one home.

* :mod:`.head`: :class:`DropClassFCNHead` (registered in mmseg's ``MODELS``) and
  :class:`DropClassMixin`, which gives any suitable decode head the method;
* :mod:`.metric`: :class:`PerClassIoUMetric` (registered in mmseg's ``METRICS``) and the
  class-frequency helpers;
* :mod:`.report`: the per-class comparison of a baseline and a DropClass checkpoint
  (table, plot; ``tools/analysis/per_class_report.py``). Downstream code: importing
  this package does not import it.

Details: ``docs/dropclass.md``.
"""
from .head import DROP_SCHEDULES, DropClassFCNHead, DropClassMixin
from .metric import PerClassIoUMetric, class_pixel_frequency, dataset_class_frequency

__all__ = ['DROP_SCHEDULES', 'DropClassFCNHead', 'DropClassMixin', 'PerClassIoUMetric',
           'class_pixel_frequency', 'dataset_class_frequency']
