"""The Table 5.4/5.5 report library (mmseg_dynopool/analysis/report.py). The report
tool and more report checks: tests/test_tools/test_analysis_tools.py."""
import pytest

from mmseg_dynopool.analysis.report import dynopool_report
from mmseg_dynopool.models.build import build_model_from_config

from ..conftest import SYNTH_DP_CFG
from .helpers import measure

SHAPE = (64, 80)  # non-square, so a swapped h/w shows


def test_report_counts_avg_dynopool_once(monkeypatch):
    """mmengine sees the 'avg' DynOPool's interpolate; it must not be counted twice."""
    # The native backend (GPU fallback) runs F.interpolate, which mmengine counts; the
    # CPU kernel is invisible to it. Force the native one.
    import mmseg_dynopool.ops.functional as functional
    monkeypatch.setattr(functional, '_ext', None)
    opts = {'model.backbone.dynopool_cfg.aggregation': 'avg'}
    avg = dynopool_report(SYNTH_DP_CFG, SHAPE, cfg_options=opts)
    model = build_model_from_config(SYNTH_DP_CFG, cfg_options=opts)
    _, pool_macs, counted_all, _ = measure(model, SHAPE)
    assert counted_all > avg['counted_gmacs']  # mmengine did count the pools
    assert avg['dynopool_gmacs'] == pytest.approx(pool_macs, rel=1e-9)
    assert avg['gmacs'] == pytest.approx(counted_all, rel=1e-9)
