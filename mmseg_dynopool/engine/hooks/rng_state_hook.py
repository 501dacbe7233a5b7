"""Save the random number generators with every checkpoint, restore them on ``--resume``.

mmengine 0.10.7 checkpoints hold the model, optimizer, schedulers and message hub, but
not the state of the global random number generators. A resumed run therefore draws
other dropout masks (and, with ``num_workers=0``, other random augmentations) than the
run it continues, and ends elsewhere. :class:`RNGStateHook` closes that gap; see
docs/reliability.md ("Exact resume") for what it covers and its limits.
"""
import random
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from mmengine import dist
from mmengine.hooks import CheckpointHook, Hook
from mmengine.registry import HOOKS
from mmengine.runner import IterBasedTrainLoop

CKPT_KEY = 'rng_state'


def get_rng_state() -> Dict[str, Any]:
    """This process's generator states: torch CPU, torch CUDA (current device, once CUDA
    is in use), numpy's global ``RandomState`` and Python's ``random``.

    Only tensors and plain Python values, so a checkpoint holding them still loads with
    ``torch.load(weights_only=True)`` without allowing any more globals.
    """
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: Dict[str, Any] = dict(
        torch=torch.get_rng_state(),
        numpy=dict(kind=str(kind), keys=torch.from_numpy(keys.astype(np.int64)),
                   pos=int(pos), has_gauss=int(has_gauss),
                   cached_gaussian=float(cached)),
        python=random.getstate())
    # An uninitialised CUDA context has never drawn a number; initialising one just to
    # read its seed would cost memory on CPU-only runs.
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: Dict[str, Any]) -> List[str]:
    """Restore what :func:`get_rng_state` returned; returns the generators it could not
    restore (a CUDA state saved on a GPU run, resumed without CUDA).

    Example:
        >>> state = get_rng_state()
        >>> first = torch.rand(3), np.random.rand(), random.random()
        >>> set_rng_state(state)   # nothing skipped
        []
        >>> again = torch.rand(3), np.random.rand(), random.random()
        >>> torch.equal(first[0], again[0]), first[1:] == again[1:]
        (True, True)
    """
    torch.set_rng_state(state['torch'])
    npy = state['numpy']
    np.random.set_state((npy['kind'], npy['keys'].numpy().astype(np.uint32),
                         npy['pos'], npy['has_gauss'], npy['cached_gaussian']))
    # random.setstate insists on tuples; accept a state whose inner tuple became a list.
    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))
    skipped = []
    if 'cuda' in state:
        if torch.cuda.is_available():
            torch.cuda.set_rng_state(state['cuda'])
        else:
            skipped.append('cuda')
    return skipped


class _RestoreAfterReplay:
    """Stands in for ``IterBasedTrainLoop.dataloader_iterator`` after a resume.

    The loop first re-draws the batches it already trained on ("Advance dataloader N
    steps"); with ``num_workers=0`` that replay runs the random augmentations in this
    process and moves numpy's / Python's generators. So the saved state is put back
    only after the replay, right before the first new batch is drawn; then the loop
    gets its own iterator back.
    """

    def __init__(self, loop: IterBasedTrainLoop, state: Dict[str, Any], replay: int,
                 on_restore: Callable[[Dict[str, Any]], None]) -> None:
        self._loop = loop
        self._inner = loop.dataloader_iterator
        self._state = state
        self._left = replay
        self._on_restore = on_restore

    def __iter__(self) -> '_RestoreAfterReplay':
        return self

    def __next__(self):
        if self._left > 0:
            self._left -= 1
            return next(self._inner)
        self._on_restore(self._state)
        self._loop.dataloader_iterator = self._inner
        return next(self._inner)

    def __getattr__(self, name: str):
        return getattr(self._inner, name)


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Exact ``--resume`` for runs with random ops (dropout, random augmentation).

    * ``before_save_checkpoint``: stores the generator states (torch CPU, torch CUDA
      when in use, numpy, Python ``random``) of every rank under
      ``checkpoint['rng_state']`` as ``{'world_size': W, 'ranks': [state of rank 0,
      ...]}``. mmengine calls this hook on rank 0 only (``Runner.save_checkpoint`` is
      ``master_only``), so under DDP the states are gathered from all ranks one step
      earlier, in the ``after_train_iter`` / ``after_train_epoch`` / ``after_val_epoch``
      call in which mmengine's ``CheckpointHook`` is about to save (this hook runs just
      before it). A checkpoint saved some other way holds rank 0's state only; the
      other ranks then resume from their seeded generators, with a warning.
    * ``after_load_checkpoint``: on a resume only (``--resume`` / ``resume=True``), not
      for ``load_from`` (a new run keeps its own seed), each rank takes its own state
      back. With an iteration-based loop it is restored after the loop's replay of the
      already-trained batches, right before the first new batch; otherwise before
      training starts. A checkpoint without the states, or from a run with another
      number of processes, is resumed with a warning and the seeded generators. An
      epoch-based loop with persistent data workers gets a warning too: their
      generators live in the worker processes and restart from the seed.
    * ``before_val`` / ``after_val``: validation leaves the generators as it found them.
      It draws a worker seed from torch's generator when it builds its data iterator,
      and it runs after the checkpoint of the same iteration is saved; without this a
      resumed run would continue from a state the uninterrupted run never had. A
      checkpoint saved during validation (``save_best``) holds the state validation
      started from, which is where training continues.

    The hook takes no arguments. Its ``priority`` (89) puts it right before mmengine's
    ``CheckpointHook`` (``VERY_LOW``, 90) in every stage.

    Example:
        >>> # In a config (merged into the inherited default hooks), or as an entry
        >>> # of custom_hooks:
        >>> default_hooks = dict(rng_state=dict(type='RNGStateHook'))
        >>> custom_imports = dict(imports=['mmseg_dynopool'],
        ...                       allow_failed_imports=False)
        >>> # What the Runner does with it:
        >>> from mmengine.registry import HOOKS
        >>> hook = HOOKS.build(default_hooks['rng_state'])
        >>> checkpoint = {}
        >>> hook.before_save_checkpoint(runner=None, checkpoint=checkpoint)
        >>> saved = checkpoint['rng_state']
        >>> saved['world_size'], sorted(saved['ranks'][0])
        (1, ['numpy', 'python', 'torch'])
    """

    # Right before mmengine's CheckpointHook (VERY_LOW = 90) in every stage, so nothing
    # draws random numbers between the gathering of the ranks' states and the saving.
    priority = 89

    def __init__(self) -> None:
        self._pending: Optional[Dict[str, Any]] = None
        self._val_state: Optional[Dict[str, Any]] = None
        # ((stage, iteration), states of all ranks) for the checkpoint about to be saved.
        self._gathered: Optional[Tuple[Tuple[str, int], List[Any]]] = None

    # ---------------------------------------------------------------- checkpoints

    def _gather_if_saving(self, runner, stage: str, saving) -> None:
        """Collective (every rank calls it in the same stage): gather the ranks' states
        when a CheckpointHook is about to save a checkpoint in this stage."""
        if dist.get_world_size() == 1:
            return
        hooks = [h for h in runner.hooks if isinstance(h, CheckpointHook)]
        if not any(saving(h) for h in hooks):
            return
        state = self._val_state if stage == 'val' else get_rng_state()
        self._gathered = ((stage, runner.iter), dist.all_gather_object(state))

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        """Under DDP, gather every rank's generator states when an iteration-based
        ``CheckpointHook`` saves after this iteration (a collective call)."""
        self._gather_if_saving(runner, 'train', lambda h: not h.by_epoch and (
            h.every_n_train_iters(runner, h.interval, h.save_begin) or
            (h.save_last and h.is_last_train_iter(runner))))

    def after_train_epoch(self, runner) -> None:
        """Under DDP, gather every rank's generator states when an epoch-based
        ``CheckpointHook`` saves after this epoch (a collective call)."""
        self._gather_if_saving(runner, 'train', lambda h: h.by_epoch and (
            h.every_n_epochs(runner, h.interval, h.save_begin) or
            (h.save_last and h.is_last_train_epoch(runner))))

    def after_val_epoch(self, runner, metrics=None) -> None:
        """Under DDP, gather the states every rank had when validation started, when
        ``CheckpointHook`` may save a best checkpoint now (``save_best``)."""
        if self._val_state is not None and metrics:
            self._gather_if_saving(runner, 'val', lambda h: bool(h.save_best))

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Store ``{'world_size': W, 'ranks': [state of rank 0, ...]}`` under
        ``checkpoint['rng_state']`` (rank 0 only; the other ranks' states are those
        gathered just before, or None with a warning when none were gathered)."""
        # Inside validation the generators have moved; training continues from the
        # state validation started from.
        stage = 'val' if self._val_state is not None else 'train'
        own = self._val_state if stage == 'val' else get_rng_state()
        world_size = dist.get_world_size()
        gathered, self._gathered = self._gathered, None
        if world_size == 1:
            ranks = [own]
        elif gathered is not None and gathered[0] == (stage, runner.iter):
            ranks = gathered[1]
        else:
            ranks = [own] + [None] * (world_size - 1)
            runner.logger.warning(
                'RNGStateHook: this checkpoint was not saved by CheckpointHook at a '
                'point where the other ranks could contribute their random generator '
                'states; only rank 0 will resume its own.')
        checkpoint[CKPT_KEY] = dict(world_size=world_size, ranks=ranks)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """On a resume, keep this rank's saved state for :meth:`before_train`; warn
        when the checkpoint has none or comes from another number of processes."""
        # mmengine calls this hook for load_from too; only a resume continues a run.
        if not getattr(runner, '_resume', False):
            return
        saved = checkpoint.get(CKPT_KEY)
        if saved is None:
            runner.logger.warning(
                'RNGStateHook: the checkpoint holds no random generator states (it was '
                'saved without RNGStateHook); the resumed run draws other dropout masks '
                'and augmentations than the run it continues.')
            return
        rank, world_size = dist.get_rank(), dist.get_world_size()
        if saved.get('world_size') != world_size or len(saved.get('ranks', [])) != \
                world_size:
            runner.logger.warning(
                f"RNGStateHook: the checkpoint holds the random generator states of "
                f"{saved.get('world_size')} processes, this run has {world_size}; the "
                'generators keep their seeded state (the resumed run is not an exact '
                'continuation).')
            return
        own = saved['ranks'][rank]
        if own is None:
            runner.logger.warning(
                f'RNGStateHook: the checkpoint holds no random generator state of rank '
                f'{rank}; this rank keeps its seeded generators (not an exact '
                'continuation).')
        self._pending = own

    def before_train(self, runner) -> None:
        """Restore the state kept by :meth:`after_load_checkpoint`: now, or for an
        iteration-based loop after its replay of the already-trained batches."""
        if self._pending is None:
            return
        state, self._pending = self._pending, None
        loop = runner.train_loop
        if isinstance(loop, IterBasedTrainLoop) and loop.iter > 0:
            loop.dataloader_iterator = _RestoreAfterReplay(
                loop, state, loop.iter, lambda s: self._restore(runner, s))
            return
        self._restore(runner, state)
        loader = getattr(loop, 'dataloader', None)
        if getattr(loader, 'persistent_workers', False) and \
                getattr(loader, 'num_workers', 0) > 0:
            # Persistent workers carry their generators from epoch to epoch; after a
            # resume they start again from the seed. Their states live in other
            # processes, out of this hook's reach (measured in docs/reliability.md).
            runner.logger.warning(
                'RNGStateHook: this epoch-based loop keeps its data workers across '
                'epochs (persistent_workers=True); after a resume their random '
                'generators restart from the seed, so the random augmentation of the '
                'resumed epochs differs from the uninterrupted run. Set '
                'persistent_workers=False in train_dataloader for an exact resume.')

    @staticmethod
    def _restore(runner, state: Dict[str, Any]) -> None:
        skipped = set_rng_state(state)
        if skipped:
            runner.logger.warning(
                f'RNGStateHook: could not restore the {", ".join(skipped)} generator '
                '(saved on a CUDA run, resumed without CUDA).')

    # ----------------------------------------------------------------- validation

    def before_val(self, runner) -> None:
        """Remember the generator states validation starts from."""
        self._val_state = get_rng_state()

    def after_val(self, runner) -> None:
        """Put the generators back where validation found them."""
        if self._val_state is not None:
            set_rng_state(self._val_state)
            self._val_state = None
