"""mmengine's ``compile`` option (``cfg.compile``) on a DynOPool config: the Runner
compiles ``train_step``; the run must end where the eager run ends.

``backend='eager'``: Dynamo's tracing of ``train_step`` (and its graph breaks) is what
this test adds; AOTAutograd through our registered operators is checked on the tiny HRNet
by tests/test_ops/test_compile.py (``aot_eager``), and Inductor (``compile=True``) by
``tools/benchmark/bench_compile.py``. Two iterations: the second runs the compiled step
again after an optimizer step.

The optimizer's ``step`` runs eagerly here (:class:`_EagerOptimizerStep`): tracing SGD's
step over every parameter is PyTorch's work, not ours (plain SGD parameter groups), and
took 26 of the test's 36 s. Forward, losses and backward stay compiled."""
import pytest
import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner

from mmseg_dynopool import resizing_layers

from ..conftest import SYNTH_DP_CFG, tiny_config

pytestmark = pytest.mark.slow


class _EagerOptimizerStep(Hook):
    """Keeps Dynamo out of the optimizer's step (wrapped after the LR schedulers' step
    counters, so they still count)."""

    def before_train(self, runner) -> None:
        optimizer = runner.optim_wrapper.optimizer
        optimizer.step = torch.compiler.disable(optimizer.step)


def _run(voc_root, work_dir, compile_cfg):
    torch._dynamo.reset()
    cfg = tiny_config(SYNTH_DP_CFG, voc_root, work_dir, iters=2, randomness=dict(seed=0))
    cfg.model.decode_head.dropout_ratio = 0.0
    if compile_cfg is not None:
        cfg.compile = compile_cfg
    runner = Runner.from_cfg(cfg)
    runner.register_hook(_EagerOptimizerStep())
    torch._dynamo.utils.counters.clear()
    runner.train()
    graphs = torch._dynamo.utils.counters['stats']['unique_graphs']
    alphas = {n: p.alpha.detach().clone() for n, p in resizing_layers(runner.model)}
    weights = {n: p.detach().clone() for n, p in runner.model.named_parameters()}
    loss = runner.message_hub.get_scalar('train/loss').current()
    return alphas, weights, loss, graphs


def test_runner_compile_matches_eager(voc_root, tmp_path):
    eager = _run(voc_root, str(tmp_path / 'eager'), None)
    compiled = _run(voc_root, str(tmp_path / 'compiled'), dict(backend='eager'))
    torch._dynamo.reset()
    assert eager[3] == 0 and compiled[3] > 0  # Dynamo traced the compiled run only
    assert compiled[2] == pytest.approx(eager[2], rel=1e-5)
    for name in eager[0]:
        torch.testing.assert_close(compiled[0][name], eager[0][name], rtol=1e-5, atol=0)
    for name in eager[1]:
        torch.testing.assert_close(compiled[1][name], eager[1][name], rtol=1e-4,
                                   atol=1e-6, msg=name)
