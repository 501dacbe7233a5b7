"""Reading an mmengine work dir: logged scalars, checkpoints, the dumped config, metrics.

An mmengine Runner leaves in ``WORK_DIR``:

* one folder per start of a run, ``WORK_DIR/<YYYYMMDD_HHMMSS>/``, whose
  ``vis_data/scalars.json`` (``LocalVisBackend``) has one JSON object per logged
  iteration (training lines carry ``iter``, validation lines only ``step``);
  ``DynOPoolGMACsHook`` logs ``<layer name>/r_h``, ``/r_w`` and ``gmacs`` there;
* checkpoints ``iter_*.pth`` / ``epoch_*.pth`` and a ``last_checkpoint`` pointer;
* the config it ran, dumped as ``WORK_DIR/<config name>.py``.

Plain file reading, no model building and no plotting: the plots
(:mod:`mmseg_dynopool.analysis.plots`) and the training runs
(:mod:`mmseg_dynopool.analysis.runs`) read work dirs through these functions.
"""
import glob
import json
import os.path as osp
import re
from typing import Dict, List, Optional, Sequence, Tuple

#: ``(iterations, values)`` of one logged scalar.
Series = Tuple[List[int], List[float]]

_RATIO_KEY = re.compile(r'^(?:train/)?(?P<pool>.+)/(?P<axis>r_h|r_w)$')
_GMACS_KEYS = ('gmacs', 'train/gmacs')


def _read_jsonl(path: str) -> List[dict]:
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short by an interrupted run
    return rows


def _has_dynopool_scalars(rows: Sequence[dict]) -> bool:
    return any('iter' in r and any(_RATIO_KEY.match(k) for k in r) for r in rows)


def _run_key(path: str) -> Tuple[str, float]:
    """Time order of ``WORK_DIR/<timestamp>/vis_data/scalars.json`` files: mmengine names
    the run folders ``YYYYMMDD_HHMMSS``, so the name orders them (then the mtime)."""
    return osp.basename(osp.dirname(osp.dirname(path))), osp.getmtime(path)


def find_scalar_logs(work_dir: str) -> List[str]:
    """Every ``WORK_DIR/<timestamp>/vis_data/scalars.json`` with DynOPool ratios, oldest
    run first (a run interrupted and resumed has one folder per start). Runs without
    DynOPool scalars (e.g. a test-only run) are skipped."""
    candidates = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')),
                        key=_run_key)
    return [p for p in candidates if _has_dynopool_scalars(_read_jsonl(p))]


def find_scalar_log(work_dir: str) -> Optional[str]:
    """Newest ``WORK_DIR/<timestamp>/vis_data/scalars.json`` with DynOPool ratios (None
    if there is none); :func:`find_scalar_logs` gives all of them."""
    logs = find_scalar_logs(work_dir)
    return logs[-1] if logs else None


def _training_rows(path: str) -> Dict[int, Dict[str, float]]:
    """``{iteration: {key: value}}`` of the training lines (those with ``iter``) of one
    ``scalars.json``; a later line of the same iteration overrides an earlier one (the
    GMACs hook writes the projected model's values as a line of its own)."""
    rows: Dict[int, Dict[str, float]] = {}
    for row in _read_jsonl(path):
        if 'iter' not in row:
            continue  # validation lines carry 'step' only
        values = rows.setdefault(int(row['iter']), {})
        for key, value in row.items():
            if key in ('iter', 'step', 'epoch') or isinstance(value, bool) or \
                    not isinstance(value, (int, float)):
                continue
            values[key] = float(value)
    return rows


def load_scalar_logs(paths: Sequence[str]) -> Dict[str, Series]:
    """``{key: (iterations, values)}`` of several runs of one work dir stitched in the
    order given (oldest first, as :func:`find_scalar_logs` returns them).

    A later run takes over from its first logged iteration: a resumed run continues the
    curve, and where it restarts from an earlier checkpoint than the previous run had
    reached (or is a new run from iteration 1), its iterations override the earlier
    run's and the earlier run's later iterations, from a trajectory that was abandoned,
    are dropped.
    """
    merged: Dict[int, Dict[str, float]] = {}
    for path in paths:
        rows = _training_rows(path)
        if not rows:
            continue
        first = min(rows)
        merged = {it: vals for it, vals in merged.items() if it < first}
        merged.update(rows)
    series: Dict[str, Series] = {}
    for it in sorted(merged):
        for key, value in merged[it].items():
            its, vals = series.setdefault(key, ([], []))
            its.append(it)
            vals.append(value)
    return series


def load_scalar_log(path: str) -> Dict[str, Series]:
    """``{key: (iterations, values)}`` from the training lines (those with ``iter``)
    of one mmengine ``scalars.json`` (one value per iteration: the last line's)."""
    return load_scalar_logs([path])


def dynopool_series(scalars: Dict[str, Series]
                    ) -> Tuple[Dict[str, Dict[str, Series]], Optional[Series]]:
    """Split logged scalars into ``{layer: {'r_h': series, 'r_w': series}}`` and the
    GMACs series (None if it was not logged)."""
    ratios: Dict[str, Dict[str, Series]] = {}
    for key, values in scalars.items():
        match = _RATIO_KEY.match(key)
        if match:
            ratios.setdefault(match.group('pool'), {})[match.group('axis')] = values
    gmacs = next((scalars[k] for k in _GMACS_KEYS if k in scalars), None)
    return ratios, gmacs


def latest_checkpoint(work_dir: str) -> str:
    """The checkpoint named in ``WORK_DIR/last_checkpoint`` (resolved as written, or
    inside ``work_dir`` if the run was moved), else the newest ``iter_*/epoch_*.pth``.

    Raises FileNotFoundError when there is none."""
    last = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(last):
        with open(last) as f:
            path = f.read().strip()
        for candidate in (path, osp.join(work_dir, osp.basename(path))):
            if path and osp.isfile(candidate):
                return candidate
    found = glob.glob(osp.join(work_dir, 'iter_*.pth')) + \
        glob.glob(osp.join(work_dir, 'epoch_*.pth'))
    if not found:
        raise FileNotFoundError(f'no checkpoint in {work_dir} (no last_checkpoint file, '
                                'no iter_*.pth / epoch_*.pth)')
    return max(found, key=lambda p: (int(re.findall(r'(\d+)\.pth$', p)[0]),
                                     osp.getmtime(p)))


def dumped_config(work_dir: str) -> str:
    """The config mmengine dumped into ``WORK_DIR`` (``WORK_DIR/<config name>.py``);
    the newest if there are several. Raises FileNotFoundError when there is none."""
    found = [p for p in glob.glob(osp.join(work_dir, '*.py')) if osp.isfile(p)]
    if not found:
        raise FileNotFoundError(f'no dumped config (*.py) in {work_dir}')
    return max(found, key=osp.getmtime)


def last_miou(work_dir: str) -> Optional[float]:
    """The last ``mIoU`` logged in the newest run of ``work_dir`` that logged one
    (training runs, or test runs one folder down as ``run_main_job.py`` puts them in
    ``WORK_DIR/test``); None if never."""
    best: Optional[Tuple[str, float]] = None
    for path in glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')) + \
            glob.glob(osp.join(work_dir, '*', '*', 'vis_data', 'scalars.json')):
        run = osp.basename(osp.dirname(osp.dirname(path)))
        values = [r['mIoU'] for r in _read_jsonl(path) if 'mIoU' in r]
        if values and (best is None or run > best[0]):
            best = (run, float(values[-1]))
    return best[1] if best else None


def final_metric(work_dir: str, key: str) -> float:
    """The last value of ``key`` that mmengine logged in ``WORK_DIR/*/vis_data``.

    Raises ValueError when no run logged it."""
    found = []
    for path in glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    row = json.loads(line)
                    if key in row:
                        found.append((osp.getmtime(path), row.get('step', 0), row[key]))
    if not found:
        raise ValueError(f'no {key!r} logged under {work_dir}/*/vis_data: did the run '
                         'validate (val_interval <= max_iters, a val_evaluator)?')
    return float(max(found, key=lambda t: (t[0], t[1]))[2])


__all__ = ['Series', 'dumped_config', 'dynopool_series', 'final_metric',
           'find_scalar_log', 'find_scalar_logs', 'last_miou', 'latest_checkpoint',
           'load_scalar_log', 'load_scalar_logs']
