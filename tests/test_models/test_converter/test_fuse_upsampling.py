"""Fixed-factor upsamplings into learned levels become ``nn.Identity`` when only an
explicit resize reads them (HRNet's fuse layers)."""
import copy

import torch
from torch import nn
from torch.nn import functional as F

from mmseg_dynopool.models.converter import check_level_sizes, convert_to_dynopool

from .tiny_models import converted, original, random_ratios


class UpThenResize(nn.Module):
    def __init__(self, explicit: bool):
        super().__init__()
        self.explicit = explicit
        self.down = nn.Conv2d(3, 4, 3, 2, 1)
        self.up = nn.Upsample(scale_factor=2.0, mode='bilinear')

    def forward(self, x):
        y = self.up(self.down(x))
        if self.explicit:
            return F.interpolate(y, size=x.shape[-2:], mode='bilinear') + x[:, :1]
        return y + x[:, :1]


def test_only_upsamplings_into_an_explicit_resize_are_fused():
    torch.manual_seed(0)
    model = UpThenResize(explicit=True)
    unfused = copy.deepcopy(model)
    conversion = convert_to_dynopool(model)
    assert conversion.fused_upsampling == ['up'] and isinstance(model.up, nn.Identity)
    assert convert_to_dynopool(unfused, fuse_upsampling=False).fused_upsampling == []
    assert isinstance(unfused.up, nn.Upsample)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        # At the initial ratio: bilinear x2 then to the size == bilinear to the size.
        assert torch.allclose(model(x), unfused(x), atol=1e-6)
        model.dynopool.alpha.fill_(1 / 0.3)
        assert model(x).shape == (1, 4, 32, 32)   # a learned size still fits
    kept = UpThenResize(explicit=False)
    assert convert_to_dynopool(kept).fused_upsampling == []
    assert isinstance(kept.up, nn.Upsample)


def test_hrnet_fuse_upsampling_is_dropped():
    model, conversion = converted('hrnet')
    assert conversion.fused_upsampling and all(
        isinstance(model.get_submodule(n), nn.Identity)
        for n in conversion.fused_upsampling)
    orig = original('hrnet')
    assert all(isinstance(orig.get_submodule(n), nn.Upsample) or
               type(orig.get_submodule(n)).__name__ == 'Upsample'
               for n in conversion.fused_upsampling)
    random_ratios(model)
    check_level_sizes(model, torch.randn(1, 3, 61, 77))
