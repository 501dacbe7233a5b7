"""Checkpoint loading (``mmseg_dynopool.utils.checkpoint_compat``) and its errors.

Checkpoints load with ``torch.load(weights_only=True)`` and a minimal allow-list.

``import mmseg_dynopool`` gives mmengine a local-file loader that unpickles with
``weights_only=True``, allowing only the globals of ``checkpoint_safe_globals()`` and
only during that call. Checked here against real checkpoints of a tiny Runner run (with
validation and ``save_best``, the RNG state hook and the GMACs hook): they resume and
load through ``load_from`` safely; a checkpoint with a malicious pickle is refused and
its payload does not run; a damaged file is reported as such.

A checkpoint of another architecture (HRNet-W18 for DynOPool HRNet-W48) is refused with
a short error naming the mismatching tensor, strict or not; a plain HRNet checkpoint of
the same architecture still initialises a DynOPool HRNet.
"""
import contextlib
import datetime
import io
import os
import os.path as osp
import pickle

import pytest
import torch
from mmengine.config import Config
from mmengine.runner import Runner, load_checkpoint

import mmseg_dynopool  # noqa: F401  (installs the loader)
from mmseg_dynopool import resizing_layers
from mmseg_dynopool.models.build import build_model_from_config
from mmseg_dynopool.utils import checkpoint_compat as compat
from mmseg_dynopool.utils import (TRUSTED_ENV, CheckpointReadError, UnsafeCheckpointError,
                                  load_checkpoint_file)

from ..helpers import REPO, SYNTH_DP_CFG, build_segmentor, tiny_config


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
    cfg = tiny_config(SYNTH_DP_CFG, voc_root, work, iters=2)
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
    cfg = tiny_config(SYNTH_DP_CFG, trained['cfg'].train_dataloader.dataset.data_root,
                   str(tmp_path / 'resumed'), iters=3)
    cfg.resume, cfg.load_from = True, trained['last']
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 3 and calls and all(c is True for c in calls)

    calls.clear()
    cfg = tiny_config(SYNTH_DP_CFG, trained['cfg'].train_dataloader.dataset.data_root,
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
    cfg = tiny_config(SYNTH_DP_CFG, voc_root, str(tmp_path / 'work'))
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


# ------------------------------------------------- checkpoints of another architecture
def _quiet():
    """Swallow what mmengine prints while loading (~270 KB of 'size mismatch' lines)."""
    return contextlib.redirect_stdout(io.StringIO())


@pytest.fixture(scope='module')
def hr18_checkpoint(tmp_path_factory) -> str:
    """An mmengine-style checkpoint of mmseg's plain FCN-HRNet-W18 (random weights)."""
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'dynopool_hrnet',
                                   'fcn_hr18_4xb4-40k_voc12aug-512x512.py'))
    cfg.model.backbone.norm_cfg = cfg.model.decode_head.norm_cfg = dict(type='BN')
    path = str(tmp_path_factory.mktemp('ckpt') / 'fcn_hr18.pth')
    model = build_segmentor(cfg, init=False)
    torch.save(dict(meta=dict(), state_dict=model.state_dict()), path)
    return path


@pytest.fixture(scope='module')
def dynopool_hr48() -> torch.nn.Module:
    """DynOPool FCN-HRNet-W48 (the DynOPool-S config), plain BN, default init."""
    cfg = Config.fromfile(osp.join(REPO, 'configs', 'dynopool_hrnet',
                                   'fcn_dynopool-s-hr48_4xb4-40k_voc12aug-480x480.py'))
    cfg.model.backbone.norm_cfg = cfg.model.decode_head.norm_cfg = dict(type='BN')
    return build_segmentor(cfg, init=False)


@pytest.mark.slow
def test_wrong_architecture_checkpoint_strict_load_fails(hr18_checkpoint,
                                                         dynopool_hr48):
    """Strict loading (mmengine ``load_checkpoint(strict=True)``) refuses a
    HRNet-W18 checkpoint for DynOPool HRNet-W48 and names a mismatching tensor (today
    mmengine's RuntimeError; the package check proposed in docs/reliability.md turns it
    into a short ValueError)."""
    with pytest.raises((RuntimeError, ValueError)) as info, _quiet():
        load_checkpoint(dynopool_hr48, hr18_checkpoint, map_location='cpu', strict=True)
    msg = str(info.value)
    assert 'transition1.0.0.weight' in msg
    if isinstance(info.value, RuntimeError):
        assert msg.startswith('The model and loaded state dict do not match exactly')
        assert 'size mismatch for backbone.transition1.0.0.weight' in msg


@pytest.mark.slow
def test_wrong_architecture_checkpoint_fails_when_loaded_like_tools_test(
        hr18_checkpoint, dynopool_hr48):
    """tools/test.py and ``load_from`` load with strict=False. Today that only logs
    ~270 KB of 'size mismatch' lines and then evaluates a half-random model (exit 0).
    Expected: a short ValueError naming the mismatch. FAILS until the package adds the
    check described in docs/reliability.md (DynOPoolHRNet._load_from_state_dict)."""
    with pytest.raises(ValueError) as info, _quiet():
        load_checkpoint(dynopool_hr48, hr18_checkpoint, map_location='cpu', strict=False)
    msg = str(info.value)
    assert 'checkpoint' in msg.lower() and 'shape' in msg.lower()
    assert 'transition1.0.0.weight' in msg
    assert len(msg) < 3000


@pytest.mark.slow
def test_plain_hrnet_checkpoint_still_loads_into_dynopool_hrnet(tmp_path,
                                                                dynopool_hr48):
    """The intended use - a plain HRNet checkpoint as initialisation - keeps working
    non-strict: all weights load, the alphas keep their initial ratios."""
    model = dynopool_hr48
    plain = {k: v.clone() + 0.5 for k, v in model.state_dict().items()
             if not k.endswith('.alpha') and v.is_floating_point()}
    path = str(tmp_path / 'plain_hr48.pth')
    torch.save(dict(meta=dict(), state_dict=plain), path)
    with _quiet():
        load_checkpoint(model, path, map_location='cpu', strict=False)
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in plain.items())
    for _, pool in resizing_layers(model):
        assert torch.equal(pool.alpha.detach(), torch.full((2, ), 2.0))
