"""Standard tracers on live models, grad mode on or off (issue: mmengine's complexity
counter and ``torch.jit.trace`` crashed in grad mode on every DynOPool model).

``get_model_complexity_info`` is how users count FLOPs (mmseg's ``get_flops.py`` calls
it with grad mode on and the model in eval mode); it traces the model with
``torch.jit``. The count must not depend on grad mode, and a ``torch.jit.trace`` made in
grad mode must reproduce the model."""
import pytest
import torch
from mmengine.analysis import get_model_complexity_info
from torch import nn

from ..conftest import tiny_hrnet_extra

SMALL_R18 = dict(type='ResNetV1c', depth=18, base_channels=8, stem_channels=16)


def _layer(kind: str) -> nn.Module:
    from mmseg_dynopool.layers import DiffStride, DynOPool, ShapeAdaptor
    layer = {'DynOPool': lambda: DynOPool((0.6, 0.45)),
             'ShapeAdaptor': lambda: ShapeAdaptor(),
             'DiffStride': lambda: DiffStride()}[kind]()
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), layer, nn.Conv2d(4, 4, 3))


def _hrnet() -> nn.Module:
    from mmseg_dynopool.models.backbones import DynOPoolHRNet
    return DynOPoolHRNet(tiny_hrnet_extra(), init_ratios=0.45)


def _seg_backbone() -> nn.Module:
    from mmseg.registry import MODELS
    return MODELS.build(dict(type='DynOPoolBackbone', backbone=SMALL_R18))


def _cls(cfg: dict):
    def build() -> nn.Module:
        from mmpretrain.registry import MODELS
        return MODELS.build(cfg)
    return build


MODELS = {
    'DynOPool': (lambda: _layer('DynOPool'), (1, 3, 23, 30)),
    'ShapeAdaptor': (lambda: _layer('ShapeAdaptor'), (1, 3, 23, 30)),
    'DiffStride': (lambda: _layer('DiffStride'), (1, 3, 23, 30)),
    'DynOPoolHRNet': (_hrnet, (1, 3, 64, 48)),
    'DynOPoolBackbone': (_seg_backbone, (1, 3, 40, 56)),
    'DynOPoolResNet': (_cls(dict(type='DynOPoolResNet', depth=18, stem='cifar')),
                       (1, 3, 32, 32)),
    'DynOPoolVGG': (_cls(dict(type='DynOPoolVGG', depth=11, stem='cifar')), (1, 3, 32, 32)),
    'DynOPoolMobileNetV2': (_cls(dict(type='DynOPoolMobileNetV2', stem='cifar')),
                            (1, 3, 32, 32)),
    'DynOPoolEfficientNet': (_cls(dict(type='DynOPoolEfficientNet', arch='b0',
                                       stem='cifar')), (1, 3, 32, 32)),
}


def _build(name: str):
    import mmseg_dynopool  # noqa: F401  (registers the models)
    torch.manual_seed(0)
    builder, shape = MODELS[name]
    model = builder()
    model.eval()  # (mmseg's ResNet.train returns None: no chaining)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    return model, x


def _flops(model, x) -> int:
    info = get_model_complexity_info(model, inputs=(x, ), show_table=False,
                                     show_arch=False)
    return info['flops']


@pytest.mark.parametrize('name', list(MODELS))
def test_complexity_count_in_grad_mode_equals_no_grad(name):
    model, x = _build(name)
    assert torch.is_grad_enabled()
    assert any(p.requires_grad for p in model.parameters())
    grad_mode = _flops(model, x)  # crashed with `unordered_map::at` before
    with torch.no_grad():
        no_grad = _flops(model, x)
    assert grad_mode == no_grad > 0


def _flatten(out):
    if isinstance(out, torch.Tensor):
        return [out]
    return [t for o in out for t in _flatten(o)]


@pytest.mark.parametrize('name', list(MODELS))
@pytest.mark.parametrize('grad', [True, False])
def test_jit_trace_reproduces_the_live_model(name, grad):
    model, x = _build(name)
    with torch.set_grad_enabled(grad):
        traced = torch.jit.trace(model, (x, ), check_trace=False)
        want = _flatten(model(x))
        got = _flatten(traced(x))
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=0, atol=0)
