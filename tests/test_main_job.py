"""The main job's code path end to end, at a reduced budget."""
import json
import os.path as osp
import subprocess
import sys

import pytest

from .conftest import REPO

pytestmark = pytest.mark.slow


def test_main_job_runs_end_to_end(tmp_path):
    data_root = tmp_path / 'synthetic_voc' / 'VOC2012'
    work = tmp_path / 'work'
    cmd = [sys.executable, osp.join(REPO, 'tools', 'run_main_job.py'), '--synthetic',
           '--iters', '2', '--num-train', '4', '--num-val', '2',
           '--data-root', str(data_root), '--work-dir', str(work)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # It generated the dataset because none was there.
    assert (data_root / 'ImageSets' / 'Segmentation' / 'train.txt').is_file()
    results = json.loads((work / 'results.json').read_text())['results']
    assert [r['name'] for r in results] == ['human', 'dynopool']
    for r in results:
        assert 0 <= r['miou'] <= 100
        assert r['gmacs'] > 0
        assert len(r['levels']) == 5 and all(len(s) == 2 for s in r['levels'])
        assert osp.isfile(r['checkpoint'])
    human, dyn = results
    assert human['levels'] == [[48, 48], [24, 24], [12, 12], [6, 6], [3, 3]]
    assert len(dyn['layers']) == 5 and human['layers'] == []
    # The printed table and the plots.
    assert 'Main job results' in proc.stdout
    assert 'dynopool' in proc.stdout.split('Main job results')[1]
    plots = work / 'dynopool' / 'plots'
    assert (plots / 'dynopool_training.png').stat().st_size > 1000
    assert (plots / 'feature_maps.png').stat().st_size > 1000
