"""Per-class comparison of a baseline and a DropClass model (downstream: reports only).

The DropClass paper claims its largest gains on under-represented classes. This module
puts numbers on that for a config and two checkpoints:

* :func:`evaluate_per_class_iou`: tests one checkpoint through mmengine's Runner with
  :class:`~mmseg_dynopool.dropclass.metric.PerClassIoUMetric`;
* :func:`build_rows`, :func:`format_table`, :func:`summarize_gains`,
  :func:`plot_gain_vs_frequency`: the table and the PNG;
* :func:`per_class_report`: everything at once (used by
  ``tools/analysis/per_class_report.py``).

Checkpoints are read and loaded with :mod:`mmseg_dynopool.models.build` (safe reading,
the model config mmengine saved, strict loading). The package does not import this
module; import it explicitly.
"""
import copy
import math
import os
import os.path as osp
import time
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
from mmengine.config import Config, ConfigDict

from ..models.build import (checkpoint_state_dict, load_checkpoint_strict,
                            model_cfg_from_checkpoint)
from .metric import dataset_class_frequency


def check_head_matches_checkpoint(model_cfg: Union[dict, ConfigDict],
                                  checkpoint: str) -> None:
    """Raise ValueError if a DropClass head would be given a plain checkpoint or the
    other way round.

    A quick check on the keys, before anything is built or evaluated, with a message
    that says which option fixes it; the evaluation itself loads strictly
    (:func:`~mmseg_dynopool.models.build.load_checkpoint_strict`) and so refuses any
    other mismatch too.
    """
    state = checkpoint_state_dict(checkpoint)
    has_drop = any('suppress_conv' in k for k in state)
    head = model_cfg.get('decode_head', {})
    wants_drop = 'DropClass' in str(head.get('type', '')) if isinstance(head, dict) \
        else False
    if has_drop != wants_drop:
        raise ValueError(
            f'{checkpoint} {"has" if has_drop else "has no"} DropClass weights but the '
            f'model to evaluate it with uses {head.get("type")!r}; pass the config it '
            'was trained with (--baseline-config / --dropclass-config)')


def evaluate_per_class_iou(cfg: Config, checkpoint: str, work_dir: str,
                           model_cfg: Optional[Union[dict, ConfigDict]] = None,
                           tag: str = 'eval') -> Dict[str, float]:
    """Test ``checkpoint`` with ``cfg``'s test dataloader through mmengine's Runner and
    return ``{class name: IoU in %}`` (NaN for classes absent from prediction and
    ground truth).

    The checkpoint is loaded strictly into the Runner's model
    (:func:`~mmseg_dynopool.models.build.load_checkpoint_strict`), not through
    ``load_from``, which would leave weights the checkpoint lacks at random.

    Args:
        cfg: the config giving the test data, pipeline and evaluator settings.
        checkpoint: checkpoint to evaluate.
        work_dir: where the Runner writes its logs.
        model_cfg: model to build instead of ``cfg.model`` (e.g. the one the checkpoint
            was trained with).
        tag: distinguishes the Runner's experiment name.

    Raises:
        CheckpointMismatchError: the checkpoint does not fit the model.
    """
    from mmengine.model import is_model_wrapper
    from mmengine.runner import Runner
    cfg = copy.deepcopy(cfg)
    if model_cfg is not None:
        cfg.model = copy.deepcopy(model_cfg)
    evaluator = cfg.get('test_evaluator')
    if isinstance(evaluator, (list, tuple)):
        evaluator = next((e for e in evaluator if 'IoU' in e.get('type', '')), None)
    evaluator = dict(evaluator or {})
    evaluator.pop('type', None)
    evaluator.pop('iou_metrics', None)
    cfg.test_evaluator = dict(type='PerClassIoUMetric', iou_metrics=['mIoU'], **evaluator)
    cfg.load_from = None
    cfg.resume = False
    cfg.work_dir = work_dir
    name = f'per_class_{tag}_{time.strftime("%Y%m%d_%H%M%S")}_{os.getpid()}'
    cfg.experiment_name = name
    if isinstance(cfg.get('visualizer'), dict):
        cfg.visualizer['name'] = name
    runner = Runner.from_cfg(cfg)
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    load_checkpoint_strict(model, checkpoint, f'the {tag} model')
    metrics = runner.test()
    classes = runner.test_dataloader.dataset.metainfo['classes']
    return {c: float(metrics[f'IoU.{c}']) for c in classes}


@dataclass
class ClassRow:
    """One line of the per-class report (IoUs and gain in %, frequency as a fraction)."""
    name: str
    frequency: float
    iou_baseline: float
    iou_dropclass: float

    @property
    def gain(self) -> float:
        """IoU DropClass minus IoU baseline (NaN if either is NaN)."""
        return self.iou_dropclass - self.iou_baseline


def build_rows(class_names: Sequence[str], frequency: Sequence[float],
               iou_baseline: Union[Sequence[float], Dict[str, float]],
               iou_dropclass: Union[Sequence[float], Dict[str, float]]
               ) -> List[ClassRow]:
    """Rows of the report, in class order; IoUs as sequences or ``{class: IoU}``."""
    def as_list(values):
        if isinstance(values, dict):
            return [values[c] for c in class_names]
        return list(values)

    freq, base, drop = list(frequency), as_list(iou_baseline), as_list(iou_dropclass)
    if not len(class_names) == len(freq) == len(base) == len(drop):
        raise ValueError(f'length mismatch: {len(class_names)} classes, {len(freq)} '
                         f'frequencies, {len(base)} / {len(drop)} IoUs')
    return [ClassRow(str(c), float(f), float(b), float(d))
            for c, f, b, d in zip(class_names, freq, base, drop)]


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 0..n-1, ties sharing their mean rank."""
    ranks = np.empty(len(values), dtype=float)
    ranks[np.argsort(values, kind='mergesort')] = np.arange(len(values), dtype=float)
    for v in np.unique(values):
        tie = values == v
        ranks[tie] = ranks[tie].mean()
    return ranks


def summarize_gains(rows: Sequence[ClassRow]) -> Dict[str, float]:
    """mIoU of both models, mean gain, and mean gain of the rarer / more frequent half
    of the classes (split at the median frequency; NaN IoUs are left out)."""
    valid = [r for r in rows if not (math.isnan(r.iou_baseline)
                                     or math.isnan(r.iou_dropclass))]
    out = {
        'miou_baseline': float(np.nanmean([r.iou_baseline for r in rows]))
        if rows else float('nan'),
        'miou_dropclass': float(np.nanmean([r.iou_dropclass for r in rows]))
        if rows else float('nan'),
        'mean_gain': float(np.mean([r.gain for r in valid])) if valid else float('nan'),
    }
    ordered = sorted(valid, key=lambda r: r.frequency)
    half = len(ordered) // 2
    rare, frequent = ordered[:half], ordered[len(ordered) - half:]
    out['mean_gain_rare_half'] = (float(np.mean([r.gain for r in rare]))
                                  if rare else float('nan'))
    out['mean_gain_frequent_half'] = (float(np.mean([r.gain for r in frequent]))
                                      if frequent else float('nan'))
    if len(valid) >= 3:
        freqs = np.array([r.frequency for r in valid])
        gains = np.array([r.gain for r in valid])
        # Spearman correlation (rank of frequency vs. rank of gain): < 0 means the
        # gains concentrate on rare classes.
        rf, rg = _average_ranks(freqs), _average_ranks(gains)
        out['spearman_freq_gain'] = (float(np.corrcoef(rf, rg)[0, 1])
                                     if rf.std() > 0 and rg.std() > 0 else float('nan'))
    else:
        out['spearman_freq_gain'] = float('nan')
    return out


def format_table(rows: Sequence[ClassRow], sort_by_frequency: bool = True) -> str:
    """Plain-text table: class, frequency (%), IoU baseline, IoU DropClass, gain."""
    ordered = sorted(rows, key=lambda r: r.frequency) if sort_by_frequency else rows
    width = max([len('class')] + [len(r.name) for r in rows])
    header = (f'{"class":<{width}}  {"freq %":>8}  {"IoU base":>8}  '
              f'{"IoU DC":>8}  {"gain":>7}')
    lines = [header, '-' * len(header)]
    for r in ordered:
        lines.append(f'{r.name:<{width}}  {100 * r.frequency:8.3f}  '
                     f'{r.iou_baseline:8.2f}  {r.iou_dropclass:8.2f}  {r.gain:+7.2f}')
    s = summarize_gains(rows)
    lines.append('-' * len(header))
    lines.append(f'{"mIoU":<{width}}  {"":>8}  {s["miou_baseline"]:8.2f}  '
                 f'{s["miou_dropclass"]:8.2f}  '
                 f'{s["miou_dropclass"] - s["miou_baseline"]:+7.2f}')
    lines.append(f'mean gain: rarer half {s["mean_gain_rare_half"]:+.2f}, more frequent '
                 f'half {s["mean_gain_frequent_half"]:+.2f}; Spearman(freq, gain) = '
                 f'{s["spearman_freq_gain"]:.2f}')
    return '\n'.join(lines)


def plot_gain_vs_frequency(rows: Sequence[ClassRow], out_file: str,
                           title: str = 'DropClass: IoU gain vs. class frequency') -> str:
    """Scatter plot (PNG, matplotlib Agg) of each class' IoU gain against its pixel
    frequency (log scale), labelled with class names. Returns ``out_file``."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    pts = [r for r in rows if not math.isnan(r.gain)]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    try:
        freqs = [max(r.frequency, 1e-6) * 100 for r in pts]
        gains = [r.gain for r in pts]
        colors = ['tab:green' if g >= 0 else 'tab:red' for g in gains]
        ax.scatter(freqs, gains, c=colors, s=28, zorder=3)
        for r, x, y in zip(pts, freqs, gains):
            ax.annotate(r.name, (x, y), textcoords='offset points', xytext=(4, 3),
                        fontsize=7)
        ax.axhline(0.0, color='grey', lw=0.8, zorder=1)
        if freqs:
            ax.set_xscale('log')
        ax.set_xlabel('pixel frequency in the training set (%, log scale)')
        ax.set_ylabel('IoU DropClass - IoU baseline (points)')
        ax.set_title(title)
        ax.grid(True, which='both', ls=':', lw=0.5)
        fig.tight_layout()
        out_dir = osp.dirname(osp.abspath(out_file))
        os.makedirs(out_dir, exist_ok=True)
        fig.savefig(out_file, format='png')
    finally:
        plt.close(fig)
    return out_file


def per_class_report(cfg: Config, baseline_checkpoint: str, dropclass_checkpoint: str,
                     out_dir: str,
                     baseline_model: Optional[Union[dict, ConfigDict]] = None,
                     dropclass_model: Optional[Union[dict, ConfigDict]] = None,
                     max_freq_images: Optional[int] = None) -> Dict[str, object]:
    """Frequencies, both models' per-class IoU, the table and the PNG.

    Each checkpoint is evaluated with the model given here, else the model stored in
    the checkpoint (mmengine saves the training config;
    :func:`~mmseg_dynopool.models.build.model_cfg_from_checkpoint`), else
    ``cfg.model``. Writes ``per_class_report.txt``, ``per_class_report.json`` and
    ``gain_vs_frequency.png`` under ``out_dir`` and returns
    ``{'rows', 'summary', 'table', 'png'}``.

    Raises:
        ValueError: a DropClass checkpoint with a plain model or the other way round
            (before anything is evaluated), or train and test sets that differ in
            their number of classes.
        CheckpointMismatchError: a checkpoint does not fit its model otherwise.
    """
    import json
    os.makedirs(out_dir, exist_ok=True)
    models = {}
    for tag, ckpt, given in (('baseline', baseline_checkpoint, baseline_model),
                             ('dropclass', dropclass_checkpoint, dropclass_model)):
        model = given if given is not None else model_cfg_from_checkpoint(ckpt)
        models[tag] = model
        check_head_matches_checkpoint(model if model is not None else cfg.model, ckpt)
    evaluator = cfg.get('test_evaluator')
    ignore_index = evaluator.get('ignore_index', 255) if isinstance(evaluator, dict) \
        else 255
    # Frequencies first: it is the quick part and fails early on a missing train set.
    freq = dataset_class_frequency(cfg.train_dataloader.dataset, None, ignore_index,
                                   max_freq_images)
    num_classes = len(freq)
    iou_base = evaluate_per_class_iou(cfg, baseline_checkpoint, osp.join(out_dir, 'work'),
                                      models['baseline'], 'baseline')
    iou_drop = evaluate_per_class_iou(cfg, dropclass_checkpoint,
                                      osp.join(out_dir, 'work'), models['dropclass'],
                                      'dropclass')
    class_names = list(iou_base)
    if len(class_names) != num_classes:
        raise ValueError(f'the test set has {len(class_names)} classes, the training '
                         f'set {num_classes}')
    rows = build_rows(class_names, freq, iou_base, iou_drop)
    table = format_table(rows)
    summary = summarize_gains(rows)
    with open(osp.join(out_dir, 'per_class_report.txt'), 'w') as f:
        f.write(table + '\n')
    with open(osp.join(out_dir, 'per_class_report.json'), 'w') as f:
        json.dump({'rows': [dict(asdict(r), gain=r.gain) for r in rows],
                   'summary': summary,
                   'baseline_checkpoint': baseline_checkpoint,
                   'dropclass_checkpoint': dropclass_checkpoint}, f, indent=2)
    png = plot_gain_vs_frequency(rows, osp.join(out_dir, 'gain_vs_frequency.png'))
    return {'rows': rows, 'summary': summary, 'table': table, 'png': png}


__all__ = ['ClassRow', 'build_rows', 'check_head_matches_checkpoint',
           'evaluate_per_class_iou', 'format_table', 'per_class_report',
           'plot_gain_vs_frequency', 'summarize_gains']
