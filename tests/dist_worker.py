"""One rank of the 2-process CPU (gloo) DDP training run of
tests/integration/test_ddp.py.

Launch with torchrun (which sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT)::

    python -m torch.distributed.run --standalone --nproc_per_node 2 tests/dist_worker.py \
        --data-root DATA --work-dir WORK --out OUT --iters 4

Each rank trains the tiny DynOPool HRNet through the mmengine Runner under
``MMDistributedDataParallel`` with the GMACs hook on, then saves to ``OUT/rank<r>.pt``
its alphas, feature-map sizes, parameters and buffers plus a per-iteration record of
alphas and sizes; the test compares the ranks.

The CPU setup (mmengine 0.10.7 assumes CUDA for the 'pytorch' launcher):
the gloo process group is initialised here, before the Runner is built, so the Runner's
``init_dist`` (which calls ``torch.cuda.set_device``) is skipped; ``device_ids=None`` in
``model_wrapper_cfg`` stops ``wrap_model`` from passing ``[LOCAL_RANK]`` as a CUDA
device; plain BN is set in backbone and head.
"""
import argparse
import os
import os.path as osp
import sys

import torch
import torch.distributed as dist


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--data-root', required=True)
    parser.add_argument('--work-dir', required=True)
    parser.add_argument('--out', required=True, help='folder for rank<r>.pt')
    parser.add_argument('--iters', type=int, default=4)
    parser.add_argument('--batch-size', type=int, default=2)
    parser.add_argument('--loss-weight', type=float, default=0.5)
    parser.add_argument('--target-ratio', type=float, default=None,
                        help='GMACs budget of the hook (budget mode)')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
    from helpers import (MOVING_SIZES, SYNTH_DP_CFG, RecorderHook, model_state,
                         tiny_config)

    from mmengine.runner import Runner

    import mmseg_dynopool  # noqa: F401  (registers the modules; checkpoint compat)

    dist.init_process_group(backend='gloo', init_method='env://')
    rank = dist.get_rank()

    hook = dict(loss_weight=args.loss_weight)
    if args.target_ratio is not None:
        hook.update(target_ratio=args.target_ratio, lambda_lr=0.5)
    cfg = tiny_config(SYNTH_DP_CFG, args.data_root, args.work_dir, args.iters,
                      batch_size=args.batch_size, **dict(MOVING_SIZES, gmacs_hook=hook))
    cfg.launcher = 'pytorch'
    cfg.model_wrapper_cfg = dict(type='MMDistributedDataParallel', device_ids=None)
    runner = Runner.from_cfg(cfg)
    recorder = RecorderHook()
    runner.register_hook(recorder)
    runner.train()

    from mmengine.model import is_model_wrapper
    state = model_state(runner.model)
    state['wrapped'] = type(runner.model).__name__ if is_model_wrapper(
        runner.model) else None
    state['world_size'] = dist.get_world_size()
    state['records'] = recorder.records
    os.makedirs(args.out, exist_ok=True)
    torch.save(state, osp.join(args.out, f'rank{rank}.pt'))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == '__main__':
    main()
