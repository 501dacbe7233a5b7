"""One training iteration of the main job's tiny HRNet: human vs DynOPool, side by side.

Builds both segmentors, their optimizers and the DynOPool config's custom hooks (the GMACs
loss of Eq. 4.8) from ``configs/synthetic/`` - the models ``make main`` trains with mmseg's
``tools/train.py`` - and times what one iteration of mmengine's ``IterBasedTrainLoop``
does besides loading data: the hooks' ``before_train_iter``, ``model.train_step`` (data
preprocessor, forward, losses, backward, optimizer step) and ``after_train_iter``. Both
models get the same synthetic batch (8 images of 96x96, 21 classes, as the config) and
are timed alternately, so machine load affects both alike. Prints the medians, the ratio
of the medians and the median of the per-pair ratios, for wall-clock and for process CPU
time (less sensitive to other processes on a shared machine). alpha's learning rate is
set to 0 (its gradient is still computed and the step still guards it), so DynOPool stays
at the human model's sizes: the ratio is the layer's overhead at equal GMACs.

    python tools/benchmark/bench_train_iter.py [--iters 30] [--warmup 5] [--threads N]
"""
import argparse
import os.path as osp
import statistics
import sys
import time
from types import SimpleNamespace
from typing import Callable, List, Optional, Tuple

import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
HUMAN_CFG = osp.join(REPO, 'configs', 'synthetic',
                     'fcn_hr18tiny_1xb8-600it_synthvoc-96x96.py')
DYNOPOOL_CFG = osp.join(REPO, 'configs', 'synthetic',
                        'fcn_dynopool-hr18tiny_1xb8-600it_synthvoc-96x96.py')


def synthetic_batch(batch: int, size: int, num_classes: int, seed: int = 0) -> dict:
    """A batch as mmseg's ``PackSegInputs`` + ``pseudo_collate`` produce it: uint8 images
    and ``SegDataSample``s with blob labels."""
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for _ in range(batch):
        labels = torch.randint(0, num_classes, (1, size // 8, size // 8), generator=g)
        labels = labels.repeat_interleave(8, 1).repeat_interleave(8, 2)
        img = torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8)
        inputs.append(img)
        meta = dict(img_shape=(size, size), ori_shape=(size, size), pad_shape=(size, size))
        sample = SegDataSample(metainfo=meta)
        sample.gt_sem_seg = PixelData(data=labels)
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def _plain_bn(node):
    """SyncBN -> BN in a config tree (one process, no process group)."""
    if isinstance(node, dict):
        if node.get('type') == 'SyncBN':
            node['type'] = 'BN'
        for value in node.values():
            _plain_bn(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _plain_bn(value)


def build(config: str, batch: dict, iters: int, device: str = 'cpu',
          cfg_options: Optional[dict] = None):
    """Model, optimizer wrapper and custom hooks of ``config`` (SyncBN replaced by BN,
    ``cfg_options`` merged); returns ``(one_iteration, model)``."""
    from mmengine.config import Config
    from mmengine.logging import MessageHub, MMLogger
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import HOOKS
    from mmseg.registry import MODELS
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    _plain_bn(cfg.model)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.to(device)
    model.train()
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    hooks = [HOOKS.build(dict(h)) for h in cfg.get('custom_hooks', [])]
    runner = SimpleNamespace(model=model, optim_wrapper=optim_wrapper, iter=0,
                             max_iters=iters, logger=MMLogger.get_current_instance(),
                             message_hub=MessageHub.get_current_instance())
    for hook in hooks:
        hook.before_train(runner)

    def one_iteration(i: int) -> None:
        runner.iter = i
        for hook in hooks:
            hook.before_train_iter(runner, batch_idx=i, data_batch=batch)
        model.train()  # what IterBasedTrainLoop.run does before every iteration
        outputs = model.train_step(batch, optim_wrapper)
        for hook in hooks:
            hook.after_train_iter(runner, batch_idx=i, data_batch=batch, outputs=outputs)

    return one_iteration, model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--iters', type=int, default=30, help='timed iterations per model')
    parser.add_argument('--warmup', type=int, default=5)
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--size', type=int, default=96)
    parser.add_argument('--threads', type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sys.path.insert(0, REPO)
    import mmseg_dynopool  # noqa: F401  (registers the DynOPool modules and hooks)
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=True)

    batch = synthetic_batch(args.batch, args.size, 21)
    total = args.warmup + args.iters
    # alpha keeps its gradient and the step still guards it (one size refresh per step,
    # as in training), but a zero learning rate keeps the sizes at initialisation (the
    # human model's), so both models do the same convolutions while timed.
    frozen_sizes = {'optim_wrapper.paramwise_cfg.custom_keys':
                    {'.alpha': dict(lr_mult=0.0, decay_mult=0.0)}}
    runs: List[Tuple[str, Callable[[int], None]]] = [
        ('human HRNet (tiny)', build(HUMAN_CFG, batch, total)[0]),
        ('DynOPool HRNet (tiny)', build(DYNOPOOL_CFG, batch, total,
                                        cfg_options=frozen_sizes)[0])]
    wall = {name: [] for name, _ in runs}
    cpu = {name: [] for name, _ in runs}
    for i in range(total):
        for name, step in runs:
            t0, c0 = time.perf_counter(), time.process_time()
            step(i)
            if i >= args.warmup:
                wall[name].append(time.perf_counter() - t0)
                cpu[name].append(time.process_time() - c0)
    print(f'one training iteration, batch {args.batch}x3x{args.size}x{args.size}, '
          f'threads={torch.get_num_threads()}, {args.iters} iterations after '
          f'{args.warmup} warm-up (medians)')
    (h_name, _), (d_name, _) = runs
    for label, times in (('wall-clock', wall), ('process CPU time', cpu)):
        h, d = times[h_name], times[d_name]
        pair = statistics.median(b / a for a, b in zip(h, d))
        print(f'{label}:')
        print(f'  {h_name:<24}{statistics.median(h) * 1e3:9.1f} ms / iteration')
        print(f'  {d_name:<24}{statistics.median(d) * 1e3:9.1f} ms / iteration')
        print(f'  ratio DynOPool / human: {statistics.median(d) / statistics.median(h):.3f} '
              f'(median of per-iteration ratios {pair:.3f})')


if __name__ == '__main__':
    main()
