"""Configuration mistakes around the GMACs hook fail early with a clear error: the hook
on a model without resizing layers stops at ``before_train``, before any iteration."""
import pytest
from mmengine.config import Config
from mmengine.runner import Runner

from ..helpers import MOVING_SIZES, SYNTH_DP_CFG, SYNTH_HUMAN_CFG, tiny_config

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.mark.slow
def test_gmacs_hook_without_dynopool_fails_at_before_train(voc_root, tmp_path):
    cfg = tiny_config(SYNTH_DP_CFG, voc_root, str(tmp_path), **MOVING_SIZES)
    plain = Config.fromfile(SYNTH_HUMAN_CFG)
    cfg.model = plain.model
    cfg.model.data_preprocessor.size = (64, 64)
    cfg.optim_wrapper = plain.optim_wrapper
    cfg.custom_hooks = [dict(type='DynOPoolGMACsHook', loss_weight=0.5)]
    runner = Runner.from_cfg(cfg)
    with pytest.raises(ValueError, match='no DynOPool layer'):
        runner.train()
    assert runner.iter == 0
