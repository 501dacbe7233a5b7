"""The pool hooks: one pool run per tensor and forward, re-run when it must, and
deep copies that drive the copy's pools."""
import copy

import torch
from torch import nn

from mmseg_dynopool.models.converter.hooks import ClearPoolCaches, PoolAfter, PoolBefore

from .tiny_models import converted


class CountingPool(nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return x[..., ::2, ::2]


def test_one_run_per_tensor_until_cleared():
    pool = CountingPool()
    before, after = PoolBefore(pool), PoolAfter(pool)
    x = torch.randn(1, 2, 8, 8)
    y1 = before(None, (x, 'extra'))
    y2 = before(None, (x, ))
    assert pool.calls == 1 and y1[0] is y2[0] and y1[1] == 'extra'
    assert after(None, (), torch.randn(1, 2, 8, 8)).shape[-1] == 4 and pool.calls == 2
    x.add_(1)                               # changed in place: not the same tensor
    before(None, (x, ))
    assert pool.calls == 3
    with torch.no_grad():                   # another grad mode: run again
        before(None, (x, ))
    assert pool.calls == 4
    ClearPoolCaches([before, after])(None, (), None)
    before(None, (x, ))
    assert pool.calls == 5
    assert copy.deepcopy(before)._last is None   # a copy never reuses the tensors


def test_deepcopy_drives_the_copys_pools():
    model, _ = converted('resnetv1c')
    twin = copy.deepcopy(model)
    with torch.no_grad():
        twin.layer2[0].dynopool.alpha.fill_(1.0)
        model(torch.randn(1, 3, 64, 64))
        twin(torch.randn(1, 3, 64, 64))
    assert model.layer2[0].dynopool.last_size == (8, 8)
    assert twin.layer2[0].dynopool.last_size == (16, 16)
