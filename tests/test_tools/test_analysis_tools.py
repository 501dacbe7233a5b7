"""The analysis and deployment tools: dynopool_report, plot_dynopool, freeze_dynopool.

The tools run in-process through their ``main(argv)`` (importing mmseg once per test
session instead of once per call). Expected values are recomputed here from the
model itself (forward hooks, mmengine's FlopAnalyzer: ``tests/test_analysis/helpers.py``),
not taken from the library code under test. The library modules behind the tools are
tested in ``tests/test_analysis/``.
"""
import json
import os
import os.path as osp
import uuid

import numpy as np
import onnx
import pytest
import torch

import mmseg_dynopool  # noqa: F401  (registers the modules)
from mmseg_dynopool import DynOPool, resizing_layers
from mmseg_dynopool.analysis.plots import plot_work_dir
from mmseg_dynopool.analysis.report import NoDynOPoolError, dynopool_report
from mmseg_dynopool.analysis.workdir import find_scalar_log, load_scalar_log
from mmseg_dynopool.deploy import (FrozenDynOPool, export_onnx, freeze_dynopool,
                                   load_frozen, run_onnx)
from mmseg_dynopool.models.build import CheckpointMismatchError, build_model_from_config

from ..conftest import REPO, SYNTH_DP_CFG, SYNTH_HUMAN_CFG, load_tool, tiny_config
from ..test_analysis.helpers import captured_figures, measure, png_ok

SHAPE = (64, 80)  # non-square, so a swapped h/w shows
# Moved away from 0.5 (human-equivalent), incl. an upsampling-ish stem and a non-square
# pool, so every size differs from the initial state.
RATIOS = [(0.6, 0.45), (0.55, 0.4), (0.45, 0.6), (0.5, 0.35), (0.7, 0.6)]




def _set_ratios(model, ratios=RATIOS):
    with torch.no_grad():
        for (_, pool), (r_h, r_w) in zip(resizing_layers(model), ratios):
            pool.alpha.copy_(torch.tensor([1.0 / r_h, 1.0 / r_w]))
    return model


def _save_ckpt(model, path):
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), path)
    return str(path)


def _check_schema(report):
    assert isinstance(report['gmacs'], float) and report['gmacs'] > 0
    assert isinstance(report['dynopool_share'], float)
    assert 0 < report['dynopool_share'] < 0.1
    assert isinstance(report['layers'], list) and report['layers']
    for layer in report['layers']:
        assert isinstance(layer['name'], str)
        assert len(layer['size']) == 2 and all(isinstance(v, int) for v in layer['size'])
        assert len(layer['ratio']) == 2 and all(isinstance(v, float)
                                                for v in layer['ratio'])


@pytest.fixture(scope='module')
def report_tool():
    return load_tool('tools/analysis/dynopool_report.py')


def test_report_initial_state(tmp_path, report_tool, capsys):
    out = tmp_path / 'report.json'
    rc = report_tool.main([SYNTH_DP_CFG, '--shape', *map(str, SHAPE), '--json', str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert 'backbone.dynopool_stem' in printed and 'GMACs' in printed
    report = json.loads(out.read_text())
    _check_schema(report)

    model = build_model_from_config(SYNTH_DP_CFG)
    sizes, pool_macs, counted, n_calls = measure(model, SHAPE)
    assert [layer['name'] for layer in report['layers']] == list(sizes)
    for layer in report['layers']:
        assert tuple(layer['size']) == sizes[layer['name']]
        assert layer['ratio'] == [0.5, 0.5]
    # Initial state = the human HRNet's sizes: halving at every level.
    assert [tuple(layer['size']) for layer in report['layers']] == [
        (32, 40), (16, 20), (8, 10), (4, 5), (2, 3)]
    assert report['levels'] == [[32, 40], [16, 20], [8, 10], [4, 5], [2, 3]]
    # GMACs = mmengine's count (which does not see the 'max' DynOPool) + every
    # DynOPool call at 4 MACs per bilinear sample, 4 samples per output cell.
    assert sum(layer['calls'] for layer in report['layers']) == n_calls
    assert report['gmacs'] == pytest.approx(counted + pool_macs, rel=1e-9)
    assert report['dynopool_share'] == pytest.approx(
        pool_macs / (counted + pool_macs), rel=1e-9)
    assert report['params'] == sum(p.numel() for p in model.parameters())


def test_report_checkpoint_changes_sizes(tmp_path, report_tool):
    model = _set_ratios(build_model_from_config(SYNTH_DP_CFG))
    ckpt = _save_ckpt(model, tmp_path / 'moved.pth')
    out = tmp_path / 'report.json'
    rc = report_tool.main([SYNTH_DP_CFG, '--checkpoint', ckpt, '--shape',
                           *map(str, SHAPE), '--json', str(out)])
    assert rc == 0
    report = json.loads(out.read_text())
    _check_schema(report)
    sizes, pool_macs, counted, _ = measure(model, SHAPE)
    got = {layer['name']: tuple(layer['size']) for layer in report['layers']}
    assert got == sizes
    # round(64 * 0.6) x round(80 * 0.45), then each level from the previous one.
    assert got['backbone.dynopool_stem'] == (38, 36)
    assert got['backbone.dynopool_stream1'] == (21, 14)
    initial = [(32, 40), (16, 20), (8, 10), (4, 5), (2, 3)]
    assert sum(s != i for s, i in zip(got.values(), initial)) >= 4
    for layer, (r_h, r_w) in zip(report['layers'], RATIOS):
        assert layer['ratio'] == pytest.approx([r_h, r_w], abs=1e-5)
    assert report['gmacs'] == pytest.approx(counted + pool_macs, rel=1e-9)
    assert report['state'] == 'checkpoint'


def test_report_errors(tmp_path, report_tool, capsys):
    assert report_tool.main([SYNTH_HUMAN_CFG, '--shape', '64', '64']) == 1
    assert 'no DynOPool layer' in capsys.readouterr().err
    with pytest.raises(NoDynOPoolError):
        dynopool_report(SYNTH_HUMAN_CFG, (64, 64))
    human = build_model_from_config(SYNTH_HUMAN_CFG)
    ckpt = _save_ckpt(human, tmp_path / 'human.pth')
    assert report_tool.main([SYNTH_DP_CFG, '--checkpoint', ckpt, '--shape', '64',
                             '64']) == 1
    err = capsys.readouterr().err
    assert 'does not match' in err and 'alpha' in err
    with pytest.raises(CheckpointMismatchError):
        dynopool_report(SYNTH_DP_CFG, (64, 64), checkpoint=ckpt)


def _truncated_checkpoint(tmp_path) -> str:
    whole = _save_ckpt(build_model_from_config(SYNTH_DP_CFG), tmp_path / 'whole.pth')
    data = open(whole, 'rb').read()
    path = str(tmp_path / 'cut.pth')
    with open(path, 'wb') as f:
        f.write(data[:len(data) * 2 // 3])
    return path


def test_tools_report_a_truncated_checkpoint_as_truncated(tmp_path, report_tool, capsys):
    """Not "does not match the model": the file is damaged, and the message says so."""
    cut = _truncated_checkpoint(tmp_path)
    freeze_tool = load_tool('tools/deployment/freeze_dynopool.py')
    runs = (lambda: report_tool.main([SYNTH_DP_CFG, '--checkpoint', cut, '--shape',
                                      '64', '64']),
            lambda: freeze_tool.main([SYNTH_DP_CFG, cut, '--shape', '64', '64',
                                      '--out', str(tmp_path / 'frozen'), '--no-onnx']))
    for run in runs:
        assert run() == 1
        err = capsys.readouterr().err
        assert 'truncated or unreadable' in err and cut in err
        assert 'does not match' not in err and 'Traceback' not in err


@pytest.mark.parametrize('shape', [('0', '5'), ('5', '-1'), ('4', 'x')])
def test_tools_reject_a_bad_shape_with_an_argparse_error(tmp_path, report_tool, capsys,
                                                         shape):
    freeze_tool = load_tool('tools/deployment/freeze_dynopool.py')
    plot_tool = load_tool('tools/analysis/plot_dynopool.py')
    calls = (lambda: report_tool.main([SYNTH_DP_CFG, '--shape', *shape]),
             lambda: freeze_tool.main([SYNTH_DP_CFG, 'ckpt.pth', '--shape', *shape,
                                       '--out', str(tmp_path)]),
             lambda: plot_tool.main([str(tmp_path), '--shape', *shape]))
    for call in calls:
        with pytest.raises(SystemExit) as info:
            call()
        assert info.value.code == 2  # argparse's usage error, before anything is built
        err = capsys.readouterr().err
        assert '--shape' in err and ('must be >= 1' in err or 'not an integer' in err)


def test_freeze_tool_matches_trained_model_and_onnx(tmp_path):
    torch.manual_seed(0)
    model = _set_ratios(build_model_from_config(SYNTH_DP_CFG))
    with torch.no_grad():  # non-trivial BN statistics, as after training
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    ckpt = _save_ckpt(model, tmp_path / 'trained.pth')
    out_dir = tmp_path / 'frozen'
    tool = load_tool('tools/deployment/freeze_dynopool.py')
    rc = tool.main([SYNTH_DP_CFG, ckpt, '--shape', *map(str, SHAPE), '--out',
                    str(out_dir)])
    assert rc == 0
    for name in ('config.py', 'frozen_model.pth', 'frozen_sizes.json', 'model.onnx',
                 'freeze_report.json'):
        assert (out_dir / name).is_file(), name
    tool_report = json.loads((out_dir / 'freeze_report.json').read_text())
    assert tool_report['passed']
    assert tool_report['max_abs_diff']['frozen_vs_trained'] <= 1e-5
    assert tool_report['max_abs_diff']['onnx_vs_trained'] <= 1e-4

    sizes, *_ = measure(model, SHAPE, flops=False)
    frozen = load_frozen(str(out_dir))
    assert not resizing_layers(frozen)
    assert not [n for n, _ in frozen.named_parameters() if 'alpha' in n]
    pools = {n: m for n, m in frozen.named_modules() if isinstance(m, FrozenDynOPool)}
    assert {n: list(m.sizes.values()) for n, m in pools.items()} == {
        n: [s] for n, s in sizes.items()}
    # The HRNet's conv pre-hooks now call the frozen pools.
    hook_pools = [h.pool for m in frozen.modules()
                  for h in m._forward_pre_hooks.values() if hasattr(h, 'pool')]
    assert hook_pools and all(isinstance(p, FrozenDynOPool) for p in hook_pools)
    assert not any(isinstance(p, DynOPool) for p in hook_pools)

    x = torch.randn(2, 3, *SHAPE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(x, mode='tensor')
        got = frozen(x, mode='tensor')
    assert ref.abs().max() > 1e-2  # a meaningful comparison
    diff = (ref - got).abs().max().item()
    assert diff <= 1e-5
    graph = onnx.load(str(out_dir / 'model.onnx'))
    onnx.checker.check_model(graph)
    ops = {node.op_type for node in graph.graph.node}
    assert {'Resize', 'MaxPool', 'Conv'} <= ops
    assert all(node.domain in ('', 'ai.onnx') for node in graph.graph.node)
    onnx_out = run_onnx(str(out_dir / 'model.onnx'), x)[0]
    onnx_diff = float(np.abs(onnx_out - ref.numpy()).max())
    assert onnx_diff <= 1e-4
    print(f'max abs diff frozen vs trained {diff:.3g}, ONNX vs trained {onnx_diff:.3g}')
    with pytest.raises(RuntimeError, match='frozen for input size'):
        frozen(torch.zeros(1, 3, 64, 64), mode='tensor')


def test_freeze_avg_pools_in_memory(tmp_path):
    # frozen_stages: DynOPoolHRNet.train()/eval() then touch every frozen pool's alpha.
    opts = {'model.backbone.dynopool_cfg.aggregation': 'avg',
            'model.backbone.frozen_stages': 1}
    model = _set_ratios(build_model_from_config(SYNTH_DP_CFG, cfg_options=opts),
                        RATIOS[::-1])
    frozen = freeze_dynopool(model, SHAPE)
    frozen.train()
    frozen.eval()
    assert resizing_layers(model)  # the original is untouched
    x = torch.randn(1, 3, *SHAPE, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref, got = model(x, mode='tensor'), frozen(x, mode='tensor')
    assert (ref - got).abs().max().item() <= 1e-5
    path = export_onnx(frozen, SHAPE, str(tmp_path / 'avg.onnx'), dynamic_batch=False)
    assert np.abs(run_onnx(path, x)[0] - ref.numpy()).max() <= 1e-4
    with pytest.raises(ValueError, match='freeze it'):
        export_onnx(model, SHAPE, str(tmp_path / 'live.onnx'))


@pytest.mark.slow
def test_plot_tool_on_trained_run(tmp_path, voc_root, monkeypatch):
    from mmengine.runner import Runner
    work_dir = tmp_path / 'dynopool'
    cfg = tiny_config(SYNTH_DP_CFG, voc_root, str(work_dir), iters=2)
    # No validation (saves time); plots need the scalars and the last checkpoint only.
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    cfg.experiment_name = f'test-tools-{uuid.uuid4().hex}'
    cfg.visualizer.name = cfg.experiment_name
    Runner.from_cfg(cfg).train()

    # A baseline work dir as mmengine leaves it: dumped config, checkpoint, pointer.
    base_dir = tmp_path / 'human'
    base_dir.mkdir()
    base_cfg = tiny_config(SYNTH_HUMAN_CFG, voc_root, str(base_dir))
    base_cfg.dump(str(base_dir / 'fcn_hr18tiny.py'))
    ckpt = _save_ckpt(build_model_from_config(base_cfg), base_dir / 'iter_2.pth')
    (base_dir / 'last_checkpoint').write_text(ckpt)

    out_dir = tmp_path / 'plots'
    plot_tool = load_tool('tools/analysis/plot_dynopool.py')
    assert plot_tool.main([str(work_dir), '--baseline', str(base_dir),
                           '--out', str(out_dir)]) == 0
    png_ok(out_dir / 'dynopool_training.png')
    png_ok(out_dir / 'feature_maps.png')

    fig = json.loads((out_dir / 'feature_maps.json').read_text())
    assert fig['input_shape'] == [64, 64]
    human, learned = fig['rows']
    assert human['name'] == 'Human'
    assert human['sizes'] == [[32, 32], [16, 16], [8, 8], [4, 4], [2, 2]]
    # The learned row is the last checkpoint's model at the training crop size.
    model = build_model_from_config(cfg, str(work_dir / 'iter_2.pth'))
    sizes, *_ = measure(model, (64, 64), flops=False)
    assert learned['sizes'] == [list(s) for s in sizes.values()]
    assert fig['checkpoint'].endswith('iter_2.pth')

    scalars = load_scalar_log(find_scalar_log(str(work_dir)))
    for name in sizes:
        assert scalars[f'{name}/r_h'][0] == [1, 2]
        assert scalars[f'{name}/r_w'][0] == [1, 2]
    assert len(scalars['gmacs'][1]) == 2

    # A later (resumed) run folder of the same work dir continues the curves.
    assert len([d for d in os.listdir(work_dir)
                if osp.isdir(work_dir / d / 'vis_data')]) == 1
    later = work_dir / '29991231_235959' / 'vis_data'
    later.mkdir(parents=True)
    (later / 'scalars.json').write_text('\n'.join(json.dumps(dict(
        {k: v[1][-1] for k, v in scalars.items()}, iter=i, step=i)) for i in (3, 4)))
    figures = captured_figures(monkeypatch)
    plot_work_dir(str(work_dir), out_dir=str(tmp_path / 'plots2'))
    curves = [f for f in figures if f.axes and f.axes[0].get_legend() is not None][0]
    for line in curves.axes[0].get_lines():
        assert list(line.get_xdata()) == [1, 2, 3, 4]
    assert list(curves.axes[1].get_lines()[0].get_xdata()) == [1, 2, 3, 4]
    assert sorted(t.get_text() for t in curves.axes[0].get_legend().get_texts()) == \
        sorted(f'{name} {a}' for name in sizes for a in ('r_h', 'r_w'))


CLS_CFG = osp.join(REPO, 'configs', 'dynopool_cls',
                   'dynopool-s_resnet50_1xb128-250e_cifar100.py')


@pytest.mark.skipif(not osp.isfile(CLS_CFG), reason='no DynOPool classifier config')
def test_classifier_report_and_freeze(tmp_path):
    """mmpretrain ImageClassifier whose pools hang in forward hooks (PoolOutput)."""
    opts = {'model.backbone.depth': 18, 'model.head.in_channels': 512}  # small & quick
    shape = (32, 24)
    model = build_model_from_config(CLS_CFG, cfg_options=opts)
    _set_ratios(model, [(0.45, 0.6), (0.55, 0.5), (0.6, 0.4)])
    ckpt = _save_ckpt(model, tmp_path / 'cls.pth')
    report = dynopool_report(CLS_CFG, shape, checkpoint=ckpt, cfg_options=opts)
    _check_schema(report)
    sizes, pool_macs, counted, _ = measure(model, shape)
    assert {layer['name']: tuple(layer['size']) for layer in report['layers']} == sizes
    assert report['gmacs'] == pytest.approx(counted + pool_macs, rel=1e-9)

    frozen = freeze_dynopool(model, shape)
    assert not resizing_layers(frozen)
    x = torch.randn(2, 3, *shape, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref, got = model(x, mode='tensor'), frozen(x, mode='tensor')
    assert (ref - got).abs().max().item() <= 1e-5
    path = export_onnx(frozen, shape, str(tmp_path / 'cls.onnx'))
    assert np.abs(run_onnx(path, x)[0] - ref.numpy()).max() <= 1e-4
