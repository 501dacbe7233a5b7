"""Checks around a conversion: its arguments before, its result after.

* :func:`check_arguments`: the converter's arguments, before anything is traced or
  changed (a clear ``ValueError`` naming the bad argument).
* :func:`warn_if_nothing_converted`: converting nothing is almost always a mistake (a
  layer type whose size rule is not exact, with ``exact_sizes=True``): say why, loudly.
* :func:`check_level_sizes`: the converter's promise on a real forward - every
  resolution level has one size for any input size and any ratios, so no residual sum,
  fuse sum or concatenation can see two sizes.
"""
from typing import Dict, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from .placement import PLACEMENTS
from .pool_cfg import pool_config
from .records import CONVERSION_ATTR, Conversion, get_conversion
from .trace import Size, spatial


def check_arguments(module: nn.Module, placement: str, pool_cfg: Optional[dict],
                    skip: Union[str, Sequence[str]]) -> Tuple[Tuple[str, ...], dict]:
    """Validate the converter's arguments; returns ``skip`` as a tuple and the layer
    config with its defaults (:func:`~.pool_cfg.pool_config`).

    Raises:
        ValueError: an unknown ``placement``, a module that is already converted or a
            ``pool_cfg`` that sets ``init_ratio``.
    """
    if placement not in PLACEMENTS:
        raise ValueError(f'placement must be one of {PLACEMENTS}, got {placement!r}')
    if getattr(module, CONVERSION_ATTR, None) is not None:
        raise ValueError('this module is already converted')
    skip = (skip, ) if isinstance(skip, str) else tuple(skip)
    return skip, pool_config(pool_cfg)


def warn_if_nothing_converted(conversion: Conversion) -> None:
    """Log a warning with the reasons when resizing ops exist but none was converted."""
    if conversion.pools or not conversion.left_alone:
        return
    from mmengine.logging import print_log
    print_log('convert_to_dynopool: no resizing op was converted; the model is '
              'unchanged. Reasons: ' + '; '.join(
                  f'{k}: {v}' for k, v in list(conversion.left_alone.items())[:8]),
              logger='current', level=30)


def check_level_sizes(model: nn.Module, x: Tensor) -> Dict[int, Size]:
    """Run ``model(x)`` and check that every resolution level has one size.

    Compares each module call's output with the level it had in the traced forward of
    the conversion (same call order).

    Args:
        model: a converted model, or a module containing one (a segmentor).
        x: its input.

    Returns:
        ``{level index: size}`` of the levels seen.

    Raises:
        ValueError: ``model`` holds no converted module.
        AssertionError: a level whose feature maps have different sizes.
    """
    prefix, conversion = get_conversion(model)
    if conversion is None:
        raise ValueError('check_level_sizes: the model has no converted module')
    root = model.get_submodule(prefix)
    pool_names = set(conversion.pool_names)
    pool_level = {name: lv for lv, name in conversion.level_pools.items()}
    seen: Dict[int, Dict[Size, list]] = {}
    counts: Dict[str, int] = {}
    handles = []
    for name, m in root.named_modules():
        if name not in conversion.call_levels and name not in pool_names:
            continue

        def hook(mod, args, out, name=name):
            k = counts.get(name, 0)
            counts[name] = k + 1
            if name in pool_level:
                level = pool_level[name]
            else:
                levels = conversion.call_levels[name]
                level = levels[k] if k < len(levels) else None
            t = next((o for o in ([out] if not isinstance(out, (tuple, list)) else out)
                      if spatial(o) is not None), None)
            if level is not None and t is not None:
                seen.setdefault(level, {}).setdefault(spatial(t), []).append(
                    f'{name}#{k}')
        handles.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    bad = {lv: sizes for lv, sizes in seen.items() if len(sizes) > 1}
    if bad:
        lv, sizes = next(iter(bad.items()))
        detail = '; '.join(f'{s}: {names[:3]}' for s, names in sizes.items())
        raise AssertionError(f'{len(bad)} level(s) with several sizes, e.g. level {lv}: '
                             f'{detail}')
    return {lv: next(iter(sizes)) for lv, sizes in seen.items()}
