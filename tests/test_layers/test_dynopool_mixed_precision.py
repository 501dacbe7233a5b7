"""DynOPool under mixed precision (docs/reliability.md, section 3): under CPU bf16
autocast the output size and the query positions are computed in float32, so bf16
rounding never changes a feature-map size or moves a sample (Eqs. 4.1-4.3)."""
import torch

from mmseg_dynopool import DynOPool
from mmseg_dynopool.ops import dynopool_sample_reference, output_size, query_positions


def test_bf16_autocast_sizes_and_positions_are_float32():
    """Under CPU bf16 autocast with bf16 features (as after an autocast conv), the size
    and the query positions are computed in float32 (or wider) with autocast off (that
    the fused positions node runs with autocast off is checked in
    tests/test_ops/test_query_positions.py)."""
    layer = DynOPool((1 / 3, 0.5))
    torch.manual_seed(0)
    x = torch.randn(1, 2, 1000, 14).bfloat16().requires_grad_()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        y = layer(x)
    # 1000 / 3 = 333.3 in float32; bf16 arithmetic would give 1000 * 0.334 = 334.
    assert tuple(y.shape[2:]) == (333, 7)
    # The samples sit at the float32 positions (bf16 positions near 1000 are 4 px apart).
    ratio = 1.0 / layer.alpha.detach()
    h, w = output_size(1000, ratio[0]), output_size(14, ratio[1])
    ref = dynopool_sample_reference(x.detach().float(), query_positions(1000, h, int(h)),
                                    query_positions(14, w, int(w)))
    assert float((y.float() - ref).abs().max()) < 0.05
    y.float().square().mean().backward()
    assert layer.alpha.grad.dtype == torch.float32
    assert torch.isfinite(layer.alpha.grad).all() and layer.alpha.grad.abs().sum() > 0
    assert torch.isfinite(x.grad.float()).all()
