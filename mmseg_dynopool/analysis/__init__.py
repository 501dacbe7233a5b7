"""Downstream analysis: reports, plots, work-dir reading, training runs, trade-off sweeps.

Nothing in the training code imports this package (``import mmseg_dynopool`` does not
load it); the tools import its modules explicitly:

* :mod:`.report`: Table 5.4/5.5-style report of a model (sizes, ratios, GMACs);
* :mod:`.workdir`: reading an mmengine work dir (logged scalars, checkpoints, the
  dumped config, the last metric);
* :mod:`.plots`: training curves, feature maps (Figure 5.1), the trade-off plot;
* :mod:`.runs`: training runs through the OpenMMLab tools;
* :mod:`.config_scaling`: input scale and GMACs budget of a config;
* :mod:`.tradeoff`: the accuracy vs GMACs sweep (Figure 5.2).

The cost model lives in :mod:`mmseg_dynopool.models.cost` and the per-class DropClass
report in :mod:`mmseg_dynopool.dropclass.report`; their names once exported here still
resolve, with a ``DeprecationWarning``.
"""
import importlib
import warnings

from .report import (CheckpointMismatchError, NoDynOPoolError,  # noqa: F401
                     build_model_from_config, dynopool_report, format_report,
                     model_report)

# name -> the module it lives in now
_MOVED = {
    'GMACsProfile': 'mmseg_dynopool.models.cost',
    'count_gmacs': 'mmseg_dynopool.models.cost',
    'profile_gmacs': 'mmseg_dynopool.models.cost',
    'reset_to_initial_ratios': 'mmseg_dynopool.models.cost',
    'PerClassIoUMetric': 'mmseg_dynopool.dropclass',
    'per_class_report': 'mmseg_dynopool.dropclass.report',
}


def __getattr__(name: str):
    if name in _MOVED:
        warnings.warn(f'mmseg_dynopool.analysis.{name} moved to {_MOVED[name]}.{name}',
                      DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(_MOVED[name]), name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


__all__ = ['CheckpointMismatchError', 'NoDynOPoolError', 'build_model_from_config',
           'dynopool_report', 'format_report', 'model_report']
