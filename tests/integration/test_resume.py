"""Exact resume of a learnable-size network (docs/reliability.md, section 2): a
training stopped (or killed) after a checkpoint and resumed with ``--resume`` ends
bitwise where the uninterrupted run ends - weights, alphas, BN statistics, optimizer
momentum and every logged value - with dropout and random augmentation too.

Every run is a fresh process (mmseg's tools/train.py, or the Runner in ``python -c``) on
the tiny synthetic config (:func:`tests.helpers.tiny_config`), one thread each.
"""
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import mmseg
import pytest
import torch

from mmseg_dynopool.utils import load_checkpoint_file

from ..helpers import (MOVING_SIZES, SYNTH_DP_CFG, max_abs_diff, start, tiny_config,
                       wait_ok)

MMSEG_TOOLS = osp.join(osp.dirname(mmseg.__file__), '.mim', 'tools')


@pytest.mark.slow
def test_resume_is_bitwise_exact(voc_root, tmp_path):
    """tools/train.py: 4 iterations straight vs 2 + --resume 2 (fresh processes)."""
    cfg = tiny_config(SYNTH_DP_CFG, voc_root, str(tmp_path / 'unused'), 4,
                      **MOVING_SIZES, default_hooks=dict(checkpoint=dict(interval=2)))
    cfg_file = str(tmp_path / 'tiny_dynopool.py')
    cfg.dump(cfg_file)
    train = [sys.executable, osp.join(MMSEG_TOOLS, 'train.py'), cfg_file]
    straight, split = str(tmp_path / 'straight'), str(tmp_path / 'split')
    logs = [str(tmp_path / f'{n}.log') for n in ('straight', 'first', 'resumed')]
    # The straight run and the first half run side by side.
    p_straight = start(train + ['--work-dir', straight], logs[0])
    p_first = start(train + ['--work-dir', split, '--cfg-options',
                             'train_cfg.max_iters=2'], logs[1])
    wait_ok(p_straight, logs[0])
    first_text = wait_ok(p_first, logs[1])
    assert 'Iter(train) [2/2]' in first_text and not osp.exists(
        osp.join(split, 'iter_4.pth'))
    resumed_text = wait_ok(start(train + ['--work-dir', split, '--resume'], logs[2]),
                           logs[2])
    assert 'resumed epoch: 0, iter: 2' in resumed_text
    assert 'Iter(train) [1/4]' not in resumed_text and 'Iter(train) [3/4]' in resumed_text

    a = torch.load(osp.join(straight, 'iter_4.pth'), map_location='cpu',
                   weights_only=False)
    b = torch.load(osp.join(split, 'iter_4.pth'), map_location='cpu',
                   weights_only=False)
    half = torch.load(osp.join(split, 'iter_2.pth'), map_location='cpu',
                      weights_only=False)
    alpha_keys = [k for k in a['state_dict'] if k.endswith('.alpha')]
    assert len(alpha_keys) == 5
    # Training changed the state after the checkpoint (the comparison is not vacuous).
    assert max_abs_diff({k: a['state_dict'][k] for k in alpha_keys},
                        {k: half['state_dict'][k] for k in alpha_keys}) > 1e-4
    # Weights (alphas included), BN statistics and optimizer momentum: bitwise equal.
    assert max_abs_diff(a['state_dict'], b['state_dict']) == 0.0
    mom_a = {str(k): v['momentum_buffer'] for k, v in a['optimizer']['state'].items()}
    mom_b = {str(k): v['momentum_buffer'] for k, v in b['optimizer']['state'].items()}
    assert max_abs_diff(mom_a, mom_b) == 0.0
    # Everything logged per iteration (losses, GMACs, sizes h/w, ratios, lr) is equal
    # over all four iterations, i.e. the resumed run saw the same batches.
    scalars_a = a['message_hub']['log_scalars']
    scalars_b = b['message_hub']['log_scalars']
    compared = 0
    for key, buf in scalars_a.items():
        if key.endswith('time'):
            continue
        values_a, values_b = buf.data[0], scalars_b[key].data[0]
        assert len(values_a) == len(values_b) == 4, key
        assert (values_a == values_b).all(), (key, values_a, values_b)
        compared += 1
    assert compared > 20
    assert any(k.endswith('dynopool_stem/h') for k in scalars_a)


def _wait_for_checkpoint(proc: subprocess.Popen, work_dir: str, name: str,
                         timeout: float = 300) -> None:
    """Poll until mmengine's ``last_checkpoint`` pointer names ``name`` (it is written
    after the checkpoint file is complete)."""
    pointer = osp.join(work_dir, 'last_checkpoint')
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if osp.isfile(pointer):
            with open(pointer) as f:
                if f.read().strip().endswith(name):
                    return
        if proc.poll() is not None:
            raise AssertionError(f'{proc.args} exited {proc.returncode} before {name}')
        time.sleep(0.01)
    proc.kill()
    raise AssertionError(f'no {name} in {work_dir} after {timeout} s')


@pytest.mark.slow
def test_resume_after_kill_with_dropout_is_bitwise_exact(voc_root, tmp_path):
    """Dropout (FCNHead ``dropout_ratio=0.1``) plus the config's random augmentation: a
    training killed with SIGKILL right after its ``iter_3`` checkpoint, then resumed with
    ``--resume``, ends bitwise where the uninterrupted 6-iteration run ends. Negative
    control: resuming the same checkpoint without its RNG states ends elsewhere."""
    cfg = tiny_config(SYNTH_DP_CFG, voc_root, str(tmp_path / 'unused'), 6,
                      **MOVING_SIZES, default_hooks=dict(checkpoint=dict(interval=3)))
    # Inherited from the synthetic config, as in every config of configs/.
    assert cfg.default_hooks.rng_state.type == 'RNGStateHook'
    cfg.model.decode_head.dropout_ratio = 0.1
    cfg_file = str(tmp_path / 'tiny_dropout.py')
    cfg.dump(cfg_file)
    # What tools/train.py does (test_resume_is_bitwise_exact runs that one), minus the
    # yapf formatting of the config text: ~1.5 s per log / dump / checkpoint.
    train = [sys.executable, '-c',
             'import sys; from mmengine.config import Config; '
             'from mmengine.runner import Runner; '
             'cfg = Config.fromfile(sys.argv[1]); '
             'cfg = Config(cfg.to_dict(), filename=sys.argv[1], '
             'format_python_code=False); '
             'cfg.work_dir = sys.argv[3]; cfg.resume = "--resume" in sys.argv; '
             'Runner.from_cfg(cfg).train()', cfg_file]
    straight, killed, control = (str(tmp_path / n) for n in ('straight', 'killed',
                                                              'control'))
    logs = {n: str(tmp_path / f'{n}.log') for n in ('straight', 'killed', 'resumed',
                                                    'control')}
    p_straight = start(train + ['--work-dir', straight], logs['straight'])
    p_killed = start(train + ['--work-dir', killed], logs['killed'])
    _wait_for_checkpoint(p_killed, killed, 'iter_3.pth')
    os.kill(p_killed.pid, signal.SIGKILL)
    p_killed.wait()
    assert p_killed.returncode == -signal.SIGKILL
    assert not osp.exists(osp.join(killed, 'iter_6.pth'))  # killed mid-way

    # The control: the same checkpoint with its RNG states taken out.
    ckpt = load_checkpoint_file(osp.join(killed, 'iter_3.pth'), map_location='cpu')
    assert ckpt['rng_state']['world_size'] == 1
    del ckpt['rng_state']
    os.makedirs(control)
    torch.save(ckpt, osp.join(control, 'iter_3.pth'))
    with open(osp.join(control, 'last_checkpoint'), 'w') as f:
        f.write(osp.join(control, 'iter_3.pth'))
    p_resumed = start(train + ['--work-dir', killed, '--resume'], logs['resumed'])
    p_control = start(train + ['--work-dir', control, '--resume'], logs['control'])
    wait_ok(p_straight, logs['straight'])
    resumed_text = wait_ok(p_resumed, logs['resumed'])
    control_text = wait_ok(p_control, logs['control'])
    assert 'resumed epoch: 0, iter: 3' in resumed_text
    assert 'Iter(train) [4/6]' in resumed_text and 'Iter(train) [3/6]' not in resumed_text
    assert 'holds no random generator states' in control_text

    a, b, c = (load_checkpoint_file(osp.join(d, 'iter_6.pth'), map_location='cpu')
               for d in (straight, killed, control))
    assert max_abs_diff(a['state_dict'], b['state_dict']) == 0.0
    mom = [{str(k): v['momentum_buffer'] for k, v in x['optimizer']['state'].items()}
           for x in (a, b)]
    assert max_abs_diff(*mom) == 0.0
    # Same batches and dropout masks: every logged loss of all 6 iterations is equal.
    compared = 0
    for key, buf in a['message_hub']['log_scalars'].items():
        if 'loss' in key:
            values_b = b['message_hub']['log_scalars'][key].data[0]
            assert len(buf.data[0]) == 6 and (buf.data[0] == values_b).all(), key
            compared += 1
    assert compared >= 3
    # Without the states the resumed run draws other masks: the check has teeth.
    assert max_abs_diff(a['state_dict'], c['state_dict']) > 0.0
