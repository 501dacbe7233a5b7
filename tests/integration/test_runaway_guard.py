"""DynOPool's runaway guard in a training run through the Runner (docs/reliability.md,
section 4): a ratio blown up before every iteration is clamped to ``max_ratio``, the
guard's warning is logged once, and the GMACs hook logs each layer's allowed range. The
layer alone: tests/test_layers/test_dynopool_guards.py."""
import math
import os.path as osp
import re

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner

from ..helpers import (MOVING_SIZES, SYNTH_DP_CFG, RecorderHook, round_half_up,
                       tiny_config)

pytestmark = pytest.mark.usefixtures('one_thread')
LEVEL_NAME = 'backbone.dynopool_stream2'  # the pool the test blows up


class _RunawayHook(Hook):
    """Blow stream 2's ratio up to 100 before every training iteration."""

    priority = 'LOW'  # after the GMACs hook has profiled the model

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        pool = runner.model.backbone.dynopool_stream2
        with torch.no_grad():
            pool.alpha.fill_(0.01)


@pytest.mark.slow
def test_runaway_in_training_is_clamped_warned_once_and_bound_logged(voc_root,
                                                                     tmp_path):
    cfg = tiny_config(SYNTH_DP_CFG, voc_root, str(tmp_path), 2, **MOVING_SIZES)
    cfg.model.backbone.pool_cfg = dict(min_size=1.5, aggregation='max',
                                       max_ratio=0.75, max_size=40)
    runner = Runner.from_cfg(cfg)
    recorder = RecorderHook()
    runner.register_hook(recorder)
    runner.register_hook(_RunawayHook())
    runner.train()
    pool = runner.model.backbone.dynopool_stream2
    assert float(pool.ratio.max()) <= 0.75 + 1e-6
    for rec in recorder.records:
        (h_in, w_in), (h, w) = rec['in_size'][LEVEL_NAME], rec['size'][LEVEL_NAME]
        assert (h, w) == (round_half_up(h_in * 0.75), round_half_up(w_in * 0.75))
        assert all(torch.isfinite(a).all() for a in rec['alpha'].values())
        assert math.isfinite(rec['losses']['loss'])
    with open(osp.join(runner.log_dir, f'{runner.timestamp}.log')) as f:
        text = f.read()
    assert text.count('ratio guard engaged') == 1, text[-3000:]
    bound_lines = re.findall(r'DynOPoolGMACsHook: backbone\.dynopool_\w+ allowed ratio '
                             r'range \[0\.001, 0\.75\], max_size=40', text)
    assert len(bound_lines) == 5
