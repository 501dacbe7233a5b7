"""The per-class DropClass report (mmseg_dynopool/dropclass/report.py): rows, summary,
table and plot; the checks that keep a checkpoint from being evaluated with the wrong
model; the deprecated ``mmseg_dynopool.analysis.per_class``. The report on trained
checkpoints, end to end: tests/integration/test_dropclass_training.py."""
import importlib
import os.path as osp
import sys

import pytest
import torch
from mmengine.config import Config

import mmseg_dynopool  # noqa: F401  (registers the modules)
from mmseg_dynopool.dropclass.report import (build_rows, check_head_matches_checkpoint,
                                             evaluate_per_class_iou, format_table,
                                             plot_gain_vs_frequency, summarize_gains)
from mmseg_dynopool.models.build import (CheckpointMismatchError,
                                         build_model_from_config,
                                         model_cfg_from_checkpoint)

from ..conftest import load_tool

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DROP_CFG = osp.join(REPO, 'configs', 'dropclass',
                    'fcn-dropclass_hr18tiny_1xb8-600it_synthvoc-96x96.py')
PLAIN_CFG = osp.join(REPO, 'configs', 'synthetic',
                     'fcn_hr18tiny_1xb8-600it_synthvoc-96x96.py')


def _save(model, path, meta=None):
    torch.save(dict(state_dict=model.state_dict(), meta=meta or {}), str(path))
    return str(path)


@pytest.fixture(scope='module')
def checkpoints(tmp_path_factory):
    """Untrained plain and DropClass checkpoints of the tiny synthetic models (no
    ``meta['cfg']``, as from ``torch.save``)."""
    folder = tmp_path_factory.mktemp('dropclass-ckpts')
    return dict(plain=_save(build_model_from_config(PLAIN_CFG), folder / 'plain.pth'),
                drop=_save(build_model_from_config(DROP_CFG), folder / 'drop.pth'))


def test_report_rows_summary_table_and_plot(tmp_path):
    """(The frequency half of this test, once one, is in test_metric.py.)"""
    rows = build_rows(['a', 'b', 'c', 'd'], [0.6, 0.3, 0.08, 0.02],
                      {'a': 90.0, 'b': 70.0, 'c': 40.0, 'd': float('nan')},
                      [91.0, 69.0, 45.0, 10.0])
    assert [r.gain for r in rows[:3]] == pytest.approx([1.0, -1.0, 5.0])
    s = summarize_gains(rows)
    assert s['miou_baseline'] == pytest.approx(200 / 3)
    assert s['mean_gain'] == pytest.approx(5 / 3)
    assert s['mean_gain_rare_half'] == pytest.approx(5.0)   # c (the rarer of a, b, c)
    assert s['mean_gain_frequent_half'] == pytest.approx(1.0)  # a
    assert s['spearman_freq_gain'] == pytest.approx(-0.5)  # ranks (2,1,0) vs (1,0,2)
    table = format_table(rows)
    for name in 'abcd':
        assert f'\n{name} ' in table
    assert '+5.00' in table and '-1.00' in table
    png = plot_gain_vs_frequency(rows, str(tmp_path / 'sub' / 'gain.png'))
    with open(png, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    with pytest.raises(ValueError):
        build_rows(['a'], [0.1, 0.2], [1.0], [2.0])


def test_head_check_refuses_a_checkpoint_of_the_other_head(checkpoints):
    """mmengine's ``load_from`` would load a plain checkpoint into a DropClass model
    non-strictly and leave the drop branch random: refused before any evaluation."""
    drop_model = Config.fromfile(DROP_CFG).model
    plain_model = Config.fromfile(PLAIN_CFG).model
    with pytest.raises(ValueError, match='has no DropClass weights.*DropClassFCNHead'):
        check_head_matches_checkpoint(drop_model, checkpoints['plain'])
    with pytest.raises(ValueError, match='has DropClass weights.*FCNHead'):
        check_head_matches_checkpoint(plain_model, checkpoints['drop'])
    check_head_matches_checkpoint(drop_model, checkpoints['drop'])
    check_head_matches_checkpoint(plain_model, checkpoints['plain'])


def test_model_config_comes_from_the_checkpoint_meta(tmp_path, checkpoints):
    """mmengine's Runner saves the config text in ``meta['cfg']``; the report evaluates
    each checkpoint with that model unless told otherwise."""
    assert model_cfg_from_checkpoint(checkpoints['drop']) is None  # torch.save, no meta
    cfg = Config.fromfile(DROP_CFG)
    path = _save(build_model_from_config(cfg), tmp_path / 'with_meta.pth',
                 meta=dict(cfg=cfg.pretty_text))
    model = model_cfg_from_checkpoint(path)
    assert model.decode_head.type == 'DropClassFCNHead'
    assert model.to_dict() == cfg.model.to_dict()


def test_evaluation_loads_the_checkpoint_strictly(tmp_path, checkpoints):
    """A checkpoint that passes the head check but lacks a weight is refused (a
    non-strict load would evaluate a random classifier bias)."""
    state = torch.load(checkpoints['drop'], map_location='cpu',
                       weights_only=True)['state_dict']
    del state['decode_head.conv_seg.bias']
    path = str(tmp_path / 'no_bias.pth')
    torch.save(dict(state_dict=state, meta={}), path)
    cfg = Config.fromfile(DROP_CFG)
    check_head_matches_checkpoint(cfg.model, path)  # DropClass weights: passes
    # Unformatted config text: the Runner dumps it, yapf would take seconds.
    cfg = Config(cfg.to_dict(), filename=cfg.filename, format_python_code=False)
    # The data does not exist: the checkpoint is refused before it is needed.
    cfg.test_dataloader.dataset.data_root = str(tmp_path / 'no-data')
    with pytest.raises(CheckpointMismatchError, match='decode_head.conv_seg.bias'):
        evaluate_per_class_iou(cfg, path, str(tmp_path / 'work'), tag='strict')


def test_tool_refuses_a_mismatched_checkpoint_with_a_one_line_error(tmp_path, capsys,
                                                                   checkpoints):
    tool = load_tool('tools/analysis/per_class_report.py')
    # CONFIG's model (DropClass) for the plain baseline checkpoint, which has no meta.
    rc = tool.main([DROP_CFG, checkpoints['plain'], checkpoints['drop'], '--out-dir',
                    str(tmp_path / 'report')])
    assert rc == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith('error: ')]
    assert len(lines) == 1, err
    assert checkpoints['plain'] in lines[0] and '--baseline-config' in lines[0]
    assert 'Traceback' not in err
    assert not (tmp_path / 'report' / 'per_class_report.json').exists()


def test_old_per_class_module_still_imports_with_a_deprecation_warning():
    name = 'mmseg_dynopool.analysis.per_class'
    sys.modules.pop(name, None)
    with pytest.warns(DeprecationWarning, match='mmseg_dynopool.dropclass'):
        old = importlib.import_module(name)
    from mmseg_dynopool.dropclass import PerClassIoUMetric, class_pixel_frequency
    from mmseg_dynopool.dropclass import report
    assert old.PerClassIoUMetric is PerClassIoUMetric
    assert old.class_pixel_frequency is class_pixel_frequency
    assert old.model_cfg_from_checkpoint is model_cfg_from_checkpoint
    for name in ('per_class_report', 'evaluate_per_class_iou', 'build_rows',
                 'format_table', 'summarize_gains', 'plot_gain_vs_frequency',
                 'check_head_matches_checkpoint', 'ClassRow'):
        assert getattr(old, name) is getattr(report, name), name
