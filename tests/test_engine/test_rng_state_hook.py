"""RNGStateHook: the random generators travel with the checkpoint (exact --resume).

Unit tests of the hook's parts with stand-in runners; the end-to-end check (a real
``kill -9`` of a training with dropout, then ``--resume``, compared bitwise with the
uninterrupted run) is ``test_resume_after_kill_with_dropout_is_bitwise_exact`` in
tests/integration/test_resume.py.
"""
import io
import logging
import os
import random
import subprocess
import sys
from types import SimpleNamespace
from typing import List

import numpy as np
import pytest
import torch
from mmengine.hooks import CheckpointHook
from mmengine.registry import HOOKS
from mmengine.runner import IterBasedTrainLoop

import mmseg_dynopool  # noqa: F401  (registers the hook)
from mmseg_dynopool.engine.hooks import RNGStateHook
from mmseg_dynopool.engine.hooks import rng_state_hook as hook_module


def _draw() -> List[float]:
    """One number from each generator the hook covers."""
    return [float(torch.rand(1)), float(np.random.rand()), random.random(),
            float(np.random.randn())]


def _runner(resume: bool, loop=None) -> SimpleNamespace:
    logger = logging.getLogger(f'rng_test_{id(loop)}_{resume}')
    return SimpleNamespace(_resume=resume, logger=logger, train_loop=loop)


class _CountingLoop:
    """Anything that is not an IterBasedTrainLoop: restored at before_train."""
    iter = 5


def _iter_loop(replay: int, items) -> IterBasedTrainLoop:
    """An IterBasedTrainLoop shell at iteration ``replay`` (only what the hook uses)."""
    loop = IterBasedTrainLoop.__new__(IterBasedTrainLoop)
    loop._iter = replay
    loop.dataloader_iterator = items
    return loop


def test_registered_in_mmengine_hooks():
    assert HOOKS.get('RNGStateHook') is RNGStateHook


def test_state_round_trip_restores_every_generator_and_loads_weights_only(tmp_path):
    np.random.randn()  # leaves a cached gaussian in numpy's state: must survive too
    state = hook_module.get_rng_state()
    expected = _draw()
    path = tmp_path / 'rng.pth'
    torch.save(dict(rng_state=state), path)
    # Tensors and plain values only: torch's default weights_only load, no allow-list.
    loaded = torch.load(path, weights_only=True)['rng_state']
    _draw()
    assert hook_module.set_rng_state(loaded) == []
    assert _draw() == expected


def test_saves_under_rng_state_and_restores_on_resume_only():
    hook = RNGStateHook()
    checkpoint = {}
    hook.before_save_checkpoint(_runner(False), checkpoint)
    saved = checkpoint['rng_state']
    assert saved['world_size'] == 1 and len(saved['ranks']) == 1
    expected = _draw()

    # load_from (not a resume): a new run keeps its own seeded generators.
    hook.after_load_checkpoint(_runner(False), checkpoint)
    hook.before_train(_runner(False, _CountingLoop()))
    assert _draw() != expected

    # --resume with a loop that does not replay batches: restored before training.
    runner = _runner(True, _CountingLoop())
    hook.after_load_checkpoint(runner, checkpoint)
    hook.before_train(runner)
    assert _draw() == expected


def test_iter_loop_restores_after_the_replay_right_before_the_next_batch():
    """IterBasedTrainLoop redraws the trained batches first; with num_workers=0 their
    augmentations consume numpy's generator. The state must come back after them."""
    def batches():
        while True:  # a "pipeline" whose augmentation uses the global generators
            yield (float(np.random.rand()), random.random(), float(torch.rand(1)))

    hook = RNGStateHook()
    checkpoint = {}
    hook.before_save_checkpoint(_runner(False), checkpoint)
    # What the uninterrupted run draws for its next batch, from the saved state.
    straight = next(batches())
    _draw()

    inner = batches()
    loop = _iter_loop(3, inner)
    runner = _runner(True, loop)
    hook.after_load_checkpoint(runner, checkpoint)
    hook.before_train(runner)
    assert loop.dataloader_iterator is not inner
    replayed = [next(loop.dataloader_iterator) for _ in range(3)]
    assert straight not in replayed
    assert next(loop.dataloader_iterator) == straight
    assert loop.dataloader_iterator is inner  # the loop has its own iterator back


def _training_runner(iteration: int, interval: int) -> SimpleNamespace:
    """What the hook reads of a runner in after_train_iter / before_save_checkpoint."""
    runner = _runner(False, SimpleNamespace(max_iters=100))
    runner.iter, runner.max_iters = iteration, 100
    runner.hooks = [CheckpointHook(interval=interval, by_epoch=False)]
    return runner


def _logged(runner) -> io.StringIO:
    stream = io.StringIO()
    runner.logger.addHandler(logging.StreamHandler(stream))
    return stream


def test_each_rank_restores_its_own_state(monkeypatch):
    """Under DDP mmengine saves on rank 0 only: the ranks' states are gathered in the
    after_train_iter in which CheckpointHook saves, and on resume rank r takes entry r.
    A different world size keeps the seeded state, with a warning."""
    states = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
        states.append(hook_module.get_rng_state())
    hook_module.set_rng_state(states[1])
    expected_rank1 = _draw()

    gathers = []
    monkeypatch.setattr(hook_module.dist, 'get_world_size', lambda: 2)
    monkeypatch.setattr(hook_module.dist, 'all_gather_object',
                        lambda obj: gathers.append(obj) or list(states))
    hook = RNGStateHook()
    hook.after_train_iter(_training_runner(2, interval=4), 2)  # no checkpoint: no gather
    assert not gathers
    runner = _training_runner(3, interval=4)
    hook.after_train_iter(runner, 3)
    assert len(gathers) == 1
    checkpoint = {}
    hook.before_save_checkpoint(runner, checkpoint)  # rank 0 only, in mmengine
    assert checkpoint['rng_state']['world_size'] == 2

    monkeypatch.setattr(hook_module.dist, 'get_rank', lambda: 1)
    runner = _runner(True, _CountingLoop())
    hook.after_load_checkpoint(runner, checkpoint)
    hook.before_train(runner)
    assert _draw() == expected_rank1

    monkeypatch.setattr(hook_module.dist, 'get_world_size', lambda: 3)
    runner = _runner(True, _CountingLoop())
    stream = _logged(runner)
    hook.after_load_checkpoint(runner, checkpoint)
    hook.before_train(runner)
    assert 'states of 2 processes, this run has 3' in stream.getvalue()
    assert hook._pending is None


def test_checkpoint_saved_outside_checkpoint_hook_under_ddp_warns(monkeypatch):
    """No gathered states: rank 0's is saved, the others resume seeded, with warnings."""
    monkeypatch.setattr(hook_module.dist, 'get_world_size', lambda: 2)
    hook = RNGStateHook()
    runner = _training_runner(5, interval=4)
    saving = _logged(runner)
    checkpoint = {}
    hook.before_save_checkpoint(runner, checkpoint)
    assert checkpoint['rng_state']['ranks'][1] is None
    assert 'only rank 0 will resume its own' in saving.getvalue()
    monkeypatch.setattr(hook_module.dist, 'get_rank', lambda: 1)
    runner = _runner(True, _CountingLoop())
    resuming = _logged(runner)
    hook.after_load_checkpoint(runner, checkpoint)
    assert 'no random generator state of rank 1' in resuming.getvalue()
    assert hook._pending is None


def test_checkpoint_saved_during_validation_holds_the_training_state():
    """save_best writes inside validation, whose data iterator has drawn from torch's
    generator; training continues from the state validation started from."""
    hook = RNGStateHook()
    state = hook_module.get_rng_state()
    expected = _draw()
    hook_module.set_rng_state(state)
    hook.before_val(None)
    iter(torch.utils.data.DataLoader([0, 1]))
    checkpoint = {}
    hook.before_save_checkpoint(_training_runner(7, interval=4), checkpoint)
    hook.after_val(None)
    _draw()
    runner = _runner(True, _CountingLoop())
    hook.after_load_checkpoint(runner, checkpoint)
    hook.before_train(runner)
    assert _draw() == expected


def test_checkpoint_without_states_warns_on_resume():
    runner = _runner(True, _CountingLoop())
    stream = _logged(runner)
    RNGStateHook().after_load_checkpoint(runner, {'meta': {}})
    assert 'holds no random generator states' in stream.getvalue()


@pytest.mark.parametrize('persistent', [True, False])
def test_epoch_loop_with_persistent_workers_warns_on_resume(persistent):
    """Their generators live in the worker processes and restart from the seed."""
    loop = SimpleNamespace(iter=8, dataloader=SimpleNamespace(
        num_workers=2, persistent_workers=persistent))
    hook = RNGStateHook()
    checkpoint = {}
    hook.before_save_checkpoint(_runner(False), checkpoint)
    stream = io.StringIO()
    runner = _runner(True, loop)
    runner.logger.addHandler(logging.StreamHandler(stream))
    hook.after_load_checkpoint(runner, checkpoint)
    hook.before_train(runner)
    assert ('persistent_workers=False' in stream.getvalue()) == persistent


DIST_WORKER = """
import logging, random, sys
from types import SimpleNamespace
import numpy as np, torch, torch.distributed as tdist
tdist.init_process_group('gloo')
from mmengine.dist import get_rank
from mmseg_dynopool.engine.hooks import RNGStateHook
rank = get_rank()
torch.manual_seed(10 + rank); np.random.seed(10 + rank); random.seed(10 + rank)
from mmengine.hooks import CheckpointHook
runner = SimpleNamespace(iter=3, max_iters=8, logger=logging.getLogger('w'),
                         hooks=[CheckpointHook(interval=4, by_epoch=False)])
hook = RNGStateHook()
hook.after_train_iter(runner, 3)  # every rank: the collective before CheckpointHook
expected = [float(torch.rand(1)), float(np.random.rand()), random.random()]
if rank == 0:  # Runner.save_checkpoint is master_only: rank 0 saves, all resume
    checkpoint = {}
    hook.before_save_checkpoint(runner, checkpoint)
    torch.save(checkpoint, sys.argv[1])
tdist.barrier()
loaded = torch.load(sys.argv[1], weights_only=True)
runner = SimpleNamespace(_resume=True, logger=logging.getLogger('w'),
                         train_loop=SimpleNamespace(iter=0))
hook.after_load_checkpoint(runner, loaded)
hook.before_train(runner)
got = [float(torch.rand(1)), float(np.random.rand()), random.random()]
torch.save(dict(expected=expected, got=got, world=loaded['rng_state']['world_size']),
           sys.argv[2] + f'.{rank}')
"""


@pytest.mark.slow
def test_two_gloo_ranks_each_restore_their_own_state(tmp_path):
    script = tmp_path / 'worker.py'
    script.write_text(DIST_WORKER)
    out = str(tmp_path / 'result')
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    proc = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone',
                           '--nproc_per_node', '2', str(script),
                           str(tmp_path / 'ckpt.pth'), out],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = [torch.load(f'{out}.{rank}') for rank in (0, 1)]
    assert all(r['world'] == 2 for r in results)
    assert results[0]['expected'] != results[1]['expected']  # the ranks differ
    for r in results:
        assert r['got'] == r['expected']


def test_validation_leaves_the_generators_as_it_found_them():
    """Validation builds a data iterator (one draw from torch's generator for the worker
    seed) after the checkpoint of the same iteration is saved."""
    hook = RNGStateHook()
    state = hook_module.get_rng_state()
    expected = _draw()
    hook_module.set_rng_state(state)
    hook.before_val(None)
    iter(torch.utils.data.DataLoader([0, 1]))  # what ValLoop.run does to the generator
    _draw()
    hook.after_val(None)
    assert _draw() == expected


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_cuda_generator_is_saved_once_cuda_is_used():
    torch.zeros(1, device='cuda')
    state = hook_module.get_rng_state()
    assert 'cuda' in state
    expected = float(torch.rand(1, device='cuda'))
    hook_module.set_rng_state(state)
    assert float(torch.rand(1, device='cuda')) == expected
