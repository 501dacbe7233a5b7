"""The DynOPool layer: a resizing layer whose output size is learned (thesis chapter 4)."""
import math
import weakref
from numbers import Real
from typing import Iterable, List, Optional, Sequence, Tuple, Union

import torch
from mmengine.logging import print_log
from mmengine.registry import MODELS
from torch import Tensor, nn
from torch.optim.optimizer import register_optimizer_step_post_hook

from .functional import AGGREGATIONS, dynopool_sample, output_size, query_positions

RatioLike = Union[float, Sequence[float]]

# Every live DynOPool, so the optimizer step hook below can guard their alphas.
_LIVE_LAYERS: 'weakref.WeakSet[DynOPool]' = weakref.WeakSet()


def _as_pair(value: RatioLike, name: str) -> Tuple[float, float]:
    if isinstance(value, bool):
        raise TypeError(f'{name} must be a number or a pair of numbers, got {value!r}')
    if isinstance(value, Real):
        pair = (float(value), float(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(
            isinstance(v, Real) and not isinstance(v, bool) for v in value):
        pair = (float(value[0]), float(value[1]))
    else:
        raise TypeError(f'{name} must be a number or a pair (r_h, r_w) of numbers, '
                        f'got {value!r}')
    for v in pair:
        if not math.isfinite(v) or v <= 0:
            raise ValueError(f'{name} must be positive and finite, got {value!r}')
    return pair


@MODELS.register_module()
class DynOPool(nn.Module):
    """Dynamically Optimized Pooling: resizes a feature map by a learned ratio.

    The output has ``H_out = round(max(H_in * r_h, min_size))`` rows (Eq. 4.1 with the size
    bound of section 5.2.2) and likewise columns. Each output cell is the aggregation
    (max by default) of four bilinear samples at +-1/4 of the cell (Eq. 4.2). The rounding
    is straight-through (Eqs. 4.3-4.4), so the gradient reaches the scale through the
    query positions. The learnable parameter is ``alpha = (1/r_h, 1/r_w)`` (Eq. 4.6), which
    keeps the gradient well conditioned for small ratios (Eq. 4.5).

    With ``r = 0.5`` on an even-sized input the layer equals ``nn.MaxPool2d(2, 2)``
    (``nn.AvgPool2d(2, 2)`` for ``aggregation='avg'``), i.e. the human-designed model.

    Guard: alpha is kept finite and within ``[1 / max_ratio, 1 / min_ratio]``. The guard
    runs after every ``torch.optim`` step (a global step hook registered by this module)
    and again at each forward; a non-finite alpha is restored to its last valid value, an
    out-of-range one is clamped, and the first clamp of each layer is reported once.
    Besides the ratio bound, ``max_size`` optionally caps the output size itself.

    Args:
        init_ratio (float | tuple[float, float]): initial ``r`` (or ``(r_h, r_w)``);
            values above 1 upsample. Default: 0.5.
        min_size (float): lower bound on the continuous output size before rounding;
            1.5 guarantees at least 2 rows/columns. Default: 1.5.
        aggregation (str): ``'max'`` or ``'avg'`` over the four query points.
            Default: ``'max'``.
        max_ratio (float): upper bound on ``r`` (runaway guard for upsampling).
            Default: 4.0.
        min_ratio (float): lower bound on ``r``. Default: 1e-3.
        max_size (int, optional): upper bound on each output dimension. Default: None.
    """

    def __init__(self,
                 init_ratio: RatioLike = 0.5,
                 min_size: float = 1.5,
                 aggregation: str = 'max',
                 max_ratio: float = 4.0,
                 min_ratio: float = 1e-3,
                 max_size: Optional[int] = None) -> None:
        super().__init__()
        ratio = _as_pair(init_ratio, 'init_ratio')
        if aggregation not in AGGREGATIONS:
            raise ValueError(f'aggregation must be one of {AGGREGATIONS}, '
                             f'got {aggregation!r}')
        if not (isinstance(min_size, Real) and math.isfinite(min_size) and min_size > 0):
            raise ValueError(f'min_size must be a positive number, got {min_size!r}')
        _as_pair(max_ratio, 'max_ratio')
        _as_pair(min_ratio, 'min_ratio')
        if min_ratio >= max_ratio:
            raise ValueError(f'min_ratio ({min_ratio}) must be below max_ratio '
                             f'({max_ratio})')
        if not min_ratio <= min(ratio) <= max(ratio) <= max_ratio:
            raise ValueError(f'init_ratio {init_ratio!r} is outside the allowed range '
                             f'[min_ratio={min_ratio}, max_ratio={max_ratio}]')
        if max_size is not None and (not isinstance(max_size, int) or max_size < 2):
            raise ValueError(f'max_size must be an int >= 2 or None, got {max_size!r}')
        self.init_ratio = ratio
        self.min_size = float(min_size)
        self.aggregation = aggregation
        self.max_ratio = float(max_ratio)
        self.min_ratio = float(min_ratio)
        self.max_size = max_size
        self.alpha = nn.Parameter(torch.tensor([1.0 / ratio[0], 1.0 / ratio[1]]))
        # Last valid alpha (restored if a step makes alpha NaN/inf) and a flag set by the
        # guard; neither is part of the state dict.
        self.register_buffer('_alpha_valid', self.alpha.detach().clone(), persistent=False)
        self.register_buffer('_guard_hit', torch.zeros((), dtype=torch.bool),
                             persistent=False)
        self._warned = False
        self.last_size: Optional[Tuple[int, int]] = None
        self.last_input_size: Optional[Tuple[int, int]] = None
        _LIVE_LAYERS.add(self)

    def extra_repr(self) -> str:
        r = self.ratio.tolist()
        return (f'ratio=({r[0]:.4f}, {r[1]:.4f}), min_size={self.min_size}, '
                f'aggregation={self.aggregation!r}')

    @property
    def ratio(self) -> Tensor:
        """Current ``(r_h, r_w) = 1 / alpha`` as a detached tensor."""
        return 1.0 / self.alpha.detach()

    @torch.no_grad()
    def guard_alpha(self) -> None:
        """Restore a non-finite alpha and clamp it to the allowed ratio range.

        Pure tensor ops (no host sync), so it is cheap to call after every step.
        """
        alpha = self.alpha
        fixed = torch.where(torch.isfinite(alpha), alpha, self._alpha_valid)
        fixed = fixed.clamp(min=1.0 / self.max_ratio, max=1.0 / self.min_ratio)
        self._guard_hit.logical_or_((fixed != alpha).any())
        alpha.copy_(fixed)
        self._alpha_valid.copy_(fixed)

    def continuous_size(self, in_size: Tuple, ratio: Optional[Tensor] = None
                        ) -> Tuple[Tensor, Tensor]:
        """Straight-through output sizes ``(h, w)`` for an input of ``in_size = (H, W)``.

        ``H``/``W`` may be ints or straight-through tensors (to chain layers, as the GMACs
        hook does). The forward values are the integer sizes this layer will produce.
        """
        if ratio is None:
            ratio = 1.0 / self.alpha.float()
        h = output_size(in_size[0], ratio[0], self.min_size)
        w = output_size(in_size[1], ratio[1], self.min_size)
        if self.max_size is not None:
            h = torch.clamp(h, max=float(self.max_size))
            w = torch.clamp(w, max=float(self.max_size))
        return h, w

    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f'DynOPool expects a torch.Tensor, got {type(x).__name__}')
        if x.dim() != 4:
            raise ValueError('DynOPool expects a 4-D (N, C, H, W) tensor, got shape '
                             f'{tuple(x.shape)}')
        if x.shape[2] == 0 or x.shape[3] == 0:
            raise ValueError('DynOPool got an input with an empty spatial dimension: '
                             f'shape {tuple(x.shape)}')
        h_in, w_in = int(x.shape[2]), int(x.shape[3])
        self.guard_alpha()
        # Sizes and positions stay in float32 under autocast (they decide shapes).
        with torch.autocast(device_type=x.device.type, enabled=False):
            ratio = 1.0 / self.alpha.float()
            h, w = self.continuous_size((h_in, w_in), ratio)
            # One host sync for everything the Python side needs.
            vals = torch.cat((torch.stack((h, w)).detach(), ratio.detach(),
                              self._guard_hit.float().view(1))).tolist()
            h_out, w_out = int(vals[0]), int(vals[1])
            hit = vals[4] > 0
            capped = self.max_size is not None and max(
                h_in * vals[2], w_in * vals[3]) > self.max_size + 0.5
            if (hit or capped) and not self._warned:
                self._warned = True
                print_log(
                    f'DynOPool: ratio guard engaged (allowed ratio range '
                    f'[{self.min_ratio}, {self.max_ratio}], max_size={self.max_size}); '
                    f'ratio is now {tuple(round(v, 4) for v in self.ratio.tolist())}, '
                    f'output {h_out}x{w_out} for input {h_in}x{w_in}. '
                    'Reported once per layer.', logger='current', level=30)
            pos_h = query_positions(h_in, h, h_out, x.dtype)
            pos_w = query_positions(w_in, w, w_out, x.dtype)
        self.last_input_size = (h_in, w_in)
        self.last_size = (h_out, w_out)
        return dynopool_sample(x, pos_h, pos_w, self.aggregation)


def dynopool_layers(model: nn.Module) -> List[Tuple[str, DynOPool]]:
    """The distinct DynOPool instances of ``model`` as ``(name, module)`` pairs.

    Order is that of ``model.named_modules()`` (registration order), stable across runs;
    a shared instance appears once, under the first name it is reachable by.
    """
    return [(name, m) for name, m in model.named_modules() if isinstance(m, DynOPool)]


def _guard_after_step(optimizer: torch.optim.Optimizer, args: Iterable,
                      kwargs: dict) -> None:
    params = {id(p) for group in optimizer.param_groups for p in group['params']}
    for layer in list(_LIVE_LAYERS):
        if id(layer.alpha) in params:
            layer.guard_alpha()


register_optimizer_step_post_hook(_guard_after_step)
