"""Frozen stages freeze their pools (the stage ``requires_grad`` meaning of freezing)."""
from torch import nn

from mmseg_dynopool.models.converter import convert_to_dynopool, converted_pools

from .tiny_models import seg


def test_frozen_stages_freeze_their_pools():
    model = seg(dict(type='ResNetV1c', depth=18, base_channels=8, stem_channels=8,
                     frozen_stages=1))
    conversion = convert_to_dynopool(model)
    frozen = {p.name: p.frozen for p in conversion.pools}
    assert frozen == {'dynopool': True, 'maxpool': True, 'layer2.0.dynopool': False,
                      'layer3.0.dynopool': False, 'layer4.0.dynopool': False}
    for name, pool in converted_pools(model):
        assert pool.alpha.requires_grad == (not frozen[name])
    model.train()  # mmseg's train() re-freezes the stages; pools stay as they are
    assert not model.maxpool.alpha.requires_grad
    assert model.layer2[0].dynopool.alpha.requires_grad


def test_training_flags_survive_freeze_stages():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, 2, 1)

        def _freeze_stages(self):
            self.conv.eval()
            for p in self.conv.parameters():
                p.requires_grad_(False)

        def forward(self, x):
            return self.conv(x)

    model = Net()
    model.train()
    conversion = convert_to_dynopool(model)
    assert model.conv.training                  # flags restored
    assert conversion.pools[0].frozen and not model.dynopool.alpha.requires_grad
