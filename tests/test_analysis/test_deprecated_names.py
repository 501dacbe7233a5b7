"""Names that moved out of, or within, mmseg_dynopool.analysis keep resolving at their
old place: the same objects, with a DeprecationWarning where the old place no longer
uses them itself."""
import importlib
import sys

import pytest

import mmseg_dynopool.models.cost as cost
from mmseg_dynopool.analysis import config_scaling, plots, runs, tradeoff, workdir


def test_gmacs_module_is_a_deprecated_view_of_the_cost_model():
    name = 'mmseg_dynopool.analysis.gmacs'
    sys.modules.pop(name, None)
    with pytest.warns(DeprecationWarning, match='mmseg_dynopool.models.cost'):
        gmacs = importlib.import_module(name)
    for attr in ('GMACsProfile', 'count_gmacs', 'profile_gmacs',
                 'reset_to_initial_ratios'):
        assert getattr(gmacs, attr) is getattr(cost, attr), attr


@pytest.mark.parametrize('attr, home', [
    ('count_gmacs', 'mmseg_dynopool.models.cost'),
    ('profile_gmacs', 'mmseg_dynopool.models.cost'),
    ('GMACsProfile', 'mmseg_dynopool.models.cost'),
    ('reset_to_initial_ratios', 'mmseg_dynopool.models.cost'),
    ('PerClassIoUMetric', 'mmseg_dynopool.dropclass'),
    ('per_class_report', 'mmseg_dynopool.dropclass.report')])
def test_package_level_names_that_moved_warn(attr, home):
    analysis = importlib.import_module('mmseg_dynopool.analysis')
    with pytest.warns(DeprecationWarning, match=f'moved to {home}.{attr}'):
        value = getattr(analysis, attr)
    assert value is getattr(importlib.import_module(home), attr)
    with pytest.raises(AttributeError, match='no attribute'):
        analysis.no_such_name  # noqa: B018


def test_names_moved_between_analysis_modules():
    with pytest.warns(DeprecationWarning, match='analysis.workdir.find_scalar_log'):
        assert plots.find_scalar_log is workdir.find_scalar_log
    with pytest.warns(DeprecationWarning, match='analysis.workdir.load_scalar_log'):
        assert plots.load_scalar_log is workdir.load_scalar_log
    with pytest.warns(DeprecationWarning, match='analysis.plots.CURVES'):
        assert tradeoff.CURVES is plots.CURVES
    # Still used where they were: importable there without a warning.
    for module, attr, home in ((plots, 'find_scalar_logs', workdir),
                               (plots, 'load_scalar_logs', workdir),
                               (plots, 'latest_checkpoint', workdir),
                               (runs, 'final_metric', workdir),
                               (runs, 'latest_checkpoint', workdir),
                               (tradeoff, 'scale_pipelines', config_scaling),
                               (tradeoff, 'eval_shape', config_scaling),
                               (tradeoff, 'human_gmacs', config_scaling),
                               (tradeoff, 'resizing_method', config_scaling),
                               (tradeoff, 'plot_tradeoff', plots),
                               (tradeoff, 'mean_std', runs)):
        assert getattr(module, attr) is getattr(home, attr), (module.__name__, attr)
