"""The report, plot and freeze/ONNX tools on models whose learnable resizing layers are
ShapeAdaptor or DiffStride (``pool_cfg=dict(type=...)``), not DynOPool.

Expected values are recomputed here from the model (forward hooks, mmengine's
FlopAnalyzer, each layer's ``count_macs``), not read from the code under test.
"""
import json
import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.analysis import FlopAnalyzer

import mmseg_dynopool  # noqa: F401  (registers the modules)
from mmseg_dynopool import resizing_layers
from mmseg_dynopool.analysis import model_report
from mmseg_dynopool.deploy import (FrozenResizingLayer, UnsupportedExportError,
                                   export_onnx, freeze_dynopool, load_frozen, run_onnx,
                                   save_frozen)
from mmseg_dynopool.models.build import build_model_from_config
from mmseg_dynopool.layers import DiffStride, ShapeAdaptor

from ..conftest import load_tool, resizing_layer_cfg

SHAPE = (64, 72)
KINDS = ['ShapeAdaptor', 'DiffStride']




def _move(model):
    """Move every layer away from its initial ratio (different per layer)."""
    with torch.no_grad():
        for i, (_, layer) in enumerate(resizing_layers(model)):
            if isinstance(layer, ShapeAdaptor):
                layer.alpha.fill_(ShapeAdaptor.alpha_for_ratio(0.6 + 0.1 * i))
            else:
                layer.stride.copy_(torch.tensor([1.6 + 0.2 * i, 2.4 - 0.1 * i]))
    return model


def _build(kind, tmp_path):
    cfg = resizing_layer_cfg(kind, tmp_path)
    model = build_model_from_config(cfg)
    layers = resizing_layers(model)
    assert len(layers) == 3
    assert all(type(m).__name__ == kind for _, m in layers)
    return cfg, model


def _independent_report(model, shape):
    """Per-layer calls (C, H, W) and mmengine's counts, measured here."""
    calls = {}
    handles = [m.register_forward_hook(
        lambda mod, a, o, n=n: calls.setdefault(n, []).append(tuple(a[0].shape[1:])))
        for n, m in resizing_layers(model)]
    x = torch.zeros(1, 3, *shape)
    model.eval()
    with torch.no_grad():
        model(x)
        for h in handles:
            h.remove()
        analyzer = FlopAnalyzer(model, (x, ))
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        total, by_module = analyzer.total(), analyzer.by_module()
    layers = dict(resizing_layers(model))
    own = {n: sum(layers[n].count_macs((1, ) + c) for c in cs) / 1e9
           for n, cs in calls.items()}
    counted = (total - sum(by_module.get(n, 0) for n in layers)) / 1e9
    return own, counted


@pytest.mark.parametrize('kind', KINDS)
def test_report_counts_each_layer_by_its_own_rule(kind, tmp_path):
    cfg, model = _build(kind, tmp_path)
    _move(model)
    report = model_report(model, SHAPE)
    own, counted = _independent_report(model, SHAPE)
    assert report['dynopool_gmacs'] == pytest.approx(sum(own.values()), rel=1e-12)
    assert report['dynopool_gmacs'] > 0
    assert report['gmacs'] == pytest.approx(counted + sum(own.values()), rel=1e-9)
    param = 'alpha' if kind == 'ShapeAdaptor' else 'stride'
    for entry, (name, layer) in zip(report['layers'], resizing_layers(model)):
        assert entry['name'] == name and entry['type'] == kind
        assert entry['gmacs'] == pytest.approx(own[name], rel=1e-12)
        assert entry['size'] == list(layer.last_size)
        assert entry['ratio'] == pytest.approx(layer.ratio.tolist(), abs=1e-6)
        assert entry[param] == pytest.approx(
            getattr(layer, param).detach().tolist(), abs=1e-6)
    # The command-line tool on the config + a checkpoint of the moved model.
    ckpt = str(tmp_path / 'moved.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), ckpt)
    out = tmp_path / 'report.json'
    argv = [cfg, '--checkpoint', ckpt, '--shape', *map(str, SHAPE), '--json', str(out)]
    assert load_tool('tools/analysis/dynopool_report.py').main(argv) == 0
    written = json.loads(out.read_text())
    assert written['gmacs'] == pytest.approx(report['gmacs'], rel=1e-9)
    assert [e['size'] for e in written['layers']] == [e['size'] for e in report['layers']]


@pytest.mark.parametrize('kind', KINDS)
def test_plot_tool_draws_the_learned_and_initial_sizes(kind, tmp_path):
    cfg, model = _build(kind, tmp_path)
    initial = model_report(model, SHAPE)
    _move(model)
    learned = model_report(model, SHAPE)
    work_dir = tmp_path / 'run'
    work_dir.mkdir()
    (work_dir / osp.basename(cfg)).write_text(open(cfg).read())
    torch.save(dict(state_dict=model.state_dict(), meta=dict()),
               str(work_dir / 'iter_1.pth'))
    out = tmp_path / 'plots'
    argv = [str(work_dir), '--shape', *map(str, SHAPE), '--out', str(out)]
    assert load_tool('tools/analysis/plot_dynopool.py').main(argv) == 0
    assert (out / 'feature_maps.png').is_file()
    rows = json.loads((out / 'feature_maps.json').read_text())['rows']
    assert rows[0]['sizes'] == [e['size'] for e in initial['layers']]
    assert rows[1]['sizes'] == [e['size'] for e in learned['layers']]
    assert rows[0]['sizes'] != rows[1]['sizes']
    assert rows[1]['gmacs'] == pytest.approx(learned['gmacs'], rel=1e-9)


@pytest.mark.parametrize('kind', KINDS)
def test_freeze_replaces_each_layer_by_a_fixed_size_one(kind, tmp_path):
    cfg, model = _build(kind, tmp_path)
    _move(model)
    frozen = freeze_dynopool(model, SHAPE)
    assert not resizing_layers(frozen)
    stand_ins = [m for m in frozen.modules() if isinstance(m, FrozenResizingLayer)]
    assert len(stand_ins) == 3 and all(m.kind == kind for m in stand_ins)
    assert not any(p.requires_grad for p in frozen.parameters())
    x = torch.randn(1, 3, *SHAPE, generator=torch.Generator().manual_seed(0))
    model.eval()
    with torch.no_grad():
        ref, got = model(x, mode='tensor'), frozen(x, mode='tensor')
    assert (ref - got).abs().max().item() <= 1e-5
    with pytest.raises(RuntimeError, match='frozen for input size'):
        with torch.no_grad():
            frozen(torch.zeros(1, 3, SHAPE[0] + 8, SHAPE[1]), mode='tensor')
    # Save + load (from the config: the layers are rebuilt at their initial ratios, then
    # replaced and their learned parameters restored from the state dict).
    save_frozen(frozen, str(tmp_path / 'frozen'), input_shape=SHAPE)
    reloaded = load_frozen(str(tmp_path / 'frozen'), config=cfg)
    with torch.no_grad():
        again = reloaded(x, mode='tensor')
    assert (again - ref).abs().max().item() <= 1e-5
    # ONNX: ShapeAdaptor exports; DiffStride's FFT cannot, with a clear error.
    onnx_path = str(tmp_path / 'model.onnx')
    argv = [cfg, _save(model, tmp_path), '--shape', *map(str, SHAPE),
            '--out', str(tmp_path / 'tool')]
    tool = load_tool('tools/deployment/freeze_dynopool.py')
    if kind == 'ShapeAdaptor':
        export_onnx(frozen, SHAPE, onnx_path)
        assert np.abs(run_onnx(onnx_path, x)[0] - ref.numpy()).max() <= 1e-4
        assert tool.main(argv) == 0
    else:
        with pytest.raises(UnsupportedExportError, match='DiffStride.*torch.fft'):
            export_onnx(frozen, SHAPE, onnx_path)
        assert tool.main(argv) == 1
        assert tool.main(argv + ['--no-onnx']) == 0
    report = json.loads((tmp_path / 'tool' / 'freeze_report.json').read_text())
    assert report['passed']
    assert {e['type'] for e in report['pools'].values()} == {kind}


def _save(model, tmp_path):
    path = str(tmp_path / 'trained.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), path)
    return path


def test_layer_types_are_what_the_tools_find():
    from mmseg_dynopool.layers import RESIZING_LAYERS, DynOPool
    assert set(RESIZING_LAYERS) == {DynOPool, ShapeAdaptor, DiffStride}
