"""Helpers shared by the analysis tests (tests/test_analysis/) and the analysis tool
tests (tests/test_tools/test_analysis_tools.py): fabricated work dirs, independent
measurements of a model, PNG checks."""
import json

import numpy as np
import torch
from mmengine.analysis import FlopAnalyzer

from mmseg_dynopool.layers import resizing_layers


def write_run(work_dir, stamp, iters, offset, extra=''):
    """A fabricated mmengine run folder: training lines for ``iters`` (ratios
    ``offset + iter / 100``) and optionally a validation line."""
    folder = work_dir / stamp / 'vis_data'
    folder.mkdir(parents=True)
    rows = [dict(iter=i, step=i, gmacs=offset + i,
                 **{'backbone.stage2.dynopool/r_h': offset + i / 100,
                    'backbone.stage2.dynopool/r_w': offset + i / 100,
                    'backbone.stage3.dynopool/r_h': offset + i / 200,
                    'backbone.stage3.dynopool/r_w': offset + i / 200})
            for i in iters]
    (folder / 'scalars.json').write_text(
        '\n'.join(json.dumps(r) for r in rows) + '\n' + extra)


def captured_figures(monkeypatch):
    """Figures the plot functions close (the last step after saving), kept open."""
    import matplotlib.pyplot as plt
    figures = []
    monkeypatch.setattr(plt, 'close', figures.append)
    return figures


def png_ok(path):
    """A valid PNG with real content (not blank, several colours)."""
    import matplotlib.image as mpimg
    with open(path, 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    img = mpimg.imread(path)
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 200
    rgb = img[..., :3].reshape(-1, 3)
    non_white = (rgb < 0.95).any(axis=1).mean()
    colours = len(np.unique((rgb * 255).astype(np.uint8), axis=0))
    assert non_white > 0.01 and colours > 20, (path, non_white, colours)


def measure(model, shape, flops=True):
    """Independent measurement: pool sizes, per-call DynOPool MACs, mmengine's count."""
    calls = []
    handles = [p.register_forward_hook(
        lambda m, a, o: calls.append((a[0].shape[1], o.shape[-2], o.shape[-1])))
        for _, p in resizing_layers(model)]
    x = torch.zeros(1, 3, *shape)
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    pool_macs = sum(4 * c * (2 * h) * (2 * w) for c, h, w in calls) / 1e9
    sizes = {n: tuple(p.last_size) for n, p in resizing_layers(model)}
    if not flops:
        return sizes, pool_macs, None, len(calls)
    with torch.no_grad():
        analyzer = FlopAnalyzer(model, (x, ))
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        counted = analyzer.total() / 1e9
    return sizes, pool_macs, counted, len(calls)
