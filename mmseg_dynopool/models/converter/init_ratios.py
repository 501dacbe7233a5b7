"""The one rule for ``init_ratios``: the initial ratio of every resizing layer of a model.

A ratio is the scale factor ``r = (r_h, r_w)`` of Eq. 4.1 (``H_out = round(H_in r_h)``),
written ``r`` for both axes or ``(r_h, r_w)``; the layer learns ``alpha = 1 / r``
(Eq. 4.6). Used by :func:`~.convert.convert_to_dynopool` and so by every DynOPool
backbone (``DynOPoolBackbone``, ``DynOPoolHRNet``, the classification backbones).
``init_ratios`` is

* ``None``: the human-designed model - each pool starts at ``1 / stride`` of the op it
  replaces (per axis; the product of the strides for two merged ops);
* one number ``r``: every pool starts at ``(r, r)``;
* a pair of numbers ``(r_h, r_w)`` or ``[r_h, r_w]``: every pool starts at it. A pair of
  numbers is **always** ``(r_h, r_w)``, also for a model with exactly two pools;
* a sequence with one entry per pool, in forward order, each entry a number or a pair;
  for a two-pool model write the entries as pairs (``[(0.5, 0.5), (0.25, 0.25)]``) or
  use a dict;
* a dict ``{pool name: ratio}``: those pools, the others as for ``None``.

Before the converter, a 2-list meant ``(r_h, r_w)`` in ``DynOPoolHRNet`` but one ratio
per pool in a two-pool classification backbone; the second reading is gone (no shipped
config used it: the classification backbones have three to five pools).
"""
import math
from numbers import Real
from typing import Dict, List, Optional, Sequence, Tuple, Union

Ratio = Tuple[float, float]
RatioLike = Union[float, Sequence[float]]
InitRatios = Optional[Union[RatioLike, Sequence[RatioLike], Dict[str, RatioLike]]]


def _is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def is_ratio(value) -> bool:
    """A number or a pair of numbers."""
    return _is_number(value) or (isinstance(value, (tuple, list)) and len(value) == 2
                                 and all(_is_number(v) for v in value))


def as_ratio(value, name: str = 'init_ratio') -> Ratio:
    """``value`` (a number or a pair) as a validated ``(r_h, r_w)`` of positive floats."""
    if not is_ratio(value):
        raise ValueError(f'{name} must be a number or a pair (r_h, r_w), got {value!r}')
    pair = (value, value) if _is_number(value) else tuple(value)
    pair = (float(pair[0]), float(pair[1]))
    if any(not math.isfinite(v) or v <= 0 for v in pair):
        raise ValueError(f'{name} must be positive and finite, got {value!r}')
    return pair


def resolve_init_ratios(init_ratios: InitRatios, defaults: Sequence[Ratio],
                        names: Sequence[str]) -> List[Ratio]:
    """One ``(r_h, r_w)`` per pool from ``init_ratios`` (see the module docstring).

    Args:
        init_ratios: the user's value.
        defaults: the human-designed ratio of each pool, in forward order.
        names: the pools' names (module paths), in forward order.

    Raises:
        ValueError: a value that is not a ratio, not positive and finite, a list of the
            wrong length or a dict naming an unknown pool; the message names
            ``init_ratios`` and the expected pools.
    """
    if len(defaults) != len(names):
        raise ValueError('defaults and names must have the same length')
    expected = (f'None, one ratio (a number or (r_h, r_w)), a list of {len(names)} '
                f'ratios (one per pool in forward order: {list(names)}) or a dict '
                '{pool name: ratio}')
    if init_ratios is None:
        ratios = list(defaults)
    elif isinstance(init_ratios, dict):
        unknown = sorted(set(init_ratios) - set(names))
        if unknown:
            raise ValueError(f'init_ratios names unknown pools {unknown}; the pools are '
                             f'{list(names)}')
        ratios = [init_ratios.get(n, d) for n, d in zip(names, defaults)]
    elif is_ratio(init_ratios):
        ratios = [init_ratios] * len(names)
    elif isinstance(init_ratios, (tuple, list)) and len(init_ratios) == len(names) and \
            all(is_ratio(r) for r in init_ratios):
        ratios = list(init_ratios)
    else:
        raise ValueError(f'init_ratios must be {expected}; got {init_ratios!r}')
    return [as_ratio(r, f'init_ratio of {n}') for n, r in zip(names, ratios)]
