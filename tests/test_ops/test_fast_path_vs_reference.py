"""The fast paths of the sampling op (compiled CPU kernel, native-op fallback) against
the plain-autograd reference where a query point sits exactly on pixel 0: the gradient
of alpha (Eqs. 4.4-4.6) must agree there too (docs/reliability.md, section 5). The
random-input comparison is tests/test_layers/test_dynopool_properties.py."""
import pytest
import torch

import mmseg_dynopool.ops.functional as functional
from mmseg_dynopool.ops import dynopool_sample_reference, output_size, query_positions


@pytest.mark.parametrize('fused', [True, False], ids=['kernel', 'fallback'])
def test_fast_path_matches_reference_at_pixel_aligned_positions(fused, monkeypatch):
    """Ratio 0.5 on an even input (every DynOPool HRNet at initialisation on even
    crops) puts the first query point exactly on pixel 0. The fast paths give it the
    slope towards pixel 1 (``inside = pos >= 0``); the reference clamps the position
    with ``torch.clamp``, whose backward is 0 at the bound, so alpha's gradient differs
    (55.5 vs 49.2 here). FAILS until the reference follows the fast path's convention
    (docs/reliability.md, section 5)."""
    if not fused:
        monkeypatch.setattr(functional, '_ext', None)
    torch.manual_seed(0)
    x = torch.randn(2, 8, 16, 16, dtype=torch.float64)
    upstream = torch.randn(2, 8, 8, 8, dtype=torch.float64)
    grads = []
    for sample in (functional.dynopool_sample, dynopool_sample_reference):
        alpha = torch.tensor([2.0, 2.0], dtype=torch.float64, requires_grad=True)
        ratio = 1.0 / alpha
        h, w = output_size(16, ratio[0]), output_size(16, ratio[1])
        pos_h, pos_w = query_positions(16, h, int(h)), query_positions(16, w, int(w))
        assert float(pos_h[0]) == 0.0
        (sample(x, pos_h, pos_w, 'max') * upstream).sum().backward()
        grads.append(alpha.grad)
    assert torch.allclose(grads[0], grads[1], rtol=1e-6), grads
