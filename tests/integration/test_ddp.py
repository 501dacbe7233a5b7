"""Distributed training of a learnable-size network (docs/reliability.md, section 1):
2 CPU processes (gloo) under MMDistributedDataParallel with the GMACs hook in budget
mode end with identical alphas, feature-map sizes, lambdas and parameters at every
iteration.

The ranks run tests/dist_worker.py through torchrun ``--standalone``, which picks a free
rendezvous port itself, so two runs (xdist workers) never share one.
"""
import os.path as osp
import sys

import pytest
import torch

from ..helpers import REPO, max_abs_diff, start, wait_ok


@pytest.mark.slow
def test_ddp_two_cpu_ranks_stay_identical(voc_root, tmp_path):
    """2 processes, gloo, MMDistributedDataParallel, 4 iterations, GMACs hook in budget
    mode (0.7 x the initial GMACs, lambda starting at 0.5): one run checks the
    parameters and the dual ascent's lambda, which every rank must take from rank 0."""
    out = tmp_path / 'ranks'
    log = str(tmp_path / 'torchrun.log')
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone',
           '--nproc_per_node', '2', osp.join(REPO, 'tests', 'dist_worker.py'),
           '--data-root', voc_root, '--work-dir', str(tmp_path / 'work'),
           '--out', str(out), '--iters', '4', '--loss-weight', '0.5',
           '--target-ratio', '0.7']
    text = wait_ok(start(cmd, log), log)
    assert 'Distributed training: True' in text
    r0 = torch.load(out / 'rank0.pt', weights_only=False)
    r1 = torch.load(out / 'rank1.pt', weights_only=False)
    assert r0['wrapped'] == 'MMDistributedDataParallel' and r0['world_size'] == 2

    # The ranks saw different data (so equality below comes from the gradient
    # all-reduce, not from identical inputs), with the GMACs loss on both ...
    assert len(r0['records']) == len(r1['records']) == 4
    assert r0['records'][0]['losses']['decode.loss_ce'] != \
        r1['records'][0]['losses']['decode.loss_ce']
    assert all(rec['losses']['loss_gmacs'] > 0 for rec in r0['records'] + r1['records'])
    # ... and the alphas moved (GMACs loss + task loss), so the check is not vacuous.
    init = torch.full((2, ), 2.0, dtype=torch.float64)
    assert max(float((a - init).abs().max()) for a in r0['alpha'].values()) > 1e-3
    assert len({tuple(rec['size'].values()) for rec in r0['records']}) > 1

    # The budget's lambda moved (0.5 at the start) and is the same on both ranks.
    lam0 = [rec['lam'] for rec in r0['records']]
    assert lam0 == [rec['lam'] for rec in r1['records']]
    assert len(set(lam0)) > 1 and min(lam0) > 0
    # Identical alphas and sizes at every iteration, identical weights at the end.
    for a, b in zip(r0['records'], r1['records']):
        assert a['iter'] == b['iter']
        assert max_abs_diff(a['alpha'], b['alpha']) == 0.0, a['iter']
        assert a['size'] == b['size'], a['iter']
        assert a['in_size'] == b['in_size'], a['iter']
    assert max_abs_diff(r0['alpha'], r1['alpha']) == 0.0
    assert r0['size'] == r1['size']
    assert max_abs_diff(r0['params'], r1['params']) == 0.0
    # Buffers: DynOPool's own and BN's batch counters are identical; BN running stats
    # are rank-local with plain BN (see docs/distributed.md: use SyncBN on GPUs).
    pool_and_counters = [k for k in r0['buffers'] if 'dynopool' in k or
                         k.endswith('num_batches_tracked')]
    assert pool_and_counters
    assert max_abs_diff({k: r0['buffers'][k] for k in pool_and_counters},
                        {k: r1['buffers'][k] for k in pool_and_counters}) == 0.0
