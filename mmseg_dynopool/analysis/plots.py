"""Plots of DynOPool runs: training curves, feature maps (Figure 5.1), trade-off (5.2).

* :func:`plot_training_curves`: ``r_h``/``r_w`` of every resizing layer and the GMACs
  estimate over the training iterations, from the scalars ``DynOPoolGMACsHook`` logs
  (read and stitched across runs by :mod:`mmseg_dynopool.analysis.workdir`).
* :func:`plot_feature_maps`: the feature-map sizes of several models drawn to scale as
  rectangles, one row per model, in the manner of the thesis' Figure 5.1.
* :func:`plot_work_dir`: both for a training work dir (last checkpoint + the config
  mmengine dumped there), next to a baseline work dir or the initial state
  (``tools/analysis/plot_dynopool.py``).
* :func:`plot_tradeoff`: accuracy vs GMACs curves of a trade-off sweep
  (:mod:`mmseg_dynopool.analysis.tradeoff`).

The per-class DropClass plot lives with the DropClass report
(:func:`mmseg_dynopool.dropclass.report.plot_gain_vs_frequency`). matplotlib is
imported lazily with the Agg backend (no display needed).
"""
import copy
import importlib
import json
import os
import os.path as osp
import warnings
from typing import Dict, List, Optional, Sequence, Tuple

from .workdir import (Series, dumped_config, dynopool_series, find_scalar_logs,
                      last_miou, latest_checkpoint, load_scalar_logs)

#: Names of the files :func:`plot_work_dir` writes.
TRAINING_PNG = 'dynopool_training.png'
FEATURE_MAPS_PNG = 'feature_maps.png'
FEATURE_MAPS_JSON = 'feature_maps.json'

# (key in tradeoff.json, legend, marker, what the point annotation shows)
CURVES = (('human', 'human-designed (input scale)', 'o', 'scale'),
          ('dynopool', 'DynOPool (GMACs budget)', 's', 'target'),
          ('shapeadaptor', 'Shape Adaptor (GMACs budget)', '^', 'target'),
          ('diffstride', 'DiffStride (GMACs budget)', 'D', 'target'))


def _pyplot():
    import matplotlib
    matplotlib.use('Agg', force=True)
    import matplotlib.pyplot as plt
    return plt


def plot_training_curves(scalars: Dict[str, Series], path: str,
                         title: Optional[str] = None) -> str:
    """PNG of every DynOPool's ``r_h`` (solid) and ``r_w`` (dashed) and of the GMACs
    estimate over training iterations. Raises ValueError without DynOPool ratios."""
    ratios, gmacs = dynopool_series(scalars)
    if not ratios:
        raise ValueError('no DynOPool ratios (<pool>/r_h, <pool>/r_w) among the logged '
                         'scalars; was DynOPoolGMACsHook in custom_hooks?')
    plt = _pyplot()
    fig, (ax_r, ax_g) = plt.subplots(2, 1, figsize=(8, 7), sharex=True,
                                     gridspec_kw=dict(height_ratios=(3, 2)))
    colors = plt.get_cmap('tab10')
    for i, (pool, axes) in enumerate(sorted(ratios.items())):
        label = pool  # the full module name: pools' last components often coincide
        for axis, style in (('r_h', '-'), ('r_w', '--')):
            if axis in axes:
                its, vals = axes[axis]
                ax_r.plot(its, vals, style, color=colors(i % 10), marker='.',
                          markersize=3, label=f'{label} {axis}')
    ax_r.set_ylabel('ratio r (output / input size)')
    ax_r.grid(alpha=0.3)
    ax_r.legend(fontsize=6, ncol=2)
    if gmacs is not None:
        ax_g.plot(*gmacs, color='black', marker='.', markersize=3)
    else:
        ax_g.text(0.5, 0.5, 'GMACs not logged', ha='center', va='center',
                  transform=ax_g.transAxes)
    ax_g.set_ylabel('GMACs estimate (Eq. 4.7)')
    ax_g.set_xlabel('iteration')
    ax_g.grid(alpha=0.3)
    fig.suptitle(title or 'DynOPool ratios and GMACs during training')
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches='tight')
    plt.close(fig)
    return path


def plot_feature_maps(rows: Sequence[Dict], path: str,
                      input_shape: Optional[Sequence[int]] = None,
                      title: Optional[str] = None) -> str:
    """Feature-map sizes drawn to scale as rectangles (thesis Figure 5.1), one row per
    model.

    Each row is ``{"name": str, "sizes": [[h, w], ...], "labels": [str, ...] (optional),
    "gmacs": float (optional), "miou": float (optional)}``. The input image (if
    ``input_shape`` is given) is drawn first, in grey; every rectangle is ``w`` wide and
    ``h`` tall in the same units, labelled ``h x w``.
    """
    if not rows or not any(r['sizes'] for r in rows):
        raise ValueError('plot_feature_maps: no feature-map sizes to draw')
    plt = _pyplot()
    from matplotlib.patches import Rectangle
    colors = plt.get_cmap('viridis')
    gap = 0.25 * max(max(max(s) for s in r['sizes']) for r in rows if r['sizes'])
    all_h = [s[0] for r in rows for s in r['sizes']] + (
        [input_shape[0]] if input_shape else [])
    row_h = max(all_h) + 2.2 * gap

    def boxes_of(r: Dict) -> List[Tuple[str, Tuple[int, int], object]]:
        boxes = [('input', tuple(input_shape), '0.85')] if input_shape else []
        labels = r.get('labels') or [f'#{i + 1}' for i in range(len(r['sizes']))]
        n = max(len(r['sizes']), 1)
        for i, (size, label) in enumerate(zip(r['sizes'], labels)):
            boxes.append((label, tuple(size), colors(0.15 + 0.7 * i / max(n - 1, 1))))
        return boxes

    # Columns aligned across rows (level i of every model under each other), each as
    # wide as its widest map.
    all_boxes = [boxes_of(r) for r in rows]
    n_cols = max(len(b) for b in all_boxes)
    col_w = [max((b[i][1][1] for b in all_boxes if i < len(b)), default=0)
             for i in range(n_cols)]
    total_w = sum(col_w) + gap * (n_cols + 1)
    fig_w = 11.0
    fig_h = max(2.5, fig_w * row_h * len(rows) / total_w + 0.8)
    fig, ax = plt.subplots(figsize=(fig_w, min(fig_h, 20)))
    for k, (r, boxes) in enumerate(zip(rows, all_boxes)):
        base = (len(rows) - 1 - k) * row_h + 1.2 * gap
        x = gap
        for col, (label, (h, w), color) in enumerate(boxes):
            left = x + (col_w[col] - w) / 2
            ax.add_patch(Rectangle((left, base), w, h, facecolor=color,
                                   edgecolor='black', linewidth=0.8, alpha=0.9))
            ax.text(left + w / 2, base - 0.15 * gap, f'{h}x{w}', ha='center', va='top',
                    fontsize=7)
            ax.text(left + w / 2, base + h + 0.1 * gap, label, ha='center',
                    va='bottom', fontsize=7)
            x += col_w[col] + gap
        caption = r['name']
        if r.get('gmacs') is not None:
            caption += f"\n{r['gmacs']:.4g} GMACs"
        if r.get('miou') is not None:
            caption += f"\nmIoU {r['miou']:.2f}"
        tallest = max(size[0] for _, size, _c in boxes)
        ax.text(-0.5 * gap, base + tallest / 2, caption, ha='right', va='center',
                fontsize=9)
    ax.set_xlim(-0.1 * total_w, total_w)
    ax.set_ylim(0, row_h * len(rows))
    ax.set_aspect('equal')
    ax.axis('off')
    ax.set_title(title or 'Feature-map sizes (to scale)')
    fig.tight_layout()
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches='tight')
    plt.close(fig)
    return path


def _feature_row(name: str, report: Dict) -> Dict:
    """A :func:`plot_feature_maps` row from a :func:`model_report` dict: the HRNet
    levels when there are any, else the DynOPool output sizes."""
    if report['levels']:
        labels = ['stem'] + [f'stream{i}' for i in range(1, len(report['levels']))]
        sizes = report['levels']
    else:
        labels = [layer['name'].split('.')[-1] for layer in report['layers']]
        sizes = [layer['size'] for layer in report['layers']]
    return dict(name=name, sizes=[list(s) for s in sizes], labels=labels,
                gmacs=report['gmacs'])


def plot_work_dir(work_dir: str, baseline: Optional[str] = None,
                  out_dir: Optional[str] = None,
                  shape: Optional[Sequence[int]] = None) -> List[str]:
    """Write the training-curve and feature-map plots of a DynOPool training run.

    Args:
        work_dir: the DynOPool run (mmengine work dir).
        baseline: work dir of the human-designed model; without it the DynOPool
            model's initial state is the reference row.
        out_dir: where the PNGs go. Default: ``WORK_DIR/plots``.
        shape: input ``(H, W)``; default: the training crop size of the dumped config.

    Returns the written paths (training curves are skipped, with a message, when the run
    logged no DynOPool scalars).
    """
    from mmengine.config import Config

    from ..layers import resizing_layers
    from ..models.build import build_model_from_config
    from ..models.cost import reset_to_initial_ratios
    from .report import model_report, training_input_shape

    out_dir = out_dir or osp.join(work_dir, 'plots')
    os.makedirs(out_dir, exist_ok=True)
    written: List[str] = []

    logs = find_scalar_logs(work_dir)
    if not logs:
        print(f'plot_dynopool: no DynOPool scalars under {work_dir}/*/vis_data; '
              'skipping the training curves')
    else:
        written.append(plot_training_curves(
            load_scalar_logs(logs), osp.join(out_dir, TRAINING_PNG),
            title=f'DynOPool training: {osp.basename(osp.abspath(work_dir))}'))

    config = dumped_config(work_dir)
    cfg = Config.fromfile(config)
    shape = tuple(shape) if shape else training_input_shape(cfg)
    if shape is None:
        raise ValueError(f'cannot tell the training input size from {config}; pass '
                         '--shape H W')
    checkpoint = latest_checkpoint(work_dir)
    model = build_model_from_config(cfg, checkpoint)
    if not resizing_layers(model):
        raise ValueError(f'the model of {config} has no DynOPool layer')
    learned = _feature_row('DynOPool (learned)', model_report(model, shape))
    learned['miou'] = last_miou(work_dir)
    if baseline:
        base_model = build_model_from_config(dumped_config(baseline),
                                             latest_checkpoint(baseline))
        reference = _feature_row('Human', model_report(base_model, shape))
        reference['miou'] = last_miou(baseline)
    else:
        initial = copy.deepcopy(model)
        reset_to_initial_ratios(initial)
        reference = _feature_row('Initial', model_report(initial, shape))
    rows = [reference, learned]
    written.append(plot_feature_maps(
        rows, osp.join(out_dir, FEATURE_MAPS_PNG), input_shape=shape,
        title=f'Feature-map sizes at {shape[0]}x{shape[1]} (to scale)'))
    with open(osp.join(out_dir, FEATURE_MAPS_JSON), 'w') as f:
        json.dump(dict(input_shape=list(shape), checkpoint=checkpoint,
                       baseline=baseline, rows=rows), f, indent=2)
    written.append(osp.join(out_dir, FEATURE_MAPS_JSON))
    return written


def plot_tradeoff(data: Dict, path: str, title: Optional[str] = None) -> str:
    """Metric vs GMACs of every curve of a trade-off sweep (``tradeoff.json``'s
    content, :func:`mmseg_dynopool.analysis.tradeoff.tradeoff`); error bars = standard
    deviation over seeds. Returns ``path``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for key, label, marker, tag in CURVES:
        points = sorted(data.get(key, []), key=lambda p: p['gmacs'])
        if not points:
            continue
        ax.errorbar([p['gmacs'] for p in points], [p['metric'] for p in points],
                    yerr=[p['metric_std'] for p in points],
                    xerr=[p.get('gmacs_std', 0.0) for p in points], marker=marker,
                    capsize=3, label=label)
        for p in points:
            ax.annotate(f"{p[tag]:g}", (p['gmacs'], p['metric']), fontsize=7,
                        textcoords='offset points', xytext=(3, 3))
    metric_key = next((p['metric_key'] for k, *_ in CURVES for p in data.get(k, [])),
                      'metric')
    ax.set_xlabel('GMACs per image')
    ax.set_ylabel(metric_key)
    ax.set_title(title or 'Accuracy vs GMACs (Figure 5.2)')
    ax.grid(alpha=0.3)
    ax.legend()
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches='tight')
    plt.close(fig)
    return path


# Work-dir readers that lived here until they got a module of their own; the ones
# plot_work_dir uses are imported above and resolve without a warning.
_MOVED_TO_WORKDIR = ('find_scalar_log', 'load_scalar_log')


def __getattr__(name: str):
    if name in _MOVED_TO_WORKDIR:
        warnings.warn(f'mmseg_dynopool.analysis.plots.{name} moved to '
                      f'mmseg_dynopool.analysis.workdir.{name}', DeprecationWarning,
                      stacklevel=2)
        return getattr(importlib.import_module('mmseg_dynopool.analysis.workdir'), name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


__all__ = ['CURVES', 'FEATURE_MAPS_JSON', 'FEATURE_MAPS_PNG', 'TRAINING_PNG',
           'plot_feature_maps', 'plot_tradeoff', 'plot_training_curves',
           'plot_work_dir']
