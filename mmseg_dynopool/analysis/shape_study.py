"""Controlled study of the receptive-field shape DynOPool learns (thesis chapter 3, issue 23).

Question: does DynOPool keep fewer samples along the axis in which the data is
stretched (the thesis' information-asymmetry premise), whatever the crop's aspect
ratio, or does the crop's longer axis bias the learned shape (the task gradient on the
alpha of an axis grows with the axis' length, docs/information_asymmetry.md)?

One run: the main job's tiny DynOPool HRNet (``configs/synthetic/``) on the built-in
synthetic PascalVOC data, held to the human model's cost (``DynOPoolGMACsHook``
budget mode, ``target_ratio=1.0``: lambda follows the budget, the sizes are projected
onto it and frozen after 90 % of training), alpha at the configs' 0.1x learning rate.
Only the *shape* of each feature map is free. Cells: crops {1:1, 1:2, 1:3} of similar
pixel count (the crop's long axis is W) x data {stretched 3x along the crop's long
axis (W), stretched 3x along its short axis (H), not stretched}, the same images in
every cell, also at validation. The human HRNet is trained on the same cells for the
mIoU at the same cost. Runs are sequential and in-process (one training at a time).

The data: every image (72-112 px a side) is enlarged ``base`` (1.3x) times on both
axes, then the stretched axis another 3x (the control: sqrt(3) on both axes, the same
area), so that the crops are mostly covered by image rather than padding.
"""
import json
import math
import os
import os.path as osp
import statistics
import time
from typing import Dict, Iterable, List, Sequence, Tuple

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DP_CONFIG = osp.join(REPO, 'configs', 'synthetic',
                     'fcn_dynopool-s-hr18tiny_1xb8-600it_synthvoc-96x96.py')
HUMAN_CONFIG = osp.join(REPO, 'configs', 'synthetic',
                        'fcn_hr18tiny_1xb8-600it_synthvoc-96x96.py')
# (H, W) crops of ~4.1-4.3k pixels (the main job's 96x96 has 9.2k; smaller so that the
# study fits a shared 2-core machine); the long axis is W.
CROPS: Dict[str, Tuple[int, int]] = {'1:1': (64, 64), '1:2': (46, 92), '1:3': (38, 114)}


def crop_size(name: str) -> Tuple[int, int]:
    """``(H, W)`` of a crop named in :data:`CROPS` (``'1:3'``) or written ``'HxW'``
    (``'56x168'``)."""
    if name in CROPS:
        return CROPS[name]
    parts = name.lower().split('x')
    if len(parts) == 2 and all(p.isdigit() and int(p) > 0 for p in parts):
        return int(parts[0]), int(parts[1])
    raise ValueError(f'crop must be one of {sorted(CROPS)} or HxW (e.g. 56x168), '
                     f'got {name!r}')
# Stretch of the data: 'long' along the crop's long axis (W), 'short' along H, 'none'
# the control. (For the square crop 'long' is W and 'short' H by this convention.)
DATA = ('long', 'short', 'none')
STRETCH = 3.0
LEVELS = ('stem', 'stream1', 'stream2', 'stream3', 'stream4')
AXIS_GRADS = ('exact', 'per_query')


def data_scale(data: str, base: float = 1.3) -> Tuple[float, float]:
    """``(fw, fh)`` of mmcv's ``Resize(scale_factor=..., keep_ratio=False)`` for ``data``."""
    if data == 'long':
        return (base * STRETCH, base)
    if data == 'short':
        return (base, base * STRETCH)
    if data == 'none':
        return (base * math.sqrt(STRETCH), base * math.sqrt(STRETCH))
    raise ValueError(f'data must be one of {DATA}, got {data!r}')


def study_config(model: str, crop: Tuple[int, int], data: str, seed: int, iters: int,
                 batch_size: int, data_root: str, work_dir: str,
                 axis_grad: str = 'exact', alpha_lr_mult: float = 0.1,
                 base: float = 1.3):
    """The mmengine config of one run (``model``: ``'dynopool'`` or ``'human'``)."""
    from mmengine.config import Config
    if model not in ('dynopool', 'human'):
        raise ValueError(f"model must be 'dynopool' or 'human', got {model!r}")
    if axis_grad not in AXIS_GRADS:
        raise ValueError(f'axis_grad must be one of {AXIS_GRADS}, got {axis_grad!r}')
    if iters < 1 or batch_size < 1:
        raise ValueError(f'iters and batch_size must be >= 1, got {iters}, {batch_size}')
    cfg = Config.fromfile(DP_CONFIG if model == 'dynopool' else HUMAN_CONFIG)
    cfg.work_dir = work_dir
    crop = tuple(crop)
    plain_bn = dict(type='BN', requires_grad=True)
    cfg.model.backbone.norm_cfg = dict(plain_bn)
    cfg.model.decode_head.norm_cfg = dict(plain_bn)
    cfg.model.data_preprocessor.size = crop
    scale = data_scale(data, base)
    resize = dict(type='Resize', scale_factor=scale, keep_ratio=False)
    cfg.train_dataloader.dataset.pipeline = [
        dict(type='LoadImageFromFile'), dict(type='LoadAnnotations'), resize,
        dict(type='RandomCrop', crop_size=crop, cat_max_ratio=0.9),
        # mmcv's Pad takes (w, h); crop sizes here are (h, w).
        dict(type='RandomFlip', prob=0.5), dict(type='Pad', size=(crop[1], crop[0])),
        dict(type='PackSegInputs')]
    cfg.val_dataloader.dataset.pipeline = [
        dict(type='LoadImageFromFile'), dict(resize), dict(type='LoadAnnotations'),
        dict(type='PackSegInputs')]
    cfg.test_dataloader = cfg.val_dataloader
    cfg.train_dataloader.batch_size = batch_size
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[key].num_workers = 0
        cfg[key].persistent_workers = False
        cfg[key].dataset.data_root = data_root
    # Validation once, after the last iteration.
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters, val_interval=iters)
    cfg.param_scheduler = [dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0,
                                end=iters, by_epoch=False)]
    cfg.default_hooks.logger.interval = max(1, iters // 4)
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=-1)
    cfg.randomness = dict(seed=seed)
    cfg.env_cfg = dict(cudnn_benchmark=False,
                       mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
                       dist_cfg=dict(backend='gloo'))
    cfg.log_level = 'WARNING'
    if model == 'dynopool':
        cfg.optim_wrapper.paramwise_cfg = dict(
            custom_keys={'.alpha': dict(lr_mult=alpha_lr_mult, decay_mult=0.0)})
        # DP-S's hook (lambda from 0, sizes projected and held after 90 %), with the
        # human model's cost as the budget.
        hook = dict(cfg.custom_hooks[0])
        hook.pop('target_gmacs', None)
        hook.update(loss_weight=0.0, target_ratio=1.0)
        cfg.custom_hooks = [hook]
        if axis_grad != 'exact':
            cfg.model.backbone.pool_cfg = dict(cfg.model.backbone.pool_cfg,
                                               axis_grad=axis_grad)
    return cfg


def run_one(cfg) -> Dict:
    """Train ``cfg`` in this process (mmengine validates once, after the last
    iteration); the final ratios, the stem's size at the crop, and the mIoU."""
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner

    from mmseg_dynopool import resizing_layers
    start = time.time()
    DefaultScope._instance_dict.clear()
    runner = Runner.from_cfg(cfg)
    runner.train()
    pools = resizing_layers(runner.model)
    ratios = {name.split('_')[-1]: [float(v) for v in pool.ratio.tolist()]
              for name, pool in pools}
    crop = tuple(cfg.model.data_preprocessor.size)
    stem = [list(pool.host_output_size(crop)) for name, pool in pools
            if name.endswith('stem')]
    miou = float(runner.message_hub.get_scalar('val/mIoU').current())
    DefaultScope._instance_dict.clear()
    return dict(ratios=ratios, stem_size=stem[0] if stem else None, miou=miou,
                total_s=round(time.time() - start, 1))


def run_key(model: str, axis_grad: str, crop: str, data: str, seed: int) -> str:
    grad = axis_grad if model == 'dynopool' else '-'
    return f'{model}|{grad}|{crop}|{data}|{seed}'


def load_results(path: str) -> Dict[str, Dict]:
    if not osp.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)['runs']


def save_results(path: str, runs: Dict[str, Dict], meta: Dict) -> None:
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(dict(meta=meta, runs=runs), f, indent=1, sort_keys=True)
    os.replace(tmp, path)


def _mean_std(values: Sequence[float]) -> Tuple[float, float]:
    values = list(values)
    mean = statistics.mean(values)
    std = statistics.stdev(values) if len(values) > 1 else float('nan')
    return mean, std


def summarise(runs: Dict[str, Dict]) -> List[Dict]:
    """One row per (model, axis_grad, crop, data): mean and std over seeds of every
    level's ``r_h``, ``r_w`` and ``log(r_w / r_h)``, and of the mIoU."""
    groups: Dict[Tuple[str, str, str, str], List[Dict]] = {}
    for key, res in runs.items():
        model, grad, crop, data, _ = key.split('|')
        groups.setdefault((model, grad, crop, data), []).append(res)
    rows = []
    for (model, grad, crop, data), results in sorted(groups.items()):
        row = dict(model=model, axis_grad=grad, crop=crop, data=data, n=len(results),
                   miou=_mean_std(r['miou'] for r in results),
                   total_s=statistics.mean(r['total_s'] for r in results), levels={})
        for level in LEVELS:
            have = [r['ratios'][level] for r in results if level in r.get('ratios', {})]
            if not have:
                continue
            row['levels'][level] = dict(
                r_h=_mean_std(v[0] for v in have), r_w=_mean_std(v[1] for v in have),
                log_w_over_h=_mean_std(math.log(v[1] / v[0]) for v in have))
        rows.append(row)
    return rows


def _pm(ms: Tuple[float, float], digits: int = 3) -> str:
    mean, std = ms
    return f'{mean:.{digits}f} ± {std:.{digits}f}' if std == std else f'{mean:.{digits}f}'


def markdown(rows: List[Dict], levels: Iterable[str] = ('stem', 'stream1', 'stream2')
             ) -> str:
    """The study's table: per DynOPool cell ``r_h / r_w`` per level (mean over seeds,
    ± std), ``r_w / r_h`` at the stem, mIoU; the human model's mIoU of the same cell."""
    levels = list(levels)
    human = {(r['crop'], r['data']): r for r in rows if r['model'] == 'human'}
    head = (['crop H×W', 'data', 'α grad', 'seeds'] +
            [f'{lv} r_h / r_w' for lv in levels] +
            ['stem log(r_w/r_h)', 'mIoU', 'human mIoU'])
    lines = ['| ' + ' | '.join(head) + ' |', '|' + ' --- |' * len(head)]
    for r in rows:
        if r['model'] != 'dynopool':
            continue
        crop = CROPS.get(r['crop'])
        cells = [f"{r['crop']} ({crop[0]}×{crop[1]})" if crop else r['crop'].replace('x', '×'),
                 r['data'],
                 r['axis_grad'], str(r['n'])]
        for lv in levels:
            lvl = r['levels'].get(lv)
            cells.append(f"{_pm(lvl['r_h'])} / {_pm(lvl['r_w'])}" if lvl else '-')
        stem = r['levels'].get('stem')
        cells.append(_pm(stem['log_w_over_h'], 2) if stem else '-')
        cells.append(_pm(r['miou'], 1))
        h = human.get((r['crop'], r['data']))
        cells.append(f"{_pm(h['miou'], 1)} (n={h['n']})" if h else '-')
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def run_study(out_dir: str, data_root: str, seeds: Sequence[int], iters: int,
              batch_size: int, crops: Sequence[str], datas: Sequence[str],
              axis_grads: Sequence[str], human_seeds: Sequence[int] = (),
              threads: int = 1,
              base: float = 1.3, log=print) -> List[Dict]:
    """Run every missing run of the grid (sequentially), saving after each run to
    ``out_dir/results.json``; return :func:`summarise`'s rows. The loop order puts
    seeds outermost within each model/gradient setting, so that an interrupted study
    has every cell at the same number of seeds."""
    import torch
    torch.set_num_threads(threads)
    os.makedirs(out_dir, exist_ok=True)
    path = osp.join(out_dir, 'results.json')
    runs = load_results(path)
    meta = dict(iters=iters, batch_size=batch_size, base=base, stretch=STRETCH,
                crops={c: crop_size(c) for c in crops}, data_root=data_root,
                threads=threads, alpha_lr_mult=0.1, target_ratio=1.0)
    # Seed by seed, every setting of a seed before the next seed, so that an
    # interrupted study has comparable cells; the human runs last.
    plan = [('dynopool', grad, seed, crop, data) for seed in seeds for grad in axis_grads
            for crop in crops for data in datas]
    plan += [('human', '-', seed, crop, data) for seed in human_seeds for crop in crops
             for data in datas]
    for model, grad, seed, crop, data in plan:
        key = run_key(model, grad, crop, data, seed)
        if key in runs:
            continue
        work_dir = osp.join(out_dir, key.replace('|', '_').replace(':', '-'))
        cfg = study_config(model, crop_size(crop), data, seed, iters, batch_size,
                           data_root, work_dir,
                           axis_grad=grad if model == 'dynopool' else 'exact',
                           base=base)
        res = run_one(cfg)
        runs[key] = res
        save_results(path, runs, meta)
        stem = res['ratios'].get('stem')
        log(f'{key}: stem r_h/r_w '
            f"{'%.3f / %.3f' % tuple(stem) if stem else '-'}  "
            f"mIoU {res['miou']:.2f}  ({res['total_s']:.0f} s)")
    rows = summarise(runs)
    with open(osp.join(out_dir, 'results.md'), 'w') as f:
        f.write(markdown(rows))
    return rows


def ensure_data(data_root: str, num_train: int = 120, num_val: int = 30) -> None:
    """Write the main job's synthetic data (seed 0) to ``data_root`` unless present."""
    from mmseg_dynopool.datasets import write_synthetic_voc
    if not osp.isdir(osp.join(data_root, 'JPEGImages')):
        write_synthetic_voc(data_root, num_train, num_val, seed=0)
