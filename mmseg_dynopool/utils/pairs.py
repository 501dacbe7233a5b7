"""One parser for the ``(h, w)`` pairs of the package: ratios, strides, sizes.

Every layer and converter option that takes "a number or a pair (h, w)" parses it here,
so the accepted forms and the error messages are the same everywhere.
"""
import math
from numbers import Integral, Real
from typing import Sequence, Tuple, Union

#: An integer ``(h, w)`` size (a feature map, an input, a kernel).
Size = Tuple[int, int]
#: A ratio ``r`` for both axes or ``(r_h, r_w)``.
RatioLike = Union[float, Sequence[float]]
#: A parsed ratio ``(r_h, r_w)``.
Ratio = Tuple[float, float]


class PairError(TypeError, ValueError):
    """A value that is not a number or a pair of numbers.

    Both a ``TypeError`` (the value has the wrong form) and a ``ValueError`` (it is a
    bad value for the option), so callers that caught either before keep working."""


def _is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def is_pair_like(value) -> bool:
    """A number, or a tuple/list of exactly two numbers (``bool`` is not a number)."""
    return _is_number(value) or (isinstance(value, (tuple, list)) and len(value) == 2
                                 and all(_is_number(v) for v in value))


def to_pair(value, name: str = 'value', positive: bool = True,
            finite: bool = True) -> Tuple[float, float]:
    """``value`` (a number ``v`` or a pair ``(h, w)``) as a ``(float, float)`` pair.

    Args:
        value: a real number (both axes) or a tuple/list of two real numbers.
        name (str): the option's name, for the error message.
        positive (bool): require both entries > 0. Default: True.
        finite (bool): require both entries finite. Default: True.

    Raises:
        PairError: ``value`` is not a number or a pair of numbers.
        ValueError: an entry is not finite or not positive (as required).

    Example:
        >>> to_pair(0.5, 'init_ratio')
        (0.5, 0.5)
        >>> to_pair([0.5, 0.25], 'init_ratio')
        (0.5, 0.25)
    """
    if not is_pair_like(value):
        raise PairError(f'{name} must be a number or a pair (h, w) of numbers, '
                        f'got {value!r}')
    pair = (value, value) if _is_number(value) else (value[0], value[1])
    out = (float(pair[0]), float(pair[1]))
    bad = [v for v in out if (finite and not math.isfinite(v)) or (positive and not v > 0)]
    if bad:
        need = ' and '.join(w for w, on in (('positive', positive), ('finite', finite)) if on)
        raise ValueError(f'{name} must be {need}, got {value!r}')
    return out


def to_int_pair(value, name: str = 'value') -> Size:
    """A stride / kernel / size argument (an int or a pair of ints; a longer sequence
    counts its first and last entries, as ``nn.Conv2d`` stores them) as ``(h, w)``."""
    if isinstance(value, (tuple, list)) and len(value) >= 1:
        value = (value[0], value[-1])
    elif isinstance(value, Integral) and not isinstance(value, bool):
        value = (value, value)
    else:
        raise PairError(f'{name} must be an int or a pair of ints, got {value!r}')
    if not all(isinstance(v, Integral) and not isinstance(v, bool) for v in value):
        raise PairError(f'{name} must be an int or a pair of ints, got {value!r}')
    return int(value[0]), int(value[1])
