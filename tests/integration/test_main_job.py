"""The main job's code path end to end, at a reduced budget.

One job (3 models x 2 seeds, 2 iterations each) runs once per module; the baselines
test runs Shape Adaptor / DiffStride in the same work dir, so it also checks that a
later call with other models reuses the finished human run. The tool runs in the test
process (``main(argv)``); every training is mmseg's ``tools/train.py`` in a child
process, as for a user.
"""
import json
import os.path as osp

import pytest

from ..conftest import load_tool, run_tool_main

pytestmark = pytest.mark.slow


def _job(data_root, work, *args: str):
    return ['--synthetic', '--iters', '2', '--num-train', '4', '--num-val', '2',
            '--data-root', str(data_root), '--work-dir', str(work), *args]


@pytest.fixture(scope='module')
def main_job(tmp_path_factory):
    """The first call of the main job: ``(data_root, work_dir, tool, argv, (exit status,
    output), its results.json)`` (read at once: a later call in the work dir rewrites
    it)."""
    tmp = tmp_path_factory.mktemp('main_job')
    data_root, work = tmp / 'synthetic_voc' / 'VOC2012', tmp / 'work'
    tool = load_tool(osp.join('tools', 'run_main_job.py'))
    argv = _job(data_root, work, '--seeds', '2')
    run = run_tool_main(tool, argv)
    results = work / 'results.json'
    data = json.loads(results.read_text()) if results.is_file() else None
    return data_root, work, tool, argv, run, data


def test_main_job_runs_end_to_end(main_job):
    data_root, work, tool, argv, (code, out), data = main_job
    assert code == 0, out[-3000:]
    # It generated the dataset because none was there.
    assert (data_root / 'ImageSets' / 'Segmentation' / 'train.txt').is_file()
    results = data['results']
    assert [r['name'] for r in results] == ['human', 'dp-s', 'dp-b']
    for r in results:
        assert r['seeds'] == 2 and len(r['mious']) == 2
        assert all(0 <= m <= 100 for m in r['mious'])
        assert r['miou'] == pytest.approx(sum(r['mious']) / 2)
        assert r['gmacs'] > 0
        assert len(r['levels']) == 5 and all(len(s) == 2 for s in r['levels'])
        for run in r['runs']:
            assert osp.isfile(run['checkpoint'])
            assert (osp.dirname(run['checkpoint'])).endswith(
                osp.join(r['name'], f"seed{r['runs'].index(run)}"))
    human, dps, dpb = results
    assert human['levels'] == [[48, 48], [24, 24], [12, 12], [6, 6], [3, 3]]
    assert len(dps['layers']) == 5 and human['layers'] == []
    # Each seed is its own run with its own randomness.seed.
    for r in results:
        for i, run in enumerate(r['runs']):
            assert f'randomness.seed={i}' in run['cfg_options']
    # The printed table, the verdict and progress lines while training.
    assert 'Main job results' in out and 'dp-s' in out.split('Main job results')[1]
    assert 'DP-S vs human' in out and data['verdict'].startswith('DP-S vs human')
    assert '[dp-s seed 1] iter 1/2' in out  # streamed mmengine progress
    plots = work / 'dp-s' / 'seed0' / 'plots'
    assert (plots / 'dynopool_training.png').stat().st_size > 1000
    assert (plots / 'feature_maps.png').stat().st_size > 1000
    feature_maps_mtime = (plots / 'feature_maps.png').stat().st_mtime
    # A second call finds every run done and does not train again.
    code, again = run_tool_main(tool, argv)
    assert code == 0, again[-3000:]
    assert 'already done' in again and '] iter ' not in again
    assert '[dp-s] plots already done' in again
    assert (plots / 'feature_maps.png').stat().st_mtime == feature_maps_mtime


def test_main_job_runs_the_resizing_baselines(main_job):
    """--models with Shape Adaptor / DiffStride (docs/baselines.md's table)."""
    data_root, work, tool, _, (first, first_out), _ = main_job
    assert first == 0, first_out[-3000:]
    code, out = run_tool_main(tool, _job(data_root, work, '--seeds', '1', '--models',
                                         'human', 'sa-s', 'ds-b'))
    assert code == 0, out[-3000:]
    data = json.loads((work / 'results.json').read_text())
    human, sas, dsb = data['results']
    assert [r['name'] for r in data['results']] == ['human', 'sa-s', 'ds-b']
    # The budgeted Shape Adaptor ends at most at DP-S's absolute cost; the unconstrained
    # DiffStride keeps its larger maps (n / 2 + about 2R at stride 2).
    assert sas['gmacs'] <= 0.09178 * 69.39 / 82.55 * 1.001
    assert [lvl[0] for lvl in dsb['levels']] == [55, 35, 25, 21, 19]
    assert all(layer['type'] == 'DiffStride' for layer in dsb['layers'])
    assert data['verdict'].startswith('SA-S vs human') and 'DS-B' not in data['verdict']
    # The human run of the first call is reused, the baselines are trained.
    assert '[human seed 0] already done' in out
    assert '[sa-s seed 0] iter 1/2' in out
