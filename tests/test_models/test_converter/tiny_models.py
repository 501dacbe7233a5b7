"""Small models the converter tests share: mmseg ResNetV1c, MobileNetV2, HRNet,
MixVisionTransformer and mmpretrain ResNet (depth 18, half width, one block per stage),
and helpers to convert them, randomise their ratios and read module output sizes.

Expected values in the tests come from the original models themselves (forward hooks),
not from the converter.
"""
import copy

import torch
from torch import nn

import mmseg_dynopool  # noqa: F401  (registers DynOPool)
from mmseg_dynopool.models.converter import convert_to_dynopool, converted_pools

from ...conftest import module_output_sizes, tiny_hrnet_extra

HRNET_EXTRA = tiny_hrnet_extra()


def seg(cfg: dict) -> nn.Module:
    from mmseg.registry import MODELS
    return MODELS.build(cfg)


def pre(cfg: dict) -> nn.Module:
    from mmpretrain.registry import MODELS
    return MODELS.build(cfg)


# name -> (builder, number of pools, ops into one shared pool (a sample), left alone)
MODELS = {
    'resnetv1c': (lambda: seg(dict(type='ResNetV1c', depth=18, base_channels=16,
                                   stem_channels=16)),
                  5, ('layer2.0.conv1', 'layer2.0.downsample.0'), set()),
    'resnetv1c-d8': (lambda: seg(dict(type='ResNetV1c', depth=50, base_channels=8,
                                      stem_channels=16, strides=(1, 2, 1, 1),
                                      dilations=(1, 1, 2, 4), num_stages=4)),
                     3, ('layer2.0.conv2', 'layer2.0.downsample.0'), set()),
    'mobilenetv2': (lambda: seg(dict(type='MobileNetV2', widen_factor=0.25)),
                    5, ('layer2.0.conv.1.conv', ), set()),
    'hrnet': (lambda: seg(dict(type='HRNet', extra=HRNET_EXTRA)),
              5, ('transition2.2.0.0', 'stage3.0.fuse_layers.2.0.1.0',
                  'stage3.0.fuse_layers.2.1.0.0', 'stage4.0.fuse_layers.2.0.1.0'), set()),
    'mit': (lambda: seg(dict(type='MixVisionTransformer', embed_dims=8,
                             num_layers=[1, 1, 1, 1], num_heads=[1, 1, 1, 1])),
            3, ('layers.1.0.projection', ),
            {'layers.0.0.projection', 'layers.0.1.0.attn.sr', 'layers.1.1.0.attn.sr',
             'layers.2.1.0.attn.sr'}),
    'mmpretrain-resnet': (lambda: pre(dict(type='ResNet', depth=18, base_channels=16,
                                           stem_channels=16)),
                          5, ('layer3.0.conv1', 'layer3.0.downsample.0'), set()),
}
EVEN_ODD = [(64, 64), (65, 67), (97, 61)]


def original(name: str) -> nn.Module:
    torch.manual_seed(0)
    model = MODELS[name][0]()
    model.eval()
    return model


def converted(name: str, **kwargs):
    """``(model, conversion)`` of a converted copy of ``original(name)``."""
    model = copy.deepcopy(original(name))
    conversion = convert_to_dynopool(model, **kwargs)
    model.eval()
    return model, conversion


def module_sizes(model: nn.Module, x: torch.Tensor):
    """(name, call index) -> spatial size of every module call's (first 4-D) output,
    and the shapes of the model's outputs."""
    outs = []
    sizes = module_output_sizes(model, lambda: outs.extend(model(x)))
    return sizes, [tuple(o.shape) for o in outs]


def random_ratios(model: nn.Module, seed: int = 0, low: float = 0.3,
                  high: float = 0.8) -> None:
    """Give every pool of a converted model a random ratio in ``[low, high]``."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, pool in converted_pools(model):
            pool.alpha.copy_(1 / (low + (high - low) * torch.rand(2, generator=gen)))


class ThreeConvs(nn.Module):
    """A 3-conv toy net: a stride-1 stem, a stride-2 conv with a pooled shortcut (one
    level, two ops), a 1x1 head; also returns its last map resized to the stem's size."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.down = nn.Conv2d(4, 4, 3, stride=2, padding=1)
        self.short = nn.MaxPool2d(3, 2, 1)
        self.head = nn.Conv2d(4, 4, 1)

    def forward(self, x: torch.Tensor):
        s = torch.relu(self.stem(x))
        y = self.down(s) + self.short(s)
        return self.head(y), nn.functional.interpolate(y, size=s.shape[-2:])
