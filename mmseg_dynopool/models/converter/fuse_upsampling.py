"""Optional pass (``fuse_upsampling=True``, the default): drop fixed-factor upsamplings
into learned levels.

An ``nn.Upsample`` / mmseg ``Upsample`` with a ``scale_factor``, called once, whose input
lies in a converted level and whose output is only ever resized to an explicit size
(``interpolate(x, size)``) becomes an ``nn.Identity``: once sizes are learned its factor
is wrong, and the explicit resize alone gives the same values at the initial ratios
(bilinear x2 then to a size = bilinear to that size). These are HRNet's fuse layers
(thesis 5.2.1: "maintain the bilinear interpolation layers", now one interpolation
each).
"""
from typing import List, Sequence

from torch import nn

from .attach import set_module
from .levels import LevelGroup
from .match_utils import is_upsampling
from .trace import Trace


def _explicit_resize(call) -> bool:
    """``interpolate`` with a ``size`` (keyword or second argument)."""
    return call.name == 'interpolate' and (
        call.kwargs.get('size') is not None or
        (len(call.args) > 1 and call.args[1] is not None))


def fuse_fixed_upsampling(root: nn.Module, trace: Trace,
                          groups: Sequence[LevelGroup]) -> List[str]:
    """Replace the fixed-factor upsamplings out of the levels of ``groups`` by
    ``nn.Identity`` (in place); returns their names in forward order."""
    converted_levels = {g.level for g in groups}
    fused = []
    for call in trace.calls:
        m = call.module
        if not is_upsampling(m) or m.size or trace.num_calls(m) != 1 or \
                not call.inputs or not call.outputs:
            continue
        if trace.level(call.inputs[0]) not in converted_levels:
            continue
        users = trace.consumers(call.outputs[0], after=call.end)
        if users and all(_explicit_resize(u) for u in users):
            set_module(root, call.name, nn.Identity())
            fused.append(call.name)
    return fused
