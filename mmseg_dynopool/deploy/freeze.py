"""Freeze a trained model's learnable resizing layers into fixed-size ones; save/load.

A DynOPool's output size depends on its alpha and on its input size (likewise a
ShapeAdaptor's on its alpha, a DiffStride's on its stride). For one network input size
every such layer therefore has fixed input and output sizes. :func:`freeze_dynopool` runs
the model once at the given input size (the cost model's probe forward), records every
layer's ``input size -> output size`` and replaces each layer - wherever it is
referenced: as a submodule, or inside a hook object such as DynOPoolHRNet's
``ResizeBefore`` - by its fixed-size stand-in (``deploy/frozen_layer.py``). No learnable
resizing is left, so ``torch.onnx.export`` traces plain ops (``deploy/onnx.py``).

The frozen model is only valid at the input size it was frozen at (the sizes are
baked in); a different input size raises a clear error instead of silently resampling.
"""
import copy
import json
import os
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from ..layers import DynOPool, ResizingLayer, is_resizing_layer
from ..models.cost import call_model, probe
from ..utils.pairs import Size
from .frozen_layer import FrozenDynOPool, FrozenLayer, FrozenResizingLayer
from .onnx import ONNX_FILE  # noqa: F401  (the file names of a frozen model, together)

#: File names written by :func:`save_frozen` (and the freeze tool).
CONFIG_FILE = 'config.py'
WEIGHTS_FILE = 'frozen_model.pth'
SIZES_FILE = 'frozen_sizes.json'
#: The fixed-size stand-ins a frozen model contains.
FROZEN_LAYERS: Tuple[type, ...] = (FrozenLayer, )
#: The stand-in class of a resizing layer type (looked up along the type's MRO, like
#: torch.ao's module mappings); any other :class:`ResizingLayer` gets
#: :class:`FrozenResizingLayer` (its own forward at a fixed parameter).
STAND_INS: Dict[type, type] = {DynOPool: FrozenDynOPool}


def _frozen(layer: ResizingLayer, sizes: Dict[Size, Size], name: str) -> FrozenLayer:
    """The fixed-size stand-in of one resizing layer."""
    cls = next((STAND_INS[t] for t in type(layer).__mro__ if t in STAND_INS),
               FrozenResizingLayer)
    return cls.from_layer(layer, sizes, name)


def _is_pool(obj: Any) -> bool:
    return isinstance(obj, (ResizingLayer, FrozenLayer))


def _hook_dicts(module: nn.Module) -> List[dict]:
    return [module._forward_pre_hooks, module._forward_hooks]


def named_pools(model: nn.Module, kinds: Tuple[type, ...] = (ResizingLayer, )
                ) -> List[Tuple[str, nn.Module]]:
    """Every distinct pool of type ``kinds`` (default: every learnable resizing layer)
    that ``model`` uses, with a stable name.

    Pools in the module tree are named as by :func:`~mmseg_dynopool.resizing_layers`;
    a pool referenced only by a hook object gets ``<module>.<hook>.<attribute>``.
    """
    found: Dict[int, str] = {}
    out: List[Tuple[str, nn.Module]] = []
    for name, module in model.named_modules():
        if isinstance(module, kinds) and id(module) not in found:
            found[id(module)] = name
            out.append((name, module))
    for name, module in model.named_modules():
        for hooks in _hook_dicts(module):
            for hook in hooks.values():
                for attr, value in getattr(hook, '__dict__', {}).items():
                    if isinstance(value, kinds) and id(value) not in found:
                        found[id(value)] = f'{name}.<hook>.{attr}'
                        out.append((found[id(value)], value))
    return out


def _replace_pools(model: nn.Module, replacement: Dict[int, nn.Module]) -> None:
    """Put ``replacement[id(pool)]`` wherever ``pool`` is referenced in ``model``."""
    for module in list(model.modules()):
        for key, child in list(module._modules.items()):
            if child is not None and id(child) in replacement:
                module._modules[key] = replacement[id(child)]
        for hooks in _hook_dicts(module):
            for hook in hooks.values():
                for attr, value in list(getattr(hook, '__dict__', {}).items()):
                    if _is_pool(value) and id(value) in replacement:
                        setattr(hook, attr, replacement[id(value)])


def record_pool_sizes(model: nn.Module, input_shape: Sequence[int], in_channels: int = 3
                      ) -> Dict[int, Dict[Size, Size]]:
    """``{id(layer): {input size: output size}}`` of every resizing-layer call in one
    probe forward of ``model`` (:func:`~mmseg_dynopool.models.cost.probe`)."""
    sizes: Dict[int, Dict[Size, Size]] = {}

    def hook(module, args, output):
        if is_resizing_layer(module):
            in_size = (int(args[0].shape[-2]), int(args[0].shape[-1]))
            sizes.setdefault(id(module), {})[in_size] = (int(output.shape[-2]),
                                                         int(output.shape[-1]))

    with probe(model, input_shape, in_channels) as x:
        # A global hook sees every call, also of pools reached only through hooks.
        handle = nn.modules.module.register_module_forward_hook(hook)
        try:
            call_model(model, x)
        finally:
            handle.remove()
    return sizes


def freeze_dynopool(model: nn.Module, input_shape: Sequence[int], in_channels: int = 3
                    ) -> nn.Module:
    """A copy of ``model`` with every learnable resizing layer replaced by a fixed-size
    one: a DynOPool by a :class:`FrozenDynOPool`, a ShapeAdaptor or DiffStride by a
    :class:`FrozenResizingLayer`.

    The sizes are those the DynOPools have for a network input of ``input_shape``
    ``(H, W)``; at that size the frozen model computes the same outputs as ``model``
    (same ops, same order). ``model`` itself is not changed. The copy is in eval mode
    and has no live resizing layer left (a FrozenDynOPool has no ``alpha``).

    Raises:
        ValueError: ``model`` has no DynOPool, or a DynOPool is not used at that size.
        RuntimeError: a DynOPool is referenced somewhere this function cannot replace
            (e.g. captured in a closure) and still runs in the frozen model.
    """
    if len(input_shape) != 2 or min(input_shape) < 1:
        raise ValueError(f'input_shape must be (H, W), got {input_shape!r}')
    frozen = copy.deepcopy(model)
    frozen.eval()
    pools = named_pools(frozen)
    if not pools:
        raise ValueError('freeze_dynopool: the model has no DynOPool layer')
    sizes = record_pool_sizes(frozen, input_shape, in_channels)
    unused = [name for name, pool in pools if id(pool) not in sizes]
    if unused:
        raise ValueError(f'freeze_dynopool: DynOPool layers not used in a forward at '
                         f'{input_shape[0]}x{input_shape[1]}: {unused}')
    replacement = {id(pool): _frozen(pool, sizes[id(pool)], name) for name, pool in pools}
    _replace_pools(frozen, replacement)
    for p in frozen.parameters():
        p.requires_grad_(False)
    _assert_no_dynopool_runs(frozen, input_shape, in_channels)
    return frozen


@torch.no_grad()
def _assert_no_dynopool_runs(model: nn.Module, input_shape: Sequence[int],
                             in_channels: int) -> None:
    left = [n for n, m in model.named_modules() if is_resizing_layer(m)]
    called: List[str] = []

    def hook(module, args):
        if is_resizing_layer(module):
            called.append(module.extra_repr())

    handle = nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        device = next(model.parameters()).device
        call_model(model, torch.zeros(1, in_channels, *input_shape, device=device))
    finally:
        handle.remove()
    if left or called:
        raise RuntimeError(
            'freeze_dynopool: DynOPool layers are still used after freezing '
            f'(submodules: {left}, calls: {len(called)}); they are referenced from a '
            'place other than a submodule or a hook object attribute')


def frozen_sizes(model: nn.Module) -> Dict[str, Dict[str, Any]]:
    """JSON-able ``{layer name: {"type", "sizes": [{"input", "output"}]}}`` of a frozen
    model (plus ``"aggregation"`` for DynOPool; names as :func:`named_pools` gives them
    in the unfrozen model)."""
    out = {}
    for name, pool in named_pools(model, FROZEN_LAYERS):
        out[name] = pool.table_entry()
    return out


def apply_frozen_sizes(model: nn.Module, sizes: Dict[str, Dict[str, Any]]) -> nn.Module:
    """Replace the DynOPools of a freshly built ``model`` by frozen ones, in place, from
    the table of :func:`frozen_sizes` (how :func:`load_frozen` rebuilds a frozen
    model)."""
    pools = dict(named_pools(model))
    missing = sorted(set(pools) - set(sizes))
    extra = sorted(set(sizes) - set(pools))
    if missing or extra:
        raise ValueError(f'frozen size table does not match the model: DynOPools without '
                         f'sizes {missing}, sizes for unknown DynOPools {extra}')
    replacement = {}
    for name, pool in pools.items():
        entry = sizes[name]
        table = {tuple(s['input']): tuple(s['output']) for s in entry['sizes']}
        kind = entry.get('type', 'DynOPool')
        if kind != type(pool).__name__:
            raise ValueError(f'frozen size table: {name} is a {kind} there but a '
                             f'{type(pool).__name__} in the model')
        replacement[id(pool)] = _frozen(pool, table, name)
    _replace_pools(model, replacement)
    return model


def save_frozen(frozen: nn.Module, out_dir: str, cfg: Any = None,
                input_shape: Optional[Sequence[int]] = None,
                meta: Optional[dict] = None) -> Dict[str, str]:
    """Write a frozen model: ``frozen_model.pth`` (``state_dict`` without alphas,
    ``frozen_sizes``, ``input_shape``, ``meta``), ``frozen_sizes.json`` and, given the
    ``mmengine.Config`` of the original model, ``config.py``. Returns the paths."""
    os.makedirs(out_dir, exist_ok=True)
    sizes = frozen_sizes(frozen)
    paths = dict(weights=osp.join(out_dir, WEIGHTS_FILE),
                 sizes=osp.join(out_dir, SIZES_FILE))
    torch.save(dict(state_dict=frozen.state_dict(), frozen_sizes=sizes,
                    input_shape=list(input_shape) if input_shape else None,
                    meta=meta or {}), paths['weights'])
    with open(paths['sizes'], 'w') as f:
        json.dump(dict(input_shape=list(input_shape) if input_shape else None,
                       pools=sizes), f, indent=2)
    if cfg is not None:
        paths['config'] = osp.join(out_dir, CONFIG_FILE)
        cfg.dump(paths['config'])
    return paths


def load_frozen(out_dir: str, config: Optional[str] = None) -> nn.Module:
    """Rebuild a model written by :func:`save_frozen` (eval mode, frozen pools).

    ``config`` defaults to ``OUT_DIR/config.py`` (the original model's config: the model
    is built with DynOPools, which are then replaced from the saved size table before
    the weights are loaded strictly).
    """
    from ..models.build import build_model_from_config
    from ..utils.checkpoint_compat import load_checkpoint_file
    blob = load_checkpoint_file(osp.join(out_dir, WEIGHTS_FILE), map_location='cpu')
    model = build_model_from_config(config or osp.join(out_dir, CONFIG_FILE))
    apply_frozen_sizes(model, blob['frozen_sizes'])
    model.load_state_dict(blob['state_dict'], strict=True)
    return model.eval()
