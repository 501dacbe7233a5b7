"""tools/analysis/tradeoff.py end to end on tiny configs (the human curve at two scales,
DynOPool and Shape Adaptor at one budget)."""
import json
import os.path as osp

import pytest
from mmengine.config import Config

from mmseg_dynopool.analysis.tradeoff import eval_shape, scale_pipelines

from ..conftest import REPO, SYNTH_HUMAN_CFG, load_tool, run_tool_main, tiny_config

SYNTH_DPS_CFG = osp.join(REPO, 'configs', 'synthetic',
                         'fcn_dynopool-s-hr18tiny_1xb8-600it_synthvoc-96x96.py')
SYNTH_SAS_CFG = osp.join(REPO, 'configs', 'synthetic',
                         'fcn_shapeadaptor-s-hr18tiny_1xb8-600it_synthvoc-96x96.py')


def test_scale_pipelines_scales_train_sizes_and_eval_images_only():
    cfg = Config.fromfile(SYNTH_HUMAN_CFG)
    scaled = scale_pipelines(cfg, 0.75)
    train = {s['type']: s for s in scaled.train_dataloader.dataset.pipeline}
    assert tuple(train['RandomCrop']['crop_size']) == (72, 72)
    assert tuple(train['Pad']['size']) == (72, 72)
    assert tuple(train['RandomResize']['scale']) == (84, 84)
    assert tuple(scaled.model.data_preprocessor.size) == (72, 72)
    assert eval_shape(scaled) == [72, 72] and eval_shape(cfg) == [96, 96]
    test = [s['type'] for s in scaled.test_dataloader.dataset.pipeline]
    # The image is resized before the annotations are loaded: labels stay full size.
    assert test.index('Resize') < test.index('LoadAnnotations')
    resize = next(s for s in scaled.test_dataloader.dataset.pipeline
                  if s['type'] == 'Resize')
    assert resize['scale_factor'] == 0.75
    # The original is untouched; scale 1 is the identity.
    assert tuple(cfg.model.data_preprocessor.size) == (96, 96)
    assert scale_pipelines(cfg, 1.0).pretty_text == cfg.pretty_text


@pytest.mark.slow
def test_tradeoff_tool_end_to_end_and_resumes(voc_root, tmp_path):
    configs = []
    for name, path in (('human', SYNTH_HUMAN_CFG), ('dps', SYNTH_DPS_CFG),
                       ('sas', SYNTH_SAS_CFG)):
        cfg = tiny_config(path, voc_root, str(tmp_path / 'unused'), iters=2)
        cfg.default_hooks.logger.interval = 1
        out = str(tmp_path / f'{name}.py')
        cfg.dump(out)
        configs.append(out)
    work = tmp_path / 'tradeoff'
    # The tool in this process (main(argv)); its trainings are tools/train.py processes.
    tool = load_tool(osp.join('tools', 'analysis', 'tradeoff.py'))
    argv = [*configs[:2], '--baselines', configs[2], '--work-dir', str(work),
            '--scales', '0.75', '1.0', '--targets', '0.7', '--seeds', '1']
    code, out = run_tool_main(tool, argv)
    assert code == 0, out[-3000:]
    data = json.loads((work / 'tradeoff.json').read_text())
    assert [p['scale'] for p in data['human']] == [0.75, 1.0]
    assert [p['target'] for p in data['dynopool']] == [0.7]
    for p in data['human'] + data['dynopool']:
        assert 0 <= p['metric'] <= 100 and p['metric_key'] == 'mIoU'
        assert p['metric_std'] == 0.0 and len(p['metrics']) == 1  # one seed
        assert p['gmacs'] > 0
    small, full = data['human']
    assert small['input_shape'] == [48, 48] and full['input_shape'] == [64, 64]
    assert small['gmacs'] == pytest.approx(full['gmacs'] * 0.75 ** 2, rel=0.1)
    assert data['human_gmacs'] == pytest.approx(full['gmacs'], rel=1e-6)
    # Both resizing methods: the budget is a cap at 0.7 x the human model's GMACs.
    for method in ('dynopool', 'shapeadaptor'):
        tight, = data[method]
        assert tight['target'] == 0.7
        assert tight['target_gmacs'] == pytest.approx(0.7 * full['gmacs'])
        assert tight['gmacs'] <= 0.7 * full['gmacs'] * 1.001, method
        assert len(tight['sizes']) == 5 and 0 <= tight['metric'] <= 100
    assert data['baseline_configs'] == [configs[2]]
    assert (work / 'tradeoff.png').stat().st_size > 1000
    assert 'mIoU' in out and 'shapeadaptor' in out
    # Re-running finds every point done and trains nothing.
    code, again = run_tool_main(tool, argv)
    assert code == 0, again[-3000:]
    assert again.count('already done') == 4
    assert '] iter ' not in again


def test_dynopool_config_must_have_dynopool_layers(tmp_path):
    from mmseg_dynopool.analysis.tradeoff import tradeoff
    with pytest.raises(ValueError, match='expected DynOPool layers, found shapeadaptor'):
        tradeoff(SYNTH_HUMAN_CFG, SYNTH_SAS_CFG, str(tmp_path))
