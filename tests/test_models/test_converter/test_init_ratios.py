"""The one ``init_ratios`` rule."""
import pytest

from mmseg_dynopool.models.converter.init_ratios import as_ratio, resolve_init_ratios

from .tiny_models import converted


def test_init_ratios_one_rule():
    names, defaults = ['a', 'b'], [(0.5, 0.5), (0.25, 0.25)]
    assert resolve_init_ratios(None, defaults, names) == defaults
    assert resolve_init_ratios(0.4, defaults, names) == [(0.4, 0.4)] * 2
    # A pair of numbers is (r_h, r_w), also with exactly two pools.
    assert resolve_init_ratios([0.5, 0.3], defaults, names) == [(0.5, 0.3)] * 2
    assert resolve_init_ratios([(0.5, 0.5), 0.3], defaults, names) == [(0.5, 0.5),
                                                                     (0.3, 0.3)]
    assert resolve_init_ratios({'b': (0.2, 0.3)}, defaults, names) == [(0.5, 0.5),
                                                                      (0.2, 0.3)]
    for bad in ([0.5, 0.5, 0.5], {'c': 0.5}, 'x', [0.5, -1]):
        with pytest.raises(ValueError, match='init_ratio'):
            resolve_init_ratios(bad, defaults, names)
    model, conversion = converted('resnetv1c', init_ratios={'maxpool': (0.6, 0.4)})
    assert model.maxpool.init_ratio == (0.6, 0.4)
    assert conversion.pools[0].init_ratio == (0.5, 0.5)


def test_as_ratio():
    assert as_ratio(2) == (2.0, 2.0) and as_ratio([0.5, 0.25]) == (0.5, 0.25)
    for bad in (True, float('nan'), 0, (0.5, ), 'x'):
        with pytest.raises(ValueError, match='init_ratio'):
            as_ratio(bad)
