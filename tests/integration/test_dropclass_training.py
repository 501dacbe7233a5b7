"""DropClass through mmengine's Runner and the tools (docs/dropclass.md): training with
mmseg's tools/train.py and test.py, seeded reproducibility, DynOPool + DropClass, and
the per-class report tool on the trained checkpoints."""
import glob
import json
import os.path as osp
import sys
import uuid

import numpy as np
import pytest
import torch
from mmengine.config import Config

import mmseg_dynopool  # noqa: F401  (registers the modules)
from mmseg_dynopool.datasets import write_synthetic_voc
from mmseg_dynopool.dropclass.report import check_head_matches_checkpoint

from ..helpers import tiny_config

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CFG_DIR = osp.join(REPO, 'configs', 'dropclass')


def _unformatted(cfg):
    """The same config without yapf formatting of its text (seconds per Runner; and
    mmengine 0.10.7's Config.fromfile ignores format_python_code=False)."""
    return Config(cfg.to_dict(), filename=cfg.filename, format_python_code=False)


def _tiny_cfg(config_file, data_root, work_dir, iters=3):
    """The shared tiny config (tests/helpers.py) without validation (tools/test.py
    evaluates instead), seed 0."""
    return tiny_config(config_file, data_root, work_dir, iters, validate=False,
                       randomness=dict(seed=0))


def _train(cfg, name):
    from mmengine.runner import Runner
    cfg.experiment_name = f'{name}-{uuid.uuid4().hex}'
    cfg.visualizer.name = cfg.experiment_name
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner


@pytest.fixture(scope='module')
def synth_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('synthvoc'))
    write_synthetic_voc(root, num_train=4, num_val=2, size_range=(64, 80), seed=0)
    return root


def _run_mmseg_tool(tool, args):
    """Run mmseg's own tools/<tool>.py (as installed under mmseg/.mim/tools) in this
    process, as ``python tools/<tool>.py ARGS`` would (saves re-importing mmseg)."""
    import runpy

    import mmseg
    path = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools', f'{tool}.py')
    argv = sys.argv
    sys.argv = [path] + list(args)
    try:
        runpy.run_path(path, run_name='__main__')
    finally:
        sys.argv = argv


@pytest.fixture(scope='module')
def trained(synth_root, tmp_path_factory):
    """A 3-iteration baseline (mmengine Runner) and DropClass model (mmseg's own
    tools/train.py on a dumped config)."""
    work = tmp_path_factory.mktemp('dropclass-work')
    base_cfg = _tiny_cfg(osp.join(REPO, 'configs', 'synthetic',
                                  'fcn_hr18tiny_1xb8-600it_synthvoc-96x96.py'),
                         synth_root, str(work / 'base'))
    _train(base_cfg, 'base')
    drop_cfg = _tiny_cfg(osp.join(CFG_DIR, 'fcn-dropclass_hr18tiny_1xb8-600it_'
                                  'synthvoc-96x96.py'), synth_root, str(work / 'drop'))
    drop_cfg.experiment_name = f'tools-train-{uuid.uuid4().hex}'
    drop_cfg.visualizer.name = drop_cfg.experiment_name
    cfg_file = str(work / 'dropclass_tiny.py')
    drop_cfg.dump(cfg_file)
    _run_mmseg_tool('train', [cfg_file])
    scalars = sorted(glob.glob(osp.join(str(work / 'drop'), '*', 'vis_data',
                                        'scalars.json')))
    assert scalars, 'tools/train.py wrote no scalars.json'
    with open(scalars[-1]) as f:
        logs = [json.loads(line) for line in f if line.strip()]
    return dict(work=work, base_ckpt=osp.join(str(work / 'base'), 'iter_3.pth'),
                drop_ckpt=osp.join(str(work / 'drop'), 'iter_3.pth'),
                drop_cfg_file=cfg_file,
                drop_logs=[r for r in logs if 'decode.loss_ce_drop' in r])


@pytest.mark.slow
def test_runner_trains_dropclass_through_mmseg_tools(trained):
    assert osp.isfile(trained['base_ckpt']) and osp.isfile(trained['drop_ckpt'])
    state = torch.load(trained['drop_ckpt'], map_location='cpu',
                       weights_only=False)['state_dict']
    assert any(k.startswith('decode_head.suppress_conv.conv') for k in state)
    # logged scalars: t of iteration i (0-based) of 3 is i/3; losses are logged as
    # window means, so only their sum relation is checked here (per iteration: below).
    train_logs = trained['drop_logs']
    assert len(train_logs) == 3
    assert [r['decode.dc_t'] for r in train_logs] == pytest.approx([0, 1 / 3, 2 / 3])
    for r in train_logs:
        expected = (r['decode.loss_ce'] + r['decode.loss_ce_drop']
                    + r['decode.loss_suppress'])
        assert np.isfinite(r['loss'])
        assert r['loss'] == pytest.approx(expected, rel=1e-4)
    # mmseg's tools/test.py on the DropClass checkpoint
    test_dir = str(trained['work'] / 'test')
    name = f'tools-test-{uuid.uuid4().hex}'
    _run_mmseg_tool('test', [trained['drop_cfg_file'], trained['drop_ckpt'],
                             '--work-dir', test_dir, '--cfg-options',
                             f'experiment_name={name}', f'visualizer.name={name}'])
    logs = glob.glob(osp.join(test_dir, '*', '*.log'))
    assert logs and 'mIoU' in open(logs[0]).read()


@pytest.mark.slow
def test_seeded_runner_training_is_reproducible(trained, tmp_path):
    """The same config and seed in a fresh Runner redraws the same dropped classes and
    reproduces the losses of the tools/train.py run; per iteration, the suppression
    term is non-zero exactly when a class was dropped."""
    cfg = _unformatted(Config.fromfile(trained['drop_cfg_file']))
    cfg.work_dir = str(tmp_path)
    cfg.default_hooks.checkpoint = None
    runner = _train(cfg, 'repro')
    hub = runner.message_hub
    history = {key: hub.get_scalar(f'train/decode.{key}').data[0].tolist()
               for key in ('dc_class', 'dc_t', 'loss_ce', 'loss_suppress')}
    assert history['dc_t'] == pytest.approx([0.0, 1 / 3, 2 / 3])
    for z, sup in zip(history['dc_class'], history['loss_suppress']):
        assert (sup > 0) == (z >= 0)
    logged = trained['drop_logs']
    assert [r['decode.dc_class'] for r in logged] == history['dc_class']
    assert logged[0]['decode.loss_ce'] == pytest.approx(history['loss_ce'][0], rel=1e-5)


@pytest.mark.slow
def test_dynopool_plus_dropclass_trains(synth_root, tmp_path):
    cfg = _tiny_cfg(osp.join(CFG_DIR, 'fcn-dropclass_dynopool-hr18tiny_1xb8-600it_'
                             'synthvoc-96x96.py'), synth_root, str(tmp_path), iters=2)
    cfg.default_hooks.checkpoint = None
    runner = _train(cfg, 'dynodrop')
    model = runner.model
    assert type(model.backbone).__name__ == 'DynOPoolHRNet'
    assert type(model.decode_head).__name__ == 'DropClassFCNHead'
    hub = runner.message_hub
    for key in ('train/loss_gmacs', 'train/decode.loss_ce_drop',
                'train/decode.loss_suppress', 'train/decode.dc_t', 'train/gmacs'):
        assert np.isfinite(hub.get_scalar(key).current()), key


@pytest.mark.slow
def test_per_class_report_tool_end_to_end(trained, synth_root, capsys):
    sys.path.insert(0, osp.join(REPO, 'tools', 'analysis'))
    try:
        import per_class_report as tool
    finally:
        sys.path.pop(0)
    out_dir = str(trained['work'] / 'report')
    # CONFIG = the DropClass config; each checkpoint's own model comes from its meta.
    assert tool.main([trained['drop_cfg_file'], trained['base_ckpt'],
                      trained['drop_ckpt'], '--out-dir', out_dir]) == 0
    printed = capsys.readouterr().out
    assert 'IoU base' in printed and 'background' in printed
    with open(osp.join(out_dir, 'per_class_report.json')) as f:
        report = json.load(f)
    rows = report['rows']
    assert len(rows) == 21
    assert sum(r['frequency'] for r in rows) == pytest.approx(1.0)
    assert rows[0]['name'] == 'background' and rows[0]['frequency'] > 0.3
    bg = rows[0]
    assert bg['gain'] == pytest.approx(bg['iou_dropclass'] - bg['iou_baseline'])
    assert osp.getsize(osp.join(out_dir, 'gain_vs_frequency.png')) > 1000
    # evaluating the plain checkpoint with the DropClass model is refused
    drop_model = Config.fromfile(trained['drop_cfg_file']).model
    with pytest.raises(ValueError, match='DropClass'):
        check_head_matches_checkpoint(drop_model, trained['base_ckpt'])
