"""ops/resizing.py: the interface the tools use for DynOPool, ShapeAdaptor and DiffStride."""
import math

import pytest
import torch
from torch import nn

from mmseg_dynopool.ops import (RESIZING_LAYERS, DiffStride, DynOPool, ShapeAdaptor,
                                dynopool_layers, is_resizing_layer, ratio_parameter,
                                scale_ratio)


def test_dynopool_layers_finds_all_three_types_once():
    shared = DiffStride(init_ratio=0.5)
    model = nn.Sequential(DynOPool(0.5), nn.Conv2d(3, 3, 1), ShapeAdaptor(0.75), shared,
                          nn.Sequential(shared))
    found = dynopool_layers(model)
    assert [n for n, _ in found] == ['0', '2', '3']
    assert [type(m) for _, m in found] == [DynOPool, ShapeAdaptor, DiffStride]
    assert set(RESIZING_LAYERS) == {DynOPool, ShapeAdaptor, DiffStride}
    assert not is_resizing_layer(nn.MaxPool2d(2))


def test_ratio_parameter_is_the_learnable_one():
    for layer, name in ((DynOPool(0.5), 'alpha'), (ShapeAdaptor(0.75), 'alpha'),
                        (DiffStride(init_ratio=0.5), 'stride')):
        assert ratio_parameter(layer) is getattr(layer, name)
    with pytest.raises(TypeError, match='not a learnable resizing layer'):
        ratio_parameter(nn.MaxPool2d(2))


def test_scale_ratio_multiplies_the_ratio_and_clamps():
    factor = torch.tensor([1.2, 0.8])
    pool = DynOPool((0.5, 0.4))
    scale_ratio(pool, pool.alpha.detach().clone(), factor)
    assert pool.ratio.tolist() == pytest.approx([0.6, 0.32], rel=1e-6)
    scale_ratio(pool, pool.alpha.detach().clone(), torch.tensor([100.0, 1.0]))
    assert pool.ratio[0].item() == pytest.approx(pool.max_ratio, rel=1e-6)

    ds = DiffStride(init_ratio=(0.5, 0.25))
    scale_ratio(ds, ds.stride.detach().clone(), factor)
    assert ds.ratio.tolist() == pytest.approx([0.6, 0.2], rel=1e-6)
    scale_ratio(ds, ds.stride.detach().clone(), torch.tensor([100.0, 100.0]))
    assert ds.stride.tolist() == pytest.approx([1.0, 1.0])  # lower_limit_stride
    shared = DiffStride(init_ratio=0.5, shared_stride=True)
    scale_ratio(shared, shared.stride.detach().clone(), torch.tensor([1.5, 1.5]))
    assert shared.ratio.tolist() == pytest.approx([0.75, 0.75], rel=1e-6)

    sa = ShapeAdaptor(0.6)
    scale_ratio(sa, sa.alpha.detach().clone(), factor)  # one scale: geometric mean
    assert sa.ratio[0].item() == pytest.approx(0.6 * math.sqrt(1.2 * 0.8), rel=1e-6)
    scale_ratio(sa, sa.alpha.detach().clone(), torch.tensor([0.1, 0.1]))
    assert sa.ratio[0].item() == pytest.approx(0.5, abs=1e-5)  # clamped to r1


def test_every_layer_resets_to_its_initial_ratio():
    for layer in (DynOPool((0.5, 0.4)), ShapeAdaptor(0.7), DiffStride(init_ratio=0.5)):
        initial = layer.ratio.clone()
        scale_ratio(layer, ratio_parameter(layer).detach().clone(),
                    torch.tensor([1.3, 1.1]))
        assert not torch.allclose(layer.ratio, initial)
        layer.reset_parameters_to_initial()
        assert torch.allclose(layer.ratio, initial)
