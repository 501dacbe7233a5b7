"""layers/base.py: the ResizingLayer interface the tools use for DynOPool, ShapeAdaptor and
DiffStride."""
import math

import pytest
import torch
from torch import nn

from mmseg_dynopool.layers import (RESIZING_LAYERS, DiffStride, DynOPool, ResizingLayer,
                                   ShapeAdaptor, dynopool_layers, is_resizing_layer,
                                   ratio_parameter, resizing_layer_type, resizing_layers,
                                   scale_ratio)


def test_resizing_layers_finds_all_three_types_once():
    shared = DiffStride(init_ratio=0.5)
    model = nn.Sequential(DynOPool(0.5), nn.Conv2d(3, 3, 1), ShapeAdaptor(0.75), shared,
                          nn.Sequential(shared))
    found = resizing_layers(model)
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


def test_every_layer_is_a_resizing_layer_with_its_parameter_named():
    for layer, name in ((DynOPool(0.5), 'alpha'), (ShapeAdaptor(0.75), 'alpha'),
                        (DiffStride(init_ratio=0.5), 'stride')):
        assert isinstance(layer, ResizingLayer)
        assert layer.ratio_param_name == name
        assert layer.ratio_parameter() is getattr(layer, name)
    assert DynOPool.exact_sizes and not ShapeAdaptor.exact_sizes \
        and not DiffStride.exact_sizes


def test_a_new_registered_subclass_is_found_and_accepted_as_a_layer_type():
    from mmengine.registry import MODELS

    class HalfPool(ResizingLayer):       # a user's own layer: no change to any caller
        def __init__(self):
            super().__init__()
            self.alpha = nn.Parameter(torch.tensor([2.0, 2.0]))
            self._host_track()

        def forward(self, x):
            return nn.functional.max_pool2d(x, 2)

    name = 'HalfPoolForTest'
    MODELS.register_module(name=name, module=HalfPool, force=True)
    try:
        model = nn.Sequential(nn.Conv2d(3, 3, 1), HalfPool())
        assert [n for n, _ in resizing_layers(model)] == ['1']
        assert resizing_layer_type(name) == name
        assert resizing_layer_type(HalfPool) == 'HalfPool'
    finally:
        MODELS.module_dict.pop(name, None)
    with pytest.raises(ValueError, match='DiffStride, DynOPool, ShapeAdaptor'):
        resizing_layer_type('Conv2d')


def test_base_methods_without_an_implementation_say_so():
    layer = ResizingLayer()
    with pytest.raises(NotImplementedError):
        layer.count_macs((1, 3, 8, 8))
    with pytest.raises(NotImplementedError, match='exact_sizes'):
        layer.set_output_size((8, 8), (4, 4))


def test_dynopool_count_macs_is_four_samples_of_four_macs_per_output_cell():
    layer = DynOPool((0.5, 0.25))
    assert layer.count_macs((2, 3, 16, 16)) == 4 * 2 * 3 * (2 * 8) * (2 * 4)
    assert layer.count_macs((3, 16, 16)) == 4 * 3 * (2 * 8) * (2 * 4)
    with pytest.raises(ValueError, match='input_shape'):
        layer.count_macs((16, 16))


def test_dynopool_set_output_size_gives_that_size():
    layer = DynOPool(0.5)
    for out in ((7, 3), (1 + 1, 13), (20, 20)):
        layer.set_output_size((20, 20), out)
        assert layer.host_output_size((20, 20)) == out
        assert tuple(layer(torch.randn(1, 1, 20, 20)).shape[2:]) == out


def test_dynopool_layers_is_a_deprecated_alias():
    model = nn.Sequential(DynOPool(0.5))
    with pytest.warns(DeprecationWarning, match='resizing_layers'):
        assert dynopool_layers(model) == resizing_layers(model)


def test_old_module_paths_still_import_with_a_warning():
    import importlib
    import sys
    for old, new in (('ops.dynopool', 'layers.dynopool'),
                     ('ops.shape_adaptor', 'layers.baselines.shape_adaptor'),
                     ('ops.diffstride', 'layers.baselines.diffstride'),
                     ('ops.host_cache', 'layers.host_cache'),
                     ('ops.resizing', 'layers.base')):
        sys.modules.pop(f'mmseg_dynopool.{old}', None)
        with pytest.warns(DeprecationWarning, match=new.replace('.', r'\.')):
            module = importlib.import_module(f'mmseg_dynopool.{old}')
        moved = importlib.import_module(f'mmseg_dynopool.{new}')
        public = [k for k in vars(moved) if not k.startswith('_') and k[0].isupper()]
        assert public and all(getattr(module, k) is getattr(moved, k) for k in public)
    import mmseg_dynopool.ops as ops
    with pytest.warns(DeprecationWarning, match='mmseg_dynopool.layers.DynOPool'):
        assert ops.DynOPool is DynOPool


def test_dynopool_cfg_is_a_deprecated_name_of_pool_cfg():
    from mmseg_dynopool.layers import pool_cfg_arg
    assert pool_cfg_arg(dict(min_size=2), None, 'X') == dict(min_size=2)
    with pytest.warns(DeprecationWarning, match='X: dynopool_cfg is deprecated, use pool_cfg'):
        merged = pool_cfg_arg(dict(min_size=2, aggregation='max'), dict(aggregation='avg'),
                              'X')
    assert merged == dict(min_size=2, aggregation='avg')


def test_backbones_take_pool_cfg_and_the_old_name():
    from mmseg_dynopool.models.backbones import DynOPoolHRNet
    from ..conftest import tiny_hrnet_extra
    new = DynOPoolHRNet(tiny_hrnet_extra(), pool_cfg=dict(aggregation='avg'))
    with pytest.warns(DeprecationWarning, match='DynOPoolHRNet: dynopool_cfg'):
        old = DynOPoolHRNet(tiny_hrnet_extra(), dynopool_cfg=dict(aggregation='avg'))
    for model in (new, old):
        assert {m.aggregation for _, m in resizing_layers(model)} == {'avg'}


def test_dynopool_output_size_bounds_follow_its_ratio_and_size_bounds():
    layer = DynOPool(0.5, min_size=1.5, min_ratio=0.1, max_ratio=2.0, max_size=30)
    assert layer.output_size_bounds(20, 40) == (4, 30)   # ceil(40 * 0.1), min(40, 30)
    assert DynOPool(0.5).output_size_bounds(8, 8) == (2, 32)  # min_size 1.5 -> 2
    with pytest.raises(NotImplementedError):
        ShapeAdaptor(0.75).output_size_bounds(8, 8)
