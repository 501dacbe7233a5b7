"""Fixed-size stand-ins for the learnable resizing layers of a frozen model.

:class:`FrozenDynOPool` is exactly a DynOPool at fixed sizes, with no alpha: in eager
PyTorch it runs DynOPool's fused kernel (C++ on CPU, Triton on CUDA) at the frozen
sizes; traced or compiled (ONNX export, ``torch.compile``) it is ``F.interpolate(x,
size=(2h, 2w), mode='bilinear', align_corners=False)`` followed by a 2x2 max (or mean)
pooling - the query points of Eq. 4.2 are the sample points of that resize - so the
exported graph holds standard ``Resize`` + pooling nodes. :class:`FrozenResizingLayer` does the same job for
ShapeAdaptor and DiffStride: it calls the layer's own forward with its learned parameter
held fixed (a constant buffer, saved in the state dict under the layer's parameter name),
so the sizes are fixed too. Both only run at the input sizes they were frozen for.
"""
from typing import Any, Dict, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import DynOPool, ResizingLayer
from ..ops import library
from ..ops.functional import AGGREGATIONS, dynopool_sample, select_backend
from ..ops.geometry import axis_geometry
from ..utils.pairs import Size


def _size_table(sizes: Dict[Size, Size]) -> Dict[Size, Size]:
    if not sizes:
        raise ValueError('a frozen resizing layer needs at least one input -> output size')
    return {(int(k[0]), int(k[1])): (int(v[0]), int(v[1])) for k, v in sizes.items()}


def _wrong_size(kind: str, name: str, sizes: Dict[Size, Size], in_size: Size):
    known = ', '.join(f'{h}x{w}' for h, w in sizes)
    return RuntimeError(
        f'{kind}{" " + name if name else ""} was frozen for input size(s) {known}, got '
        f'{in_size[0]}x{in_size[1]}: the frozen model only runs at the network input '
        'size it was frozen at; freeze the trained model again for this size.')


class FrozenLayer(nn.Module):
    """The base of the fixed-size stand-ins: a size table ``{(H_in, W_in): (h, w)}``,
    the original layer's type name ``kind``, and the entry of the JSON size table.

    A stand-in is made from a live layer by :meth:`from_layer`; ``deploy/freeze.py``
    picks the stand-in class for a layer type from its ``STAND_INS`` mapping."""

    kind: str = ''
    sizes: Dict[Size, Size]

    @classmethod
    def from_layer(cls, layer: ResizingLayer, sizes: Dict[Size, Size],
                   name: str = '') -> 'FrozenLayer':
        """The stand-in of ``layer`` at the input -> output ``sizes`` it saw."""
        raise NotImplementedError

    def table_entry(self) -> Dict[str, Any]:
        """This layer's entry of the frozen size table (``frozen_sizes.json``)."""
        return dict(type=self.kind, sizes=[dict(input=list(i), output=list(o))
                                           for i, o in self.sizes.items()])


class FrozenDynOPool(FrozenLayer):
    """A DynOPool with its sizes fixed: bilinear resize to ``(2h, 2w)`` + 2x2 pooling.

    Paper: the DynOPool thesis, chapter 4, Eqs. 4.1-4.2 (the output grid and its four
    query points per cell; ``shared/papers/dynopool_thesis.txt``; its CVPR 2022
    version: https://arxiv.org/abs/2205.15254). With the sizes fixed, Eq. 4.2's query
    points are the sample points of a bilinear resize to twice the output size, so
    the layer is that resize and a 2x2 max (or mean) pooling. Made from a trained
    model by ``deploy/freeze.py``; see docs/deployment.md.

    Args:
        sizes (dict): ``{(H_in, W_in): (h, w)}``, the output size for every input size
            the original DynOPool saw at the frozen network input size (one entry in
            practice; HRNet's shared pools always see the same size).
        aggregation (str): ``'max'`` or ``'avg'``, as the original DynOPool.
            Default: ``'max'``.
        name (str): where the pool lives in the model (for error messages).
            Default: ``''``.

    Example:
        >>> from mmseg_dynopool.layers import DynOPool
        >>> x = torch.randn(1, 8, 32, 32)
        >>> live = DynOPool(init_ratio=(20 / 32, 12 / 32), aggregation='avg')
        >>> frozen = FrozenDynOPool({(32, 32): (20, 12)}, aggregation='avg',
        ...                         name='neck.pool')
        >>> frozen
        FrozenDynOPool(32x32->20x12, aggregation='avg')
        >>> frozen(x).shape, torch.allclose(frozen(x), live(x), atol=1e-6)
        (torch.Size([1, 8, 20, 12]), True)
        >>> frozen(torch.randn(1, 8, 30, 30))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
            ...
        RuntimeError: FrozenDynOPool neck.pool was frozen for input size(s) 32x32, ...
    """

    kind = 'DynOPool'

    def __init__(self, sizes: Dict[Size, Size], aggregation: str = 'max',
                 name: str = '') -> None:
        super().__init__()
        if aggregation not in AGGREGATIONS:
            raise ValueError(f'aggregation must be one of {AGGREGATIONS}, '
                             f'got {aggregation!r}')
        self.sizes = _size_table(sizes)
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

    @classmethod
    def from_layer(cls, layer: DynOPool, sizes: Dict[Size, Size],
                   name: str = '') -> 'FrozenDynOPool':
        return cls(sizes, layer.aggregation, name)

    def table_entry(self) -> Dict[str, Any]:
        return dict(super().table_entry(), aggregation=self.aggregation)

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
            raise _wrong_size('FrozenDynOPool', self.name, self.sizes, in_size)
        self.last_input_size, self.last_size = in_size, out
        if not library.use_operators() and select_backend(x) != 'native':
            # The fused kernel: one pass instead of a 4x-sized resize + a pooling pass
            # (the frozen model was slower than the live one without it).
            geom = (axis_geometry(in_size[0], out[0], x.dtype, x.device),
                    axis_geometry(in_size[1], out[1], x.dtype, x.device))
            return dynopool_sample(x, geom[0].positions, geom[1].positions,
                                   self.aggregation, geom)
        z = F.interpolate(x, size=(2 * out[0], 2 * out[1]), mode='bilinear',
                          align_corners=False)
        if self.aggregation == 'max':
            return F.max_pool2d(z, 2)
        return F.avg_pool2d(z, 2)


class FrozenResizingLayer(FrozenLayer):
    """A ShapeAdaptor or DiffStride with its parameter and therefore its sizes fixed.

    The forward is the layer's own forward (called directly, so no module hooks run and
    the layer does not count as a live resizing layer) with the parameter taken from a
    constant buffer of the same name (``alpha`` / ``stride``): the state-dict keys are
    the original model's. ``torch.onnx.export`` traces the layer's plain ops (pooling,
    bilinear resizes, a blend; DiffStride's ``torch.fft`` calls have no ONNX export, see
    :func:`~mmseg_dynopool.deploy.onnx.export_onnx`).

    Papers: Shape Adaptor (Liu et al., ECCV 2020, https://arxiv.org/abs/2008.00892)
    and DiffStride (Riad et al., ICLR 2022, https://arxiv.org/abs/2202.01653); the
    DynOPool thesis compares with the former in chapter 5, section 5.4. See
    docs/baselines.md and docs/deployment.md.

    Args:
        layer (ResizingLayer): the ShapeAdaptor / DiffStride to freeze (kept, not
            copied; its parameters stop requiring gradients).
        sizes (dict): ``{(H_in, W_in): (h, w)}`` seen at the frozen network input size.
        name (str): where the layer lives in the model (for error messages).
            Default: ``''``.

    Example:
        >>> from mmseg_dynopool.layers import ShapeAdaptor
        >>> x = torch.randn(1, 8, 32, 32)
        >>> layer = ShapeAdaptor(init_ratio=0.7)
        >>> y = layer(x)                             # floor(32 * 0.7) = 22
        >>> frozen = FrozenResizingLayer(layer, {(32, 32): (22, 22)})
        >>> frozen, list(frozen.state_dict())        # the layer's own key
        (FrozenResizingLayer(ShapeAdaptor, 32x32->22x22), ['alpha'])
        >>> torch.equal(frozen(x), y)
        True
    """

    def __init__(self, layer: ResizingLayer, sizes: Dict[Size, Size],
                 name: str = '') -> None:
        super().__init__()
        param = layer.ratio_parameter()
        self.sizes = _size_table(sizes)
        self.name = name
        self.kind = type(layer).__name__
        self.param_name = layer.ratio_param_name
        for p in layer.parameters():
            p.requires_grad_(False)
        # Not a submodule: the frozen model must not contain a live resizing layer.
        object.__setattr__(self, '_layer', layer)
        self.register_buffer(self.param_name, param.detach().clone())
        self.last_size: Optional[Size] = None
        self.last_input_size: Optional[Size] = None

    @classmethod
    def from_layer(cls, layer: ResizingLayer, sizes: Dict[Size, Size],
                   name: str = '') -> 'FrozenResizingLayer':
        return cls(layer, sizes, name)

    @property
    def ratio(self) -> Tensor:
        """Effective ``(r_h, r_w)`` = output / input size (first table entry)."""
        (h_in, w_in), (h, w) = next(iter(self.sizes.items()))
        return torch.tensor([h / h_in, w / w_in])

    def extra_repr(self) -> str:
        pairs = ', '.join(f'{i[0]}x{i[1]}->{o[0]}x{o[1]}' for i, o in self.sizes.items())
        return f'{self.kind}, {pairs}'

    def forward(self, x: Tensor) -> Tensor:
        in_size = (int(x.shape[-2]), int(x.shape[-1]))
        out_size = self.sizes.get(in_size)
        if out_size is None:
            raise _wrong_size(f'Frozen{self.kind}', self.name, self.sizes, in_size)
        layer = self._layer
        param = layer.ratio_parameter()
        value = getattr(self, self.param_name)
        if param.device != value.device:
            layer.to(value.device)
            param = layer.ratio_parameter()
        if not torch.equal(param, value):  # e.g. after load_state_dict
            with torch.no_grad():
                param.copy_(value)
        out = layer.forward(x)
        got = (int(out.shape[-2]), int(out.shape[-1]))
        if got != out_size:
            raise RuntimeError(f'Frozen{self.kind} {self.name}: output {got} differs from '
                               f'the frozen size {out_size}')
        self.last_input_size, self.last_size = in_size, out_size
        return out
