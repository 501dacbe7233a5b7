"""Size rules: which replacements reproduce the strided op's output size (Eqs. 5.1-5.3).

Each verdict of ``compare`` is checked against a brute-force comparison of the two
modules' real output sizes over many input sizes (CPU forwards, not the rule's own
meta evaluation)."""
import pytest
import torch
from torch import nn

from mmseg_dynopool import DynOPool
from mmseg_dynopool.models.converter.size_rules import (chain, compare, module_rule,
                                                        output_size, pool_rule,
                                                        stride_one_keeps_size, worst)

from .tiny_models import converted, original


def _real_size(module: nn.Module, hw, channels: int = 2):
    with torch.no_grad():
        return tuple(module(torch.zeros(1, channels, *hw)).shape[-2:])


def _brute_force(op: nn.Module, pool: nn.Module, stride: int) -> str:
    """'exact' / 'multiples' / 'differs' from real forwards on sizes 9..80."""
    same = {n: _real_size(op, (n, n)) == _real_size(pool, (n, n)) for n in range(9, 81)}
    if all(same.values()):
        return 'exact'
    return 'multiples' if all(s for n, s in same.items() if n % stride == 0) else \
        'differs'


@pytest.mark.parametrize('op, ratio, stride, verdict', [
    (nn.MaxPool2d(3, 2, 1), 0.5, 2, 'exact'),                        # ceil(H / 2)
    (nn.Conv2d(2, 2, 3, stride=2, padding=1), 0.5, 2, 'exact'),      # 'same' padding
    (nn.MaxPool2d(2, 2), 0.5, 2, 'multiples'),                       # floor(H / 2)
    (nn.Conv2d(2, 2, 3, stride=4, padding=1), 0.25, 4, 'multiples'),  # ceil(H / 4)
    (nn.Conv2d(2, 2, 1, stride=2), 0.4, 2, 'differs'),               # not 1 / stride
])
def test_compare_agrees_with_real_forwards(op, ratio, stride, verdict):
    pool = DynOPool(ratio)
    got = compare(module_rule(op), pool_rule(pool), (stride, stride))
    assert got == verdict
    assert got == _brute_force(op, pool, stride)


def test_compare_per_axis_and_failures():
    op = nn.MaxPool2d((3, 2), (2, 1), (1, 0))        # (2, 1): one axis strided
    pool = DynOPool((0.5, 1.0))
    assert compare(module_rule(op), pool_rule(pool), (2, 1)) == 'differs'  # 2-wide kernel
    op = nn.MaxPool2d((3, 1), (2, 1), (1, 0))
    assert compare(module_rule(op), pool_rule(pool), (2, 1)) == 'exact'

    def broken(hw):
        raise RuntimeError('no size')
    assert compare(broken, pool_rule(pool), (2, 1)) == 'differs'


def test_chain_of_two_rounds_twice():
    """Two stride-2 'same' convs give ceil(ceil(H / 2) / 2); one pool at 1/4 rounds
    once, so a merged pool is only 'multiples'."""
    convs = [nn.Conv2d(2, 2, 3, stride=2, padding=1) for _ in range(2)]
    two = chain([module_rule(c) for c in convs])
    assert two((33, 32)) == _real_size(nn.Sequential(*convs), (33, 32)) == (9, 8)
    assert compare(two, pool_rule(DynOPool(0.25)), (4, 4)) == 'multiples'
    # Two pools in a row reproduce the two convs exactly.
    pools = chain([pool_rule(DynOPool(0.5)), pool_rule(DynOPool(0.5))])
    assert compare(two, pools, (4, 4)) == 'exact'


def test_stride_one_keeps_size():
    same = nn.Conv2d(2, 2, 3, stride=2, padding=1)
    dilated = nn.Conv2d(2, 2, 3, stride=2, padding=2, dilation=2)
    patch = nn.Conv2d(2, 2, 4, stride=4)
    assert stride_one_keeps_size(same) and stride_one_keeps_size(dilated)
    assert not stride_one_keeps_size(patch)
    assert same.stride == (2, 2) and patch.stride == (4, 4)   # left as they were


def test_output_size_on_meta():
    conv = nn.Conv2d(3, 5, 3, stride=2, padding=1)
    assert output_size(conv, (31, 20), 3) == _real_size(conv, (31, 20), 3) == (16, 10)
    assert conv.weight.device.type == 'cpu'


def test_worst_verdict_of_a_level():
    assert worst(['exact', 'exact']) == 'exact'
    assert worst(['exact', 'multiples']) == 'multiples'
    assert worst(['multiples', 'differs', 'exact']) == 'differs'
    assert worst([]) == 'exact'


def test_mit_rules_for_patch_embeddings():
    """MiT: the spatial-reduction convs (kernel = stride) are left alone, the stride-4
    7x7 patch embedding is only 'multiples'; exact_sizes=False converts it anyway."""
    model, conversion = converted('mit')
    reasons = conversion.left_alone
    assert 'stride-1 copy changes the size' in reasons['layers.0.1.0.attn.sr']
    assert 'multiples' in reasons['layers.0.0.projection']
    # exact_sizes=False: sizes equal on multiples of 4, not when H % 4 == 1.
    loose, loose_conv = converted('mit', exact_sizes=False)
    assert len(loose_conv.pools) == 4
    assert loose_conv.pools[0].size_rule == 'multiples'
    orig = original('mit')
    for shape, same in (((64, 72), True), ((65, 72), False)):
        x = torch.randn(1, 3, *shape)
        with torch.no_grad():
            assert ([o.shape for o in loose(x)] == [o.shape for o in orig(x)]) == same
