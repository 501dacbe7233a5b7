"""Freeze a trained DynOPool model into a fixed-size one and export it to ONNX.

A DynOPool's output size depends on its alpha and on its input size. For one network
input size every DynOPool therefore has fixed input and output sizes, and its forward is
exactly ``F.interpolate(x, size=(2h, 2w), mode='bilinear', align_corners=False)``
followed by a 2x2 max (or mean) pooling (see ``ops/functional.py``: the query points of
Eq. 4.2 are the sample points of that resize). :func:`freeze_dynopool` runs the model
once at the given input size, records every DynOPool's ``input size -> output size`` and
replaces each DynOPool - wherever it is referenced: as a submodule, or inside a hook
object such as DynOPoolHRNet's ``ResizeBefore`` - by a :class:`FrozenDynOPool` doing just
that resize + pooling. No learnable resizing (no alpha, no straight-through sizes, no
custom autograd function) is left, so ``torch.onnx.export`` traces plain ``Resize`` and
``MaxPool``/``AveragePool`` nodes.

The frozen model is only valid at the input size it was frozen at (the sizes are
baked in); a different input size raises a clear error instead of silently resampling.
"""
import copy
import json
import os
import os.path as osp
import warnings
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops import DynOPool, dynopool_layers
from ..ops.functional import AGGREGATIONS

Size = Tuple[int, int]

#: File names written by :func:`save_frozen` (and the freeze tool).
CONFIG_FILE = 'config.py'
WEIGHTS_FILE = 'frozen_model.pth'
SIZES_FILE = 'frozen_sizes.json'
ONNX_FILE = 'model.onnx'


class FrozenDynOPool(nn.Module):
    """A DynOPool with its sizes fixed: bilinear resize to ``(2h, 2w)`` + 2x2 pooling.

    Args:
        sizes (dict): ``{(H_in, W_in): (h, w)}``, the output size for every input size
            the original DynOPool saw at the frozen network input size (one entry in
            practice; HRNet's shared pools always see the same size).
        aggregation (str): ``'max'`` or ``'avg'``, as the original DynOPool.
        name (str): where the pool lives in the model (for error messages).
    """

    def __init__(self, sizes: Dict[Size, Size], aggregation: str = 'max',
                 name: str = '') -> None:
        super().__init__()
        if aggregation not in AGGREGATIONS:
            raise ValueError(f'aggregation must be one of {AGGREGATIONS}, '
                             f'got {aggregation!r}')
        if not sizes:
            raise ValueError('FrozenDynOPool needs at least one input -> output size')
        self.sizes = {(int(k[0]), int(k[1])): (int(v[0]), int(v[1]))
                      for k, v in sizes.items()}
        self.aggregation = aggregation
        self.name = name
        # Mirrors of DynOPool's attributes that reports and DynOPoolHRNet.feature_sizes()
        # read.
        self.last_size: Optional[Size] = None
        self.last_input_size: Optional[Size] = None
        # The effective 1/ratio (input/output size, of the first table entry) as a
        # constant, non-persistent buffer - not a parameter, never learned. It exists
        # because code written for DynOPool touches ``pool.alpha`` (DynOPoolHRNet's
        # _freeze_stages sets its requires_grad on every train()/eval()).
        (h_in, w_in), (h, w) = next(iter(self.sizes.items()))
        self.register_buffer('alpha', torch.tensor([h_in / h, w_in / w]),
                             persistent=False)

    @property
    def ratio(self) -> Tensor:
        """Effective ``(r_h, r_w)`` = output / input size (first table entry)."""
        return 1.0 / self.alpha

    def extra_repr(self) -> str:
        pairs = ', '.join(f'{i[0]}x{i[1]}->{o[0]}x{o[1]}' for i, o in self.sizes.items())
        return f'{pairs}, aggregation={self.aggregation!r}'

    def forward(self, x: Tensor) -> Tensor:
        # Python ints on purpose: under ONNX tracing the sizes become constants.
        in_size = (int(x.shape[-2]), int(x.shape[-1]))
        out = self.sizes.get(in_size)
        if out is None:
            known = ', '.join(f'{h}x{w}' for h, w in self.sizes)
            raise RuntimeError(
                f'FrozenDynOPool {self.name or ""} was frozen for input size(s) {known}, '
                f'got {in_size[0]}x{in_size[1]}: the frozen model only runs at the '
                'network input size it was frozen at; freeze the trained model again '
                'for this size.')
        z = F.interpolate(x, size=(2 * out[0], 2 * out[1]), mode='bilinear',
                          align_corners=False)
        self.last_input_size, self.last_size = in_size, out
        if self.aggregation == 'max':
            return F.max_pool2d(z, 2)
        return F.avg_pool2d(z, 2)


def _is_pool(obj: Any) -> bool:
    return isinstance(obj, (DynOPool, FrozenDynOPool))


def _hook_dicts(module: nn.Module) -> List[dict]:
    return [module._forward_pre_hooks, module._forward_hooks]


def named_pools(model: nn.Module, kinds: Tuple[type, ...] = (DynOPool, )
                ) -> List[Tuple[str, nn.Module]]:
    """Every distinct pool of type ``kinds`` that ``model`` uses, with a stable name.

    Pools in the module tree are named as by :func:`~mmseg_dynopool.dynopool_layers`;
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


def _call_model(model: nn.Module, x: Tensor):
    """The tensor forward (mm models take ``mode='tensor'``, plain modules just ``x``)."""
    from mmengine.model import BaseModel
    if isinstance(model, BaseModel):
        return model(x, mode='tensor')
    return model(x)


@torch.no_grad()
def record_pool_sizes(model: nn.Module, input_shape: Sequence[int], in_channels: int = 3
                      ) -> Dict[int, Dict[Size, Size]]:
    """``{id(pool): {input size: output size}}`` of every DynOPool call in one forward
    of ``model`` (eval mode) on a ``1 x in_channels x H x W`` input."""
    sizes: Dict[int, Dict[Size, Size]] = {}

    def hook(module, args, output):
        if isinstance(module, DynOPool):
            in_size = (int(args[0].shape[-2]), int(args[0].shape[-1]))
            sizes.setdefault(id(module), {})[in_size] = (int(output.shape[-2]),
                                                         int(output.shape[-1]))

    device = next(model.parameters()).device
    x = torch.zeros(1, in_channels, *input_shape, device=device)
    # A global hook sees every call, also of pools reached only through hooks.
    handle = nn.modules.module.register_module_forward_hook(hook)
    was_training = model.training
    model.eval()
    try:
        _call_model(model, x)
    finally:
        handle.remove()
        model.train(was_training)
    return sizes


def freeze_dynopool(model: nn.Module, input_shape: Sequence[int], in_channels: int = 3
                    ) -> nn.Module:
    """A copy of ``model`` with every DynOPool replaced by a :class:`FrozenDynOPool`.

    The sizes are those the DynOPools have for a network input of ``input_shape``
    ``(H, W)``; at that size the frozen model computes the same outputs as ``model``
    (same ops, same order). ``model`` itself is not changed. The copy is in eval mode
    and has no DynOPool (and no ``alpha``) left.

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
    replacement = {id(pool): FrozenDynOPool(sizes[id(pool)], pool.aggregation, name)
                   for name, pool in pools}
    _replace_pools(frozen, replacement)
    for p in frozen.parameters():
        p.requires_grad_(False)
    _assert_no_dynopool_runs(frozen, input_shape, in_channels)
    return frozen


@torch.no_grad()
def _assert_no_dynopool_runs(model: nn.Module, input_shape: Sequence[int],
                             in_channels: int) -> None:
    left = [n for n, m in model.named_modules() if isinstance(m, DynOPool)]
    called: List[str] = []

    def hook(module, args):
        if isinstance(module, DynOPool):
            called.append(module.extra_repr())

    handle = nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        device = next(model.parameters()).device
        _call_model(model, torch.zeros(1, in_channels, *input_shape, device=device))
    finally:
        handle.remove()
    if left or called:
        raise RuntimeError(
            'freeze_dynopool: DynOPool layers are still used after freezing '
            f'(submodules: {left}, calls: {len(called)}); they are referenced from a '
            'place other than a submodule or a hook object attribute')


def frozen_sizes(model: nn.Module) -> Dict[str, Dict[str, Any]]:
    """JSON-able ``{pool name: {"aggregation", "sizes": [{"input", "output"}]}}`` of a
    frozen model (names as :func:`named_pools` gives them in the unfrozen model)."""
    out = {}
    for name, pool in named_pools(model, (FrozenDynOPool, )):
        out[name] = dict(aggregation=pool.aggregation,
                         sizes=[dict(input=list(i), output=list(o))
                                for i, o in pool.sizes.items()])
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
        replacement[id(pool)] = FrozenDynOPool(table, entry['aggregation'], name)
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
    from ..analysis.report import build_model_from_config
    blob = torch.load(osp.join(out_dir, WEIGHTS_FILE), map_location='cpu',
                      weights_only=False)
    model = build_model_from_config(config or osp.join(out_dir, CONFIG_FILE))
    apply_frozen_sizes(model, blob['frozen_sizes'])
    model.load_state_dict(blob['state_dict'], strict=True)
    return model.eval()


class TensorForward(nn.Module):
    """``forward(x)`` = the model's tensor forward (what gets exported to ONNX).

    For mmseg segmentors: the decode head's logits at its own resolution (no resize to
    the image, no argmax); for mmpretrain classifiers: the head's output. Tuples/lists
    of tensors come out as a tuple.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor):
        out = _call_model(self.model, x)
        return tuple(out) if isinstance(out, (list, tuple)) else out


def export_onnx(model: nn.Module, input_shape: Sequence[int], path: str,
                in_channels: int = 3, opset_version: int = 17,
                dynamic_batch: bool = True) -> str:
    """Export ``model``'s tensor forward to ONNX at input ``1 x C x H x W``.

    Pass a frozen model (:func:`freeze_dynopool`); a model with live DynOPools is
    refused, its custom autograd function has no ONNX form. Uses the TorchScript-based
    exporter (``dynamo=False``): the torch.export-based default needs ``onnxscript``,
    which this project does not install. Spatial sizes are fixed; the batch axis is
    dynamic unless ``dynamic_batch=False``. Input name ``input``, outputs ``output``
    (``output0``, ``output1``... for several).
    """
    if dynopool_layers(model):
        raise ValueError('export_onnx: the model still has DynOPool layers; freeze it '
                         'first with freeze_dynopool(model, input_shape)')
    wrapper = TensorForward(model).eval()
    device = next(model.parameters()).device
    x = torch.zeros(1, in_channels, *input_shape, device=device)
    with torch.no_grad():
        out = wrapper(x)
    n_out = len(out) if isinstance(out, tuple) else 1
    outputs = ['output'] if n_out == 1 else [f'output{i}' for i in range(n_out)]
    axes = None
    if dynamic_batch:
        axes = {name: {0: 'batch'} for name in ['input', *outputs]}
    os.makedirs(osp.dirname(osp.abspath(path)), exist_ok=True)
    with warnings.catch_warnings():
        # Tracer warnings about Python ints from shapes are the point: sizes are fixed.
        warnings.simplefilter('ignore')
        torch.onnx.export(wrapper, (x, ), path, input_names=['input'],
                          output_names=outputs, opset_version=opset_version,
                          dynamic_axes=axes, dynamo=False)
    return path


def run_onnx(path: str, x: Union[Tensor, Any]) -> List[Any]:
    """Run an exported model with onnxruntime (CPU) on ``x``; returns its outputs."""
    import numpy as np
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(path, options, providers=['CPUExecutionProvider'])
    arr = x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
    return session.run(None, {session.get_inputs()[0].name: arr.astype(np.float32)})


def max_abs_diff(a, b) -> float:
    """Largest absolute difference between two (tuples of) tensors / arrays."""
    import numpy as np
    a = a if isinstance(a, (list, tuple)) else [a]
    b = b if isinstance(b, (list, tuple)) else [b]
    if len(a) != len(b):
        raise ValueError(f'different numbers of outputs: {len(a)} vs {len(b)}')
    diff = 0.0
    for u, v in zip(a, b):
        u = u.detach().cpu().numpy() if isinstance(u, Tensor) else np.asarray(u)
        v = v.detach().cpu().numpy() if isinstance(v, Tensor) else np.asarray(v)
        if u.shape != v.shape:
            raise ValueError(f'output shapes differ: {u.shape} vs {v.shape}')
        diff = max(diff, float(np.abs(u.astype(np.float64) - v).max()))
    return diff


@torch.no_grad()
def compare_outputs(reference: nn.Module, frozen: nn.Module, x: Tensor,
                    onnx_path: Optional[str] = None) -> Dict[str, float]:
    """Max abs differences on ``x``: frozen vs reference (``frozen_vs_trained``) and,
    given ``onnx_path``, onnxruntime vs the frozen and the reference model; plus
    ``max_abs_trained_output`` for scale."""
    ref = TensorForward(reference).eval()(x)
    out = TensorForward(frozen).eval()(x)
    scale = max(float(t.abs().max()) for t in (ref if isinstance(ref, tuple) else [ref]))
    result = dict(max_abs_trained_output=scale, frozen_vs_trained=max_abs_diff(out, ref))
    if onnx_path is not None:
        ort_out = run_onnx(onnx_path, x)
        result['onnx_vs_frozen'] = max_abs_diff(ort_out, out)
        result['onnx_vs_trained'] = max_abs_diff(ort_out, ref)
    return result
