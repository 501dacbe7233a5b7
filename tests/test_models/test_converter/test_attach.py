"""Attaching the pools: one instance per level through hooks, the original state-dict
keys plus one ``alpha`` per pool, and 'before' vs 'after' hook sites."""
import pytest
import torch

from mmseg_dynopool.models.converter import (PoolAfter, PoolBefore, converted_pools)

from .tiny_models import MODELS, converted, original


def test_residual_and_shortcut_share_one_instance():
    model, _ = converted('resnetv1c')
    block = model.layer2[0]
    hooks = [h for m in (block.conv1, block.downsample[0])
             for h in m._forward_pre_hooks.values()]
    assert len(hooks) == 2 and hooks[0] is hooks[1]
    assert isinstance(hooks[0], PoolBefore) and hooks[0].pool is block.dynopool
    assert block.conv1.stride == (1, 1) and block.downsample[0].stride == (1, 1)
    assert not [h for m in model.modules() for h in m._forward_hooks.values()
                if isinstance(h, PoolAfter)]      # 'before' uses pre-hooks only


def test_after_hooks_the_activation():
    model, conversion = converted('mobilenetv2', placement='after')
    # The stem ConvModule (conv, bn, relu6) gets the pool on its output.
    stem = model.conv1
    assert [type(h) for h in stem._forward_hooks.values()] == [PoolAfter]
    assert stem._forward_hooks and not stem.conv._forward_pre_hooks
    assert conversion.pools[0].ops == ['conv1.conv']


@pytest.mark.parametrize('name', sorted(MODELS))
def test_keys_are_the_originals_plus_alphas_and_a_checkpoint_loads(name, tmp_path):
    orig = original(name)
    with torch.no_grad():
        for p in orig.parameters():
            p.add_(torch.randn_like(p))
    model, conversion = converted(name)
    keys, original_keys = set(model.state_dict()), set(orig.state_dict())
    assert keys - original_keys == {f'{p}.alpha' for p in conversion.pool_names}
    assert original_keys <= keys
    path = tmp_path / 'original.pth'
    torch.save(orig.state_dict(), path)
    missing, unexpected = model.load_state_dict(torch.load(path), strict=False)
    assert not unexpected
    assert set(missing) == {f'{p}.alpha' for p in conversion.pool_names}
    state = model.state_dict()
    for k, v in orig.state_dict().items():
        assert torch.equal(state[k], v), k
    for _, pool in converted_pools(model):  # alphas keep their initial values
        assert torch.allclose(pool.ratio, torch.tensor(pool.init_ratio))
