"""The plots (mmseg_dynopool/analysis/plots.py) on fabricated data: training curves,
feature maps (Figure 5.1), the trade-off plot (Figure 5.2). The plot tool on a trained
run: tests/test_tools/test_analysis_tools.py."""
import pytest

from mmseg_dynopool.analysis.plots import (plot_feature_maps, plot_tradeoff,
                                           plot_training_curves)
from mmseg_dynopool.analysis.workdir import find_scalar_logs, load_scalar_logs

from .helpers import captured_figures, png_ok, write_run


def test_plot_feature_maps_draws_every_model(tmp_path):
    """(Split from the work-dir reading test in test_workdir.py.)"""
    png = plot_feature_maps(
        [dict(name='Human', sizes=[[240, 240], [120, 120], [60, 60], [30, 30], [15, 15]]),
         dict(name='DynOPool', gmacs=69.39, miou=76.4,
              sizes=[[367, 349], [134, 130], [52, 50], [22, 21], [10, 9]])],
        str(tmp_path / 'fig.png'), input_shape=(480, 480))
    png_ok(png)


def test_training_curve_legend_names_each_pool_fully(tmp_path, monkeypatch):
    write_run(tmp_path, '20260101_000000', range(1, 4), 0.0)
    figures = captured_figures(monkeypatch)
    plot_training_curves(load_scalar_logs(find_scalar_logs(str(tmp_path))),
                         str(tmp_path / 'curves.png'))
    legend = figures[0].axes[0].get_legend()
    labels = sorted(t.get_text() for t in legend.get_texts())
    assert labels == sorted(f'backbone.stage{s}.dynopool {a}'
                            for s in (2, 3) for a in ('r_h', 'r_w'))
    assert len(set(labels)) == 4


def test_training_curves_need_dynopool_ratios(tmp_path):
    with pytest.raises(ValueError, match='no DynOPool ratios'):
        plot_training_curves({'loss': ([1, 2], [1.0, 0.5])}, str(tmp_path / 'c.png'))
    with pytest.raises(ValueError, match='no feature-map sizes'):
        plot_feature_maps([dict(name='empty', sizes=[])], str(tmp_path / 'f.png'))


def _point(tag, value, gmacs, metric, std=0.5):
    return {tag: value, 'gmacs': gmacs, 'gmacs_std': 0.0, 'metric': metric,
            'metric_std': std, 'metric_key': 'mIoU'}


def test_tradeoff_plot_draws_every_curve_with_error_bars(tmp_path, monkeypatch):
    data = {'human': [_point('scale', 1.0, 2.0, 60.0), _point('scale', 0.75, 1.1, 55.0)],
            'dynopool': [_point('target', 0.6, 1.2, 58.0), _point('target', 1.0, 2.0,
                                                                   62.0, std=1.5)],
            'shapeadaptor': [], 'diffstride': [_point('target', 0.6, 1.3, 56.0)]}
    figures = captured_figures(monkeypatch)
    path = plot_tradeoff(data, str(tmp_path / 'sub' / 'tradeoff.png'))
    png_ok(path)
    ax = figures[0].axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        'human-designed (input scale)', 'DynOPool (GMACs budget)',
        'DiffStride (GMACs budget)']  # no Shape Adaptor points: no curve
    assert ax.get_ylabel() == 'mIoU'
    human_line = ax.get_lines()[0]
    # Points sorted by GMACs; the annotation is the scale / budget of the point.
    assert list(human_line.get_xdata()) == [1.1, 2.0]
    assert list(human_line.get_ydata()) == [55.0, 60.0]
    assert {t.get_text() for t in ax.texts} == {'0.75', '1', '0.6'}
    # Error bars: the standard deviation over seeds.
    dyno = ax.containers[1]
    # barlinecols: (x error bars, y error bars), as both are given
    segments = dyno.lines[2][-1].get_segments()
    assert [tuple(s[:, 1]) for s in segments] == [(57.5, 58.5), (60.5, 63.5)]
