"""DynOPool's runaway guard (docs/reliability.md, section 4): an exploding ratio (a
too-small or non-finite alpha, from the optimizer or set by hand) is clamped to
``max_ratio`` / ``max_size`` before the next forward, and reported once. The same guard
in a training run through the Runner: tests/integration/test_runaway_guard.py."""
import sys
from typing import List

import pytest
import torch

from mmseg_dynopool import DynOPool


@pytest.fixture
def log_calls(monkeypatch) -> List[str]:
    """Messages the DynOPool layer sends through print_log."""
    calls: List[str] = []
    monkeypatch.setattr(sys.modules[DynOPool.__module__], 'print_log',
                        lambda msg, *a, **k: calls.append(str(msg)))
    return calls


def test_runaway_ratio_is_clamped_and_reported_once(log_calls):
    layer = DynOPool(0.5, max_ratio=2.0)
    x = torch.randn(1, 2, 8, 8)
    for attempt in range(3):
        with torch.no_grad():
            layer.alpha.fill_(0.05)  # ratio 20
        y = layer(x)
        assert tuple(y.shape[2:]) == (16, 16), attempt
        assert torch.equal(layer.alpha.detach(), torch.full((2, ), 0.5))
    assert len(log_calls) == 1
    assert 'allowed ratio range [0.001, 2.0]' in log_calls[0]
    assert 'output 16x16 for input 8x8' in log_calls[0]


def test_runaway_step_is_clamped_before_the_next_forward(log_calls):
    layer = DynOPool(0.5, max_ratio=3.0)
    opt = torch.optim.SGD(layer.parameters(), lr=1.0)
    layer.alpha.grad = torch.full((2, ), 1e6)  # alpha -> -1e6 without the guard
    opt.step()
    assert torch.allclose(layer.alpha.detach(), torch.full((2, ), 1 / 3.0))
    layer.alpha.grad = torch.tensor([float('nan'), 0.0])
    opt.step()
    assert torch.isfinite(layer.alpha).all()
    assert tuple(layer(torch.randn(1, 1, 5, 5)).shape[2:]) == (15, 15)
    assert len(log_calls) == 1


def test_max_size_caps_and_reports_once(log_calls):
    layer = DynOPool(3.0, max_size=10)
    for _ in range(2):
        assert tuple(layer(torch.randn(1, 1, 8, 3)).shape[2:]) == (10, 9)
    assert len(log_calls) == 1 and 'max_size=10' in log_calls[0]
