"""Checkpoints load with ``torch.load(weights_only=True)`` and a minimal allow-list.

``import mmseg_dynopool`` gives mmengine a local-file loader that unpickles with
``weights_only=True``, allowing only the globals of ``checkpoint_safe_globals()`` and
only during that call. Checked here against real checkpoints of a tiny Runner run (with
validation and ``save_best``, the RNG state hook and the GMACs hook): they resume and
load through ``load_from`` safely; a checkpoint with a malicious pickle is refused and
its payload does not run; a damaged file is reported as such.
"""
import datetime
import os
import os.path as osp
import pickle

import pytest
import torch
from mmengine.runner import Runner, load_checkpoint

import mmseg_dynopool  # noqa: F401  (installs the loader)
from mmseg_dynopool.utils import checkpoint_compat as compat
from mmseg_dynopool.analysis.report import build_model_from_config
from mmseg_dynopool.utils import (TRUSTED_ENV, CheckpointReadError, UnsafeCheckpointError,
                                  load_checkpoint_file)

from .conftest import SYNTH_DP_CFG, tiny_cfg


class _Payload:
    """Unpickling it calls ``open(marker, 'w')``: creates a file, as an attack would."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, 'w'))


@pytest.fixture(autouse=True)
def _no_torch_override(monkeypatch):
    """Neither torch's nor our opt-out may be what makes these loads work."""
    monkeypatch.delenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', raising=False)
    monkeypatch.delenv(TRUSTED_ENV, raising=False)


@pytest.fixture(scope='module')
def trained(tmp_path_factory, voc_root):
    """A 2-iteration Runner run with validation and save_best (a numpy metric in the
    message hub), the GMACs hook and RNGStateHook: its last and best checkpoints."""
    os.environ.pop('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', None)
    work = str(tmp_path_factory.mktemp('safe_ckpt'))
    cfg = tiny_cfg(SYNTH_DP_CFG, voc_root, work, iters=2)
    cfg.default_hooks.checkpoint.save_best = 'mIoU'
    Runner.from_cfg(cfg).train()
    best = [f for f in os.listdir(work) if f.startswith('best_')]
    assert len(best) == 1
    return dict(cfg=cfg, work=work, last=osp.join(work, 'iter_2.pth'),
                best=osp.join(work, best[0]))


def _name(entry) -> str:
    # An entry is a global, or (stand-in, the name the pickle uses) for getattr.
    if isinstance(entry, tuple):
        return entry[1]
    return f'{entry.__module__}.{entry.__qualname__}'


@pytest.mark.slow
def test_allow_list_is_exactly_what_real_checkpoints_need(trained, monkeypatch):
    """Every global a real checkpoint references is allowed, and every allowed entry is
    needed: without it one of the two checkpoints is refused, naming it."""
    paths = (trained['last'], trained['best'])
    allowed = compat.checkpoint_safe_globals()
    referenced = set()
    for path in paths:
        referenced |= set(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    assert referenced <= {_name(g) for g in allowed}
    ckpts = [load_checkpoint_file(path) for path in paths]
    assert {'state_dict', 'optimizer', 'message_hub', 'rng_state',
            'dynopool_gmacs_hook'} <= set(ckpts[0])
    # The allow-list was scoped to the call: none of it stays in torch's global list.
    left = torch.serialization.get_safe_globals()
    assert not [g for g in allowed if g in left]

    for entry in allowed:
        fewer = [g for g in allowed if g is not entry]
        monkeypatch.setattr(compat, 'checkpoint_safe_globals', lambda: fewer)
        refusals = []
        for path in paths:
            try:
                load_checkpoint_file(path)
            except UnsafeCheckpointError as err:
                refusals.append(str(err))
        short = _name(entry).split('.')[-1]
        assert refusals and all(short in msg for msg in refusals), _name(entry)


@pytest.mark.slow
def test_resume_and_load_from_load_weights_only(trained, tmp_path, monkeypatch):
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get('weights_only'))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, 'load', spy)
    cfg = tiny_cfg(SYNTH_DP_CFG, trained['cfg'].train_dataloader.dataset.data_root,
                   str(tmp_path / 'resumed'), iters=3)
    cfg.resume, cfg.load_from = True, trained['last']
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 3 and calls and all(c is True for c in calls)

    calls.clear()
    cfg = tiny_cfg(SYNTH_DP_CFG, trained['cfg'].train_dataloader.dataset.data_root,
                   str(tmp_path / 'tested'))
    cfg.load_from = trained['best']
    metrics = Runner.from_cfg(cfg).test()  # what mmseg's tools/test.py does
    assert 'mIoU' in metrics and calls and all(c is True for c in calls)


def _checkpoint_with(tmp_path, name: str, extra) -> str:
    model = build_model_from_config(SYNTH_DP_CFG)
    path = str(tmp_path / name)
    torch.save(dict(meta=dict(extra=extra), state_dict=model.state_dict()), path)
    return path


def test_malicious_checkpoint_is_refused_and_its_payload_never_runs(tmp_path, voc_root):
    marker = str(tmp_path / 'pwned')
    path = _checkpoint_with(tmp_path, 'evil.pth', _Payload(marker))
    model = build_model_from_config(SYNTH_DP_CFG)

    def refused(load):
        with pytest.raises(UnsafeCheckpointError) as info:
            load()
        msg = str(info.value)
        assert path in msg and 'open' in msg and f'{TRUSTED_ENV}=1' in msg
        assert not osp.exists(marker)

    refused(lambda: load_checkpoint_file(path))
    refused(lambda: load_checkpoint(model, path, map_location='cpu'))  # mmengine's API
    cfg = tiny_cfg(SYNTH_DP_CFG, voc_root, str(tmp_path / 'work'))
    cfg.load_from = path
    refused(lambda: Runner.from_cfg(cfg).test())  # load_from / tools/test.py
    # A plain torch.load after `import mmseg_dynopool` is torch's safe default too.
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path)
    assert not osp.exists(marker)
    # Control: the payload is live - a trusted load runs it.
    load_checkpoint_file(path, trusted=True)
    assert osp.exists(marker)


class _Getattr:
    """Pickles as ``getattr(owner, name)``, as a HistoryBuffer's statistics table does."""

    def __init__(self, owner, name: str) -> None:
        self.owner, self.name = owner, name

    def __reduce__(self):
        return (getattr, (self.owner, self.name))


@pytest.mark.parametrize('owner,name,allowed', [
    ('HistoryBuffer', 'mean', True),
    ('HistoryBuffer', '__init__', False),
    ('HistoryBuffer', '_statistics_methods', False),
    ('ndarray', 'tofile', False),
])
def test_getattr_is_allowed_for_history_buffer_functions_only(tmp_path, owner, name,
                                                              allowed):
    import numpy as np
    from mmengine.logging import HistoryBuffer
    target = {'HistoryBuffer': HistoryBuffer, 'ndarray': np.ndarray}[owner]
    path = _checkpoint_with(tmp_path, 'attr.pth', _Getattr(target, name))
    if allowed:
        assert load_checkpoint_file(path)['meta']['extra'] is HistoryBuffer.mean
    else:
        with pytest.raises(UnsafeCheckpointError, match='getattr'):
            load_checkpoint_file(path)


def test_extra_global_needs_the_documented_opt_in(tmp_path, monkeypatch):
    path = _checkpoint_with(tmp_path, 'dated.pth', datetime.date(2024, 5, 1))
    with pytest.raises(UnsafeCheckpointError, match=r'datetime\.date'):
        load_checkpoint_file(path)
    monkeypatch.setenv(TRUSTED_ENV, '1')
    assert load_checkpoint_file(path)['meta']['extra'] == datetime.date(2024, 5, 1)


def test_damaged_file_is_reported_as_damaged_other_errors_keep_their_message(tmp_path):
    path = _checkpoint_with(tmp_path, 'whole.pth', 1)
    data = open(path, 'rb').read()
    cut = str(tmp_path / 'cut.pth')
    with open(cut, 'wb') as f:
        f.write(data[:len(data) // 2])
    with pytest.raises(CheckpointReadError, match='truncated or unreadable') as info:
        load_checkpoint_file(cut)
    assert cut in str(info.value)
    # An intact file with a bad map_location is not blamed on the file.
    with pytest.raises(RuntimeError) as info:
        load_checkpoint_file(path, map_location='no_such_device')
    assert not isinstance(info.value, CheckpointReadError)
    with pytest.raises(FileNotFoundError, match='can not be found'):
        load_checkpoint_file(str(tmp_path / 'missing.pth'))
