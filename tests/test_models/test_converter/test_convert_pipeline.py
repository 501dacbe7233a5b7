"""convert_to_dynopool end to end on mmseg ResNetV1c, MobileNetV2, HRNet,
MixVisionTransformer and mmpretrain ResNet: sizes at init equal the original's, one size
per level for any ratios; and the old module paths still work, with a warning."""
import importlib
import subprocess
import sys
import warnings

import pytest
import torch
from torch import nn

from mmseg_dynopool import DynOPool
from mmseg_dynopool.models.converter import check_level_sizes

from .tiny_models import (EVEN_ODD, MODELS, converted, module_sizes, original,
                          random_ratios)


@pytest.mark.parametrize('placement', ['before', 'after'])
@pytest.mark.parametrize('name', sorted(MODELS))
def test_sizes_at_init_equal_the_originals(name, placement):
    orig = original(name)
    model, conversion = converted(name, placement=placement)
    _, n_pools, shared, left_alone = MODELS[name]
    assert len(conversion.pools) == n_pools
    assert set(conversion.left_alone) == left_alone
    pool = next(p for p in conversion.pools if shared[0] in p.ops)
    assert set(shared) <= set(pool.ops)   # every path into one level: one pool
    for shape in EVEN_ODD:
        x = torch.randn(1, 3, *shape)
        want, want_out = module_sizes(orig, x)
        got, got_out = module_sizes(model, x)
        assert got_out == want_out, shape
        if placement == 'before':
            # Every module of the original outputs the original's size (but a fused
            # fixed-factor upsampling, now an nn.Identity before the explicit resize,
            # and the containers ending with it).
            fused = conversion.fused_upsampling
            for key, size in want.items():
                if key in got and not any(f == key[0] or f.startswith(key[0] + '.')
                                          for f in fused):
                    assert got[key] == size, (shape, key)
        # Each pool outputs the size its replaced op had (first call of its first op).
        for p in conversion.pools:
            assert model.get_submodule(p.name).last_size == want[(p.ops[0], 0)], \
                (shape, p.name)
    # No strided conv or max/avg pooling is left among the converted ops.
    for p in conversion.pools:
        for op in p.ops:
            m = model.get_submodule(op)
            assert isinstance(m, (nn.Conv2d, nn.Identity, DynOPool)), op
            if isinstance(m, nn.Conv2d):
                assert tuple(m.stride) == (1, 1), op


@pytest.mark.parametrize('placement', ['before', 'after'])
@pytest.mark.parametrize('name', sorted(MODELS))
def test_random_ratios_keep_one_size_per_level(name, placement):
    model, conversion = converted(name, placement=placement)
    for seed, shape in enumerate([(72, 80), (67, 93)]):
        random_ratios(model, seed)
        sizes = check_level_sizes(model, torch.randn(1, 3, *shape))
        # The converted levels really moved away from the human sizes.
        learned = {sizes[lv] for lv in conversion.level_pools if lv in sizes}
        assert len(learned) >= 2
        for lv, pool_name in conversion.level_pools.items():
            if lv in sizes:
                assert model.get_submodule(pool_name).last_size == sizes[lv]


@pytest.mark.parametrize('old, new, names', [
    ('mmseg_dynopool.models.utils.convert', 'mmseg_dynopool.models.converter',
     ['convert_to_dynopool', 'Conversion', 'ConvertedPool', 'check_level_sizes',
      'get_conversion', 'converted_pools', 'PLACEMENTS', 'to_pair']),
    ('mmseg_dynopool.models.utils.probe', 'mmseg_dynopool.models.converter.trace',
     ['trace_forward', 'Trace', 'ModuleCall', 'spatial', 'flat_tensors']),
    ('mmseg_dynopool.models.utils.resize_hooks', 'mmseg_dynopool.models.converter.hooks',
     ['PoolBefore', 'PoolAfter', 'ClearPoolCaches']),
    ('mmseg_dynopool.models.utils.init_ratios',
     'mmseg_dynopool.models.converter.init_ratios',
     ['resolve_init_ratios', 'as_ratio', 'is_ratio', 'InitRatios']),
])
def test_old_module_paths_are_deprecated_shims(old, new, names):
    sys.modules.pop(old, None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        module = importlib.import_module(old)
    assert any(issubclass(w.category, DeprecationWarning) and old in str(w.message)
               for w in caught)
    target = importlib.import_module(new)
    for name in names:
        assert getattr(module, name) is getattr(target, name), name
    sys.modules.pop('mmseg_dynopool.models.utils', None)
    with pytest.warns(DeprecationWarning, match='models.converter'):
        package = importlib.import_module('mmseg_dynopool.models.utils')
    converter = importlib.import_module('mmseg_dynopool.models.converter')
    for name in package.__all__:
        assert getattr(package, name) is getattr(converter, name), name


def test_the_package_imports_no_shim():
    """Importing the package and converting a model warns about nothing of ours."""
    code = ('import warnings; warnings.simplefilter("error", DeprecationWarning)\n'
            'import mmseg_dynopool, sys\n'
            'from mmseg_dynopool.models import convert_to_dynopool\n'
            'from torch import nn\n'
            'model = nn.Sequential(nn.Conv2d(3, 4, 3, 1, 1), nn.MaxPool2d(3, 2, 1))\n'
            'assert convert_to_dynopool(model).pools\n'
            'old = [m for m in sys.modules\n'
            '       if m.startswith("mmseg_dynopool.models.utils")]\n'
            'assert not old, old\n')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
