"""utils/pairs.py: the one parser for (h, w) pairs."""
import math

import pytest

from mmseg_dynopool import DiffStride, DynOPool, ShapeAdaptor
from mmseg_dynopool.utils.pairs import PairError, is_pair_like, to_int_pair, to_pair


@pytest.mark.parametrize('value, pair', [(0.5, (0.5, 0.5)), (2, (2.0, 2.0)),
                                         ((0.5, 0.25), (0.5, 0.25)), ([1, 3], (1.0, 3.0))])
def test_numbers_and_pairs_parse(value, pair):
    assert to_pair(value, 'r') == pair
    assert is_pair_like(value)


@pytest.mark.parametrize('value', [True, 'a', None, (1, 2, 3), (1,), (1, 'x'), (True, 1)])
def test_other_forms_are_refused_naming_the_option(value):
    assert not is_pair_like(value)
    with pytest.raises(PairError, match='init_ratio must be a number or a pair'):
        to_pair(value, 'init_ratio')
    # both error types, as the layers raised before the parser was shared
    assert issubclass(PairError, TypeError) and issubclass(PairError, ValueError)


@pytest.mark.parametrize('value', [0, -1, (0.5, 0.0), math.inf, (0.5, math.nan)])
def test_bad_values_are_refused(value):
    with pytest.raises(ValueError, match='r must be positive and finite'):
        to_pair(value, 'r')


def test_sign_and_finiteness_checks_can_be_relaxed():
    assert to_pair(-1.5, 's', positive=False) == (-1.5, -1.5)
    with pytest.raises(ValueError, match='s must be finite'):
        to_pair(math.inf, 's', positive=False)


def test_int_pairs_take_first_and_last_entries():
    assert to_int_pair(2) == (2, 2)
    assert to_int_pair((2, 1)) == (2, 1)
    assert to_int_pair([1, 2, 3]) == (1, 3)
    for bad in (1.5, True, 'a', (1.5, 2)):
        with pytest.raises(PairError, match='stride must be an int or a pair of ints'):
            to_int_pair(bad, 'stride')


def test_all_layers_share_the_parser_and_its_messages():
    for build in (lambda v: DynOPool(v), lambda v: ShapeAdaptor(v),
                  lambda v: DiffStride(init_ratio=v)):
        with pytest.raises(PairError, match='init_ratio must be a number or a pair'):
            build('half')
        with pytest.raises(ValueError, match='init_ratio'):
            build((0.5, -1))
