"""Export a frozen model's tensor forward to ONNX and check it with onnxruntime.

Export needs a frozen model (``deploy/freeze.py``): the live resizing layers have no
ONNX form. DynOPool and ShapeAdaptor models export (plain ``Resize`` / pooling nodes);
DiffStride does not (``torch.fft`` has no ONNX export in the TorchScript-based
exporter) and :func:`export_onnx` raises :class:`UnsupportedExportError` saying so.
"""
import os
import os.path as osp
import warnings
from typing import Any, Dict, List, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from ..models.cost import call_model
from ..layers import resizing_layers

#: File name of the exported model (written by the freeze tool).
ONNX_FILE = 'model.onnx'


class UnsupportedExportError(RuntimeError):
    """The frozen model contains a layer that has no ONNX export (DiffStride)."""


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
        out = call_model(self.model, x)
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
    if resizing_layers(model):
        raise ValueError('export_onnx: the model still has learnable resizing layers; '
                         'freeze it first with freeze_dynopool(model, input_shape)')
    kinds = {getattr(m, 'kind', None) for m in model.modules()}
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
        try:
            torch.onnx.export(wrapper, (x, ), path, input_names=['input'],
                              output_names=outputs, opset_version=opset_version,
                              dynamic_axes=axes, dynamo=False)
        except Exception as err:
            if 'DiffStride' in kinds:
                raise UnsupportedExportError(
                    'export_onnx: DiffStride cannot be exported to ONNX: its spectral '
                    'pooling uses torch.fft (rfft2/irfft2), which the TorchScript-based '
                    'ONNX exporter does not support. The frozen model itself runs in '
                    f'PyTorch. ({type(err).__name__}: {str(err).splitlines()[0][:200]})'
                    ) from err
            raise
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
