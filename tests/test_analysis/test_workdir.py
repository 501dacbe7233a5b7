"""Reading an mmengine work dir (mmseg_dynopool/analysis/workdir.py) on fabricated
run folders: the scalar logs of every run stitched in time order, checkpoints, the
dumped config, the last metric."""
import json
import os
import os.path as osp

import pytest

from mmseg_dynopool.analysis.workdir import (dumped_config, dynopool_series,
                                             final_metric, find_scalar_log,
                                             find_scalar_logs, last_miou,
                                             latest_checkpoint, load_scalar_log,
                                             load_scalar_logs)

from .helpers import write_run


def test_newest_scalar_log_with_dynopool_ratios(tmp_path):
    """(The feature-map half of this test, once one, is in test_plots.py.)"""
    old = tmp_path / '20260101_000000' / 'vis_data'
    new = tmp_path / '20260102_000000' / 'vis_data'
    old.mkdir(parents=True)
    new.mkdir(parents=True)
    rows = [dict(iter=i, gmacs=0.1 - 0.01 * i, **{'backbone.p/r_h': 0.5 + 0.01 * i,
                                                  'backbone.p/r_w': 0.5 - 0.01 * i})
            for i in range(1, 6)]
    (old / 'scalars.json').write_text('\n'.join(json.dumps(r) for r in rows)
                                      + '\n{"mIoU": 3.0, "step": 5}\n')
    # The newer run (e.g. a test-only run) has no DynOPool scalars: skipped.
    (new / 'scalars.json').write_text('{"mIoU": 4.0, "step": 5}\n')
    path = find_scalar_log(str(tmp_path))
    assert path == str(old / 'scalars.json')
    scalars = load_scalar_log(path)
    assert scalars['backbone.p/r_h'][0] == [1, 2, 3, 4, 5]
    assert scalars['gmacs'][1][-1] == pytest.approx(0.05)


def test_training_curves_stitch_every_run_of_a_work_dir(tmp_path):
    # Run 1 logged iterations 1-6, then crashed; run 2 resumed from iteration 4's
    # checkpoint and logged 5-8; run 3 only tested (no training lines).
    write_run(tmp_path, '20260101_000000', range(1, 7), 0.0)
    write_run(tmp_path, '20260102_000000', range(5, 9), 1.0)
    (tmp_path / '20260103_000000' / 'vis_data').mkdir(parents=True)
    (tmp_path / '20260103_000000' / 'vis_data' / 'scalars.json').write_text(
        '{"mIoU": 4.0, "step": 8}\n')
    logs = find_scalar_logs(str(tmp_path))
    assert [osp.basename(osp.dirname(osp.dirname(p))) for p in logs] == [
        '20260101_000000', '20260102_000000']
    series = load_scalar_logs(logs)
    its, vals = series['backbone.stage2.dynopool/r_h']
    assert its == list(range(1, 9))
    # 1-4 from run 1, 5-8 (overlapping 5 and 6) from the later run 2.
    assert vals == pytest.approx([i / 100 for i in range(1, 5)]
                                 + [1.0 + i / 100 for i in range(5, 9)])
    assert series['gmacs'][1][-1] == pytest.approx(9.0)
    # A run that restarted from an earlier checkpoint (iteration 2) and stopped at 3:
    # its iterations replace the earlier ones, and the abandoned 4-8 are not kept.
    write_run(tmp_path, '20260104_000000', range(3, 5), 2.0)
    series = load_scalar_logs(find_scalar_logs(str(tmp_path)))
    its, vals = series['backbone.stage2.dynopool/r_h']
    assert its == [1, 2, 3, 4]
    assert vals == pytest.approx([0.01, 0.02, 2.03, 2.04])
    assert find_scalar_log(str(tmp_path)).startswith(str(tmp_path / '20260104_000000'))


def test_dynopool_series_splits_ratios_per_layer_and_finds_the_gmacs():
    scalars = {'train/backbone.a/r_h': ([1], [0.4]), 'backbone.a/r_w': ([1], [0.6]),
               'backbone.b/r_h': ([1], [0.5]), 'train/gmacs': ([1], [2.0]),
               'loss': ([1], [3.0])}
    ratios, gmacs = dynopool_series(scalars)
    assert ratios == {'backbone.a': {'r_h': ([1], [0.4]), 'r_w': ([1], [0.6])},
                      'backbone.b': {'r_h': ([1], [0.5])}}
    assert gmacs == ([1], [2.0])
    assert dynopool_series({'loss': ([1], [3.0])}) == ({}, None)


def test_latest_checkpoint_follows_the_pointer_else_the_newest_iteration(tmp_path):
    with pytest.raises(FileNotFoundError, match='no checkpoint'):
        latest_checkpoint(str(tmp_path))
    for name in ('iter_2.pth', 'iter_10.pth'):
        (tmp_path / name).write_bytes(b'')
    # By iteration number, not by name ('iter_2' > 'iter_10' as text).
    assert latest_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_10.pth')
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_2.pth'))
    assert latest_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_2.pth')
    # A work dir moved after training: the pointer's file name, inside the work dir.
    (tmp_path / 'last_checkpoint').write_text('/elsewhere/work/iter_2.pth')
    assert latest_checkpoint(str(tmp_path)) == str(tmp_path / 'iter_2.pth')


def test_dumped_config_is_the_newest_python_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='no dumped config'):
        dumped_config(str(tmp_path))
    old, new = tmp_path / 'old_cfg.py', tmp_path / 'new_cfg.py'
    old.write_text('a = 1\n')
    new.write_text('a = 2\n')
    os.utime(old, (1_000_000, 1_000_000))
    os.utime(new, (2_000_000, 2_000_000))
    assert dumped_config(str(tmp_path)) == str(new)


def test_last_miou_of_the_newest_run_that_logged_one(tmp_path):
    assert last_miou(str(tmp_path)) is None
    write_run(tmp_path, '20260101_000000', range(1, 3), 0.0,
              extra='{"mIoU": 3.0, "step": 2}\n{"mIoU": 5.0, "step": 4}\n')
    assert last_miou(str(tmp_path)) == 5.0
    # A later run without validation does not hide it.
    write_run(tmp_path, '20260102_000000', range(3, 5), 0.0)
    assert last_miou(str(tmp_path)) == 5.0
    # A test run one folder down (WORK_DIR/test/<timestamp>, as run_main_job.py puts it).
    test_run = tmp_path / 'test' / '20260103_000000' / 'vis_data'
    test_run.mkdir(parents=True)
    (test_run / 'scalars.json').write_text('{"mIoU": 7.0, "step": 4}\n')
    assert last_miou(str(tmp_path)) == 7.0


def test_final_metric_is_the_last_logged_value(tmp_path):
    write_run(tmp_path, '20260101_000000', range(1, 5), 0.0,
              extra='{"mIoU": 3.0, "step": 2}\n{"mIoU": 4.5, "step": 4}\n')
    assert final_metric(str(tmp_path), 'mIoU') == 4.5
    with pytest.raises(ValueError, match="no 'accuracy/top1' logged"):
        final_metric(str(tmp_path), 'accuracy/top1')
