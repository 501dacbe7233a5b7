"""DiffStride (Riad, Teboul, Grangier & Zeghidour, ICLR 2022): spectral pooling with a
learnable stride per axis, as a resizing layer with DynOPool's interface.

Along one axis of length ``n`` with stride ``S`` and smoothness ``R``:

    T    = max(n / S, 2) / 2                       half-width of the pass band
    m(k) = clamp((T + R - |k|) / R, 0, 1)           mask over integer frequencies k
    K    = ceil(T + R) - 1                          largest |k| with m(k) > 0
    n'   = min(n, 2 K + 1)                          output length

The input is transformed with a real 2-D FFT, the frequencies ``|k| <= K`` of each axis
are kept (the support of the mask; an even input keeps its Nyquist bin only when all
frequencies are kept), multiplied by the separable mask ``m_h(k_h) m_w(k_w)`` and
transformed back at the cropped size. The mask is 1 inside the band, ramps linearly to
0 over ``R`` frequencies, so the loss reaches ``S`` through ``T``. The output size
``n'`` is ``~ n / S + 2R`` (within one): the ramp widens the kept band, so with the
paper's ``R = 4`` a 32-wide map at stride 2 becomes 23 wide, not 16.

Amplitudes are preserved (forward FFT normalised by ``1/n``, inverse unnormalised), so a
stride of 1 returns the input and a band-limited input is resampled exactly.

Lower bound on the stride (the paper's code): ``S >= lower_limit_stride`` (default 1)
and, with ``adaptive_lower_bound``, ``S >= n / (n - R)`` for the current input, which
keeps the highest frequency on the ramp so the stride always receives a gradient. The
bounds are applied to the value with a straight-through gradient (the paper's code
assigns the clipped value to the variable before using it; the gradient is the same).

Host copies of the guarded stride: ``layers/host_cache.py`` (one batched device->host
read per parameter update for all resizing layers; the guard runs within it). Strides in
other dtypes than float32/float64 take their sizes from the device (one read per call).
"""
import math
from numbers import Real
from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.logging import print_log
from mmengine.registry import MODELS
from torch import Tensor, nn

from ...utils.pairs import RatioLike, to_pair
from ..base import ResizingLayer
from ..host_cache import SizeLike, in_size_values, param_key

#: The paper's floor on the strided size ``n / S`` (so ``T >= 1``).
MIN_STRIDED_SIZE = 2.0


def _real(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f'{name} must be a real number, got {value!r}')
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f'{name} must be finite, got {value!r}')
    return value


def spectral_output_sizes(in_size: Tuple[int, int], stride: Tensor,
                          smoothness: float) -> Tensor:
    """Output sizes ``min(n, 2 (ceil(T + R) - 1) + 1)`` per axis (float64 tensor ``(2,)``).

    ``stride`` is the stride actually applied (already bounded). Both :func:`spectral_pool`
    and :meth:`DiffStride.continuous_size` take their sizes from here.
    """
    s = stride.detach().to(torch.float64).reshape(2)
    n = _pair_tensor(float(in_size[0]), float(in_size[1]), s)
    half = torch.clamp(n / s, min=MIN_STRIDED_SIZE) / 2
    k_max = torch.ceil(half + smoothness) - 1
    return torch.minimum(n, 2 * k_max + 1)


def _pair_tensor(a: float, b: float, like: Tensor) -> Tensor:
    """``tensor([a, b])`` with ``like``'s dtype and device, filled on the device (no
    host->device copy, which would synchronise a CUDA stream); ``like`` has shape (2,)."""
    out = torch.full_like(like, a)
    if b != a:
        out[1:].fill_(b)
    return out


def _host_output_len(n: int, stride: float, lower: float, upper: float, smoothness: float,
                     dtype: torch.dtype) -> int:
    """One axis of :func:`spectral_output_sizes` for :meth:`DiffStride.effective_stride`'s
    value, on the host: the bounded stride ``s + (clamp(s, lower, upper) - s)`` in
    ``dtype`` (float32: numpy's float32, IEEE like the device), then the size rule in
    float64 - the device's operations in its order, so bit-identical."""
    if dtype == torch.float32:
        s = np.float32(stride)
        clamped = min(max(s, np.float32(lower)), np.float32(upper))
        value = float(s + (clamped - s))
    else:  # float64
        clamped = min(max(stride, lower), upper)
        value = stride + (clamped - stride)
    n = float(n)
    half = max(n / value, MIN_STRIDED_SIZE) / 2
    k_max = math.ceil(half + smoothness) - 1
    return int(min(n, 2 * k_max + 1))


class _HostStride(NamedTuple):
    """Host copy of one layer's guarded stride, valid while ``key`` matches."""
    key: tuple
    stride: Tuple[float, float]  # (S_h, S_w), exactly the parameter's values
    dtype: torch.dtype           # the parameter's dtype


def _axis_bins(n: int, n_out: int, onesided: bool,
               device: torch.device) -> Tuple[Optional[Tensor], Tensor]:
    """Indices of the kept FFT bins of one axis (``None``: all, in place) and ``|k|``."""
    if onesided:  # rfft axis: bins 0 .. n_out // 2 are kept, in place
        return None, torch.arange(n_out // 2 + 1, device=device, dtype=torch.float64)
    if n_out == n:
        return None, torch.fft.fftfreq(n, d=1.0 / n, device=device,
                                       dtype=torch.float64).abs()
    k = (n_out - 1) // 2
    index = torch.cat((torch.arange(k + 1, device=device),
                       torch.arange(n - k, n, device=device)))
    mags = torch.cat((torch.arange(k + 1, device=device),
                      torch.arange(k, 0, -1, device=device))).to(torch.float64)
    return index, mags


def spectral_pool(x: Tensor, stride: Tensor, smoothness: float = 4.0,
                  out_size: Optional[Tuple[int, int]] = None) -> Tensor:
    """DiffStride's spectral pooling of ``x`` with the (differentiable) ``stride``.

    Args:
        x (Tensor): real ``(N, C, H, W)`` input.
        stride (Tensor): ``(S_h, S_w)``, used as given (apply bounds before); the result
            is differentiable w.r.t. it through the mask.
        smoothness (float): ramp width ``R`` of the mask (> 0). Default: 4.0.
        out_size (tuple[int, int], optional): the output size, if the caller already
            knows it: it must be :func:`spectral_output_sizes` for ``stride``
            (:class:`DiffStride` computes it on the host). Default: None (computed here,
            a device->host read).

    Returns:
        Tensor: ``(N, C, H', W')`` with the sizes of :func:`spectral_output_sizes`, in
        the dtype of ``x`` (the FFT runs in float32 for half-precision inputs).

    Example:
        >>> x = torch.randn(1, 3, 30, 30, dtype=torch.float64)
        >>> spectral_pool(x, torch.tensor([2.0, 2.0]), smoothness=0.5).shape
        torch.Size([1, 3, 15, 15])
    """
    if x.dim() != 4:
        raise ValueError(f'spectral_pool expects a 4-D tensor, got shape {tuple(x.shape)}')
    if x.is_complex():
        raise TypeError('spectral_pool expects a real input')
    h, w = int(x.shape[-2]), int(x.shape[-1])
    compute_dtype = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32
    with torch.autocast(device_type=x.device.type, enabled=False):
        if out_size is None:
            # Sizes from the stride as given (the same call continuous_size makes).
            out_size = spectral_output_sizes((h, w), stride, smoothness).tolist()
        h_out, w_out = (int(v) for v in out_size)
        xf = x.to(compute_dtype)
        stride = stride.to(device=x.device, dtype=compute_dtype).reshape(2)
        spec = torch.fft.rfft2(xf, norm='forward')
        idx_h, mags_h = _axis_bins(h, h_out, False, x.device)
        _, mags_w = _axis_bins(w, w_out, True, x.device)
        spec = spec[..., :w_out // 2 + 1]
        if idx_h is not None:
            spec = spec.index_select(-2, idx_h)
        half = torch.clamp(torch.stack((h / stride[0], w / stride[1])),
                           min=MIN_STRIDED_SIZE) / 2
        mask_h = torch.clamp((half[0] + smoothness - mags_h.to(compute_dtype)) / smoothness,
                             0.0, 1.0)
        mask_w = torch.clamp((half[1] + smoothness - mags_w.to(compute_dtype)) / smoothness,
                             0.0, 1.0)
        spec = spec * (mask_h[:, None] * mask_w[None, :])
        out = torch.fft.irfft2(spec, s=(h_out, w_out), norm='forward')
    return out.to(x.dtype)


def _fft_macs(n: int, real: bool) -> float:
    """MACs of a length-``n`` FFT: ``2 n log2 n`` complex, ``n log2 n`` real input/output."""
    if n < 2:
        return 0.0
    return (1.0 if real else 2.0) * n * math.log2(n)


@MODELS.register_module()
class DiffStride(ResizingLayer):
    """DiffStride: spectral pooling whose stride per axis is learned.

    The learnable parameter is ``stride`` (``(S_h, S_w)``, or one value with
    ``shared_stride``), used directly as in the paper. ``ratio`` is ``1 / stride``; the
    output size is ``min(n, 2 ceil(max(n / S, 2) / 2 + R) - 1)`` per axis (see the module
    docstring), i.e. about ``n / S + 2R``.

    Guard: ``stride`` is kept finite and within ``[lower_limit_stride,
    upper_limit_stride]`` in place (a non-finite value is restored to the last valid
    one) by the first forward (or size query) after it changed, as tensor ops within the
    batched host refresh (see the module doc); the first engagement is logged once. The
    input-dependent bound ``n / (n - R)`` is applied to the value only
    (straight-through), since it changes with the input size.

    Host copies of the stride: see ``layers/host_cache.py``; after writing
    ``stride.data`` call :meth:`invalidate_sizes`.

    Args:
        init_ratio (float | tuple[float, float], optional): initial ``1 / stride``, in
            ``(0, 1]``. Give this or ``init_stride``; neither means stride 2.
        init_stride (float | tuple[float, float], optional): initial stride (>= 1).
        smoothness (float): the paper's ``R``, ramp width of the mask in frequency bins
            (> 0). Default: 4.0 (the paper's).
        lower_limit_stride (float): lower bound on the stride, >= 1. Default: 1.0.
        upper_limit_stride (float, optional): upper bound on the stride. Default: None.
        adaptive_lower_bound (bool): also bound ``S >= n / (n - R)`` for an input of
            length ``n > R`` (the paper's code). Default: True.
        shared_stride (bool): one stride for both axes. Default: False.

    Paper: Riad et al., "Learning strides in convolutional neural networks", ICLR 2022,
    https://arxiv.org/abs/2202.01653; docs/baselines.md.

    Example:
        >>> layer = DiffStride(init_stride=2.0, smoothness=4.0)
        >>> y = layer(torch.randn(2, 8, 32, 32))
        >>> layer.last_size                   # 2 * ceil(8 + 4) - 1 = 23
        (23, 23)
        >>> h, w = layer.continuous_size((32, 32))   # straight-through, grad to stride
    """

    ratio_param_name = 'stride'

    def __init__(self,
                 init_ratio: Optional[RatioLike] = None,
                 init_stride: Optional[RatioLike] = None,
                 smoothness: float = 4.0,
                 lower_limit_stride: float = 1.0,
                 upper_limit_stride: Optional[float] = None,
                 adaptive_lower_bound: bool = True,
                 shared_stride: bool = False) -> None:
        super().__init__()
        if init_ratio is not None and init_stride is not None:
            raise ValueError('give init_ratio or init_stride, not both')
        if init_stride is not None:
            strides = to_pair(init_stride, 'init_stride', positive=False)
        elif init_ratio is not None:
            ratios = to_pair(init_ratio, 'init_ratio', positive=False)
            if not all(0 < r <= 1 for r in ratios):
                raise ValueError('DiffStride only down-samples: init_ratio must be in '
                                 f'(0, 1], got {init_ratio!r}')
            strides = (1.0 / ratios[0], 1.0 / ratios[1])
        else:
            strides = (2.0, 2.0)
        smoothness = _real(smoothness, 'smoothness')
        if smoothness <= 0:
            raise ValueError(f'smoothness (R) must be > 0, got {smoothness}')
        lower = _real(lower_limit_stride, 'lower_limit_stride')
        if lower < 1:
            raise ValueError(f'lower_limit_stride must be >= 1, got {lower}')
        upper = math.inf
        if upper_limit_stride is not None:
            upper = _real(upper_limit_stride, 'upper_limit_stride')
            if upper <= lower:
                raise ValueError(f'upper_limit_stride ({upper}) must exceed '
                                 f'lower_limit_stride ({lower})')
        if not all(lower <= s <= upper for s in strides):
            raise ValueError(f'initial stride {strides} is outside '
                             f'[lower_limit_stride={lower}, upper_limit_stride={upper}]')
        if shared_stride and strides[0] != strides[1]:
            raise ValueError('shared_stride needs the same initial stride on both axes, '
                             f'got {strides}')
        if not isinstance(adaptive_lower_bound, bool) or not isinstance(shared_stride, bool):
            raise TypeError('adaptive_lower_bound and shared_stride must be bools')
        self.smoothness = smoothness
        self.lower_limit_stride = lower
        self.upper_limit_stride = upper
        self.adaptive_lower_bound = adaptive_lower_bound
        self.shared_stride = shared_stride
        self.init_stride: Tuple[float, float] = strides
        self.init_ratio: Tuple[float, float] = (1.0 / strides[0], 1.0 / strides[1])
        init = [strides[0]] if shared_stride else list(strides)
        self.stride = nn.Parameter(torch.tensor(init))
        self.register_buffer('_stride_valid', self.stride.detach().clone(), persistent=False)
        self._warned = False
        self.last_size: Optional[Tuple[int, int]] = None
        self.last_input_size: Optional[Tuple[int, int]] = None
        self._host_track()

    def extra_repr(self) -> str:
        s = self.stride.detach().expand(2).tolist()
        return (f'stride=({s[0]:.4f}, {s[1]:.4f}), smoothness={self.smoothness}, '
                f'adaptive_lower_bound={self.adaptive_lower_bound}, '
                f'shared_stride={self.shared_stride}')

    # ------------------------------------------------------------------- parameters
    @property
    def ratio(self) -> Tensor:
        """Current nominal ``(r_h, r_w) = 1 / stride`` as a detached tensor (the real
        output is ``~ n r + 2R``, see :meth:`output_size`)."""
        return 1.0 / self.stride.detach().expand(2).clone()

    @torch.no_grad()
    def guard_stride(self) -> None:
        """Restore a non-finite stride and clamp it to the static bounds, in place (and
        report the first engagement; this reads the device - the forward guards within
        its batched host refresh instead)."""
        s = self.stride
        fixed = torch.where(torch.isfinite(s), s, self._stride_valid)
        fixed = fixed.clamp(min=self.lower_limit_stride, max=self.upper_limit_stride)
        if not torch.equal(fixed, s):
            self._report_guard(s.tolist(), fixed.tolist())
            s.copy_(fixed)
        self._stride_valid.copy_(fixed)

    @torch.no_grad()
    def scale_ratio(self, start: Tensor, factor: Tensor) -> None:
        """``stride = start / factor`` clamped to the stride bounds (a shared stride is
        divided by ``sqrt(f_h f_w)``)."""
        factor = factor.to(start)
        f = factor if start.numel() == 2 else factor.prod().sqrt().view(1)
        self.stride.copy_((start / f).clamp(self.lower_limit_stride, self.upper_limit_stride))
        self.guard_stride()

    def bounds_repr(self) -> str:
        return (f'stride range [{self.lower_limit_stride}, {self.upper_limit_stride}], '
                f'smoothness={self.smoothness}')

    def _report_guard(self, before: List[float], after: List[float]) -> None:
        if not self._warned:
            self._warned = True
            print_log(f'DiffStride: stride guard engaged, stride {before} -> '
                      f'{after}. Reported once per layer.', logger='current', level=30)

    # host copy (ops/host_cache.py)
    def _host_param(self) -> Tensor:
        return self.stride

    def _host_read(self) -> List[Tensor]:
        """:meth:`guard_stride` as tensor ops (no host read); the stride before and
        after and whether the guard changed it, read in the batched transfer."""
        s = self.stride
        before = s.detach().clone()
        fixed = torch.where(torch.isfinite(s), s, self._stride_valid)
        fixed = fixed.clamp(min=self.lower_limit_stride, max=self.upper_limit_stride)
        changed = (fixed != s).any()
        s.copy_(fixed)
        self._stride_valid.copy_(fixed)
        return [before, fixed, changed]

    def _host_store(self, values: List[float]) -> None:
        n = self.stride.numel()
        before, after = values[:n], values[n:2 * n]
        if values[2 * n] > 0:
            self._report_guard(before, after)
        stride = (after[0], after[-1])
        self._host = _HostStride(param_key(self.stride), stride, self.stride.dtype)

    @property
    def host_ratio(self) -> Tuple[float, float]:
        """Nominal ``(r_h, r_w) = 1 / stride`` (:attr:`ratio`) as Python floats from the
        host copy: no device read unless the stride changed (then one, shared by all
        layers). Equal to ``ratio.tolist()`` for float32 and float64 strides (other
        dtypes: to within their rounding)."""
        host = self._host_copy()
        if host.dtype == torch.float32:
            one = np.float32(1.0)
            return (float(one / np.float32(host.stride[0])),
                    float(one / np.float32(host.stride[1])))
        return 1.0 / host.stride[0], 1.0 / host.stride[1]

    @torch.no_grad()
    def reset_parameters_to_initial(self) -> None:
        """Restore ``stride`` to its initial value (``1 / init_ratio``)."""
        init = [self.init_stride[0]] if self.shared_stride else list(self.init_stride)
        self.stride.copy_(torch.tensor(init))
        self._stride_valid.copy_(self.stride)

    def lower_bound(self, n: int) -> float:
        """Lower bound on the stride for an axis of length ``n``."""
        lower = self.lower_limit_stride
        if self.adaptive_lower_bound and n > self.smoothness:
            lower = max(lower, n / (n - self.smoothness))
        return min(lower, self.upper_limit_stride)

    def effective_stride(self, in_size: Tuple[int, int]) -> Tensor:
        """The stride applied to an input of ``in_size`` (shape ``(2,)``): the parameter
        clamped to its bounds, with an identity (straight-through) gradient."""
        s = self.stride.expand(2)
        lo = [self.lower_bound(in_size[0]), self.lower_bound(in_size[1])]
        if self.shared_stride:
            lo = [max(lo)] * 2
        sd = s.detach()
        lo_t = _pair_tensor(lo[0], lo[1], sd)  # = torch.tensor(lo, dtype=sd.dtype)
        clamped = torch.minimum(torch.maximum(sd, lo_t),
                                torch.full_like(sd, self.upper_limit_stride))
        return s + (clamped - sd)

    # -------------------------------------------------------------------------- sizes
    def _sizes(self, host: _HostStride, vals: Tuple[int, int]) -> Tuple[int, int]:
        """Output size for integer input sizes, from the host copy (float32/float64
        strides) or else from the device (one read)."""
        if host.dtype not in (torch.float32, torch.float64):
            h, w = spectral_output_sizes(vals, self.effective_stride(vals),
                                         self.smoothness).tolist()
            return int(h), int(w)
        lo = [self.lower_bound(vals[0]), self.lower_bound(vals[1])]
        if self.shared_stride:
            lo = [max(lo)] * 2
        return tuple(_host_output_len(vals[i], host.stride[i], lo[i],  # type: ignore
                                      self.upper_limit_stride, self.smoothness,
                                      host.dtype) for i in range(2))

    def output_size(self, in_size: Tuple[int, int]) -> Tuple[int, int]:
        """Integer output size ``(h, w)`` the layer produces for an input of ``in_size``
        (computed on the host; see :attr:`host_ratio` for when the device is read)."""
        return self._sizes(self._host_copy(), in_size_values(in_size))

    def host_output_size(self, in_size: Tuple[int, int]) -> Tuple[int, int]:
        """Integer ``(h, w)`` for an ``(H, W)`` input (ints), from the host copy: the
        same as :meth:`output_size`."""
        return self._sizes(self._host_copy(), (int(in_size[0]), int(in_size[1])))

    def continuous_size(self, in_size: Tuple[SizeLike, SizeLike],
                        in_values: Optional[Sequence[int]] = None
                        ) -> Tuple[Tensor, Tensor]:
        """Straight-through output sizes ``(h, w)`` for an input of ``in_size = (H, W)``.

        The forward values are the integer sizes :meth:`forward` produces; the gradient is
        that of the continuous ``min(n, max(n / S, 2) + 2R)`` (zero where a bound binds),
        so it reaches ``stride`` (and ``H``/``W`` when they are straight-through tensors
        of an upstream layer).

        Args:
            in_size (tuple): ``(H, W)``, each an int or a scalar tensor.
            in_values (tuple[int, int], optional): the integer values of ``in_size`` when
                the host knows them (tensors are read from the device otherwise).
        """
        vals = in_size_values(in_size, in_values)
        stride = self.effective_stride(vals)
        values = spectral_output_sizes(vals, stride, self.smoothness)
        out = []
        for i, n in enumerate(in_size):
            cont = torch.clamp(n / stride[i], min=MIN_STRIDED_SIZE) + 2 * self.smoothness
            cont = torch.minimum(cont, n if isinstance(n, Tensor) else cont.new_tensor(n))
            out.append(values[i].to(cont.dtype) + (cont - cont.detach()))
        return out[0], out[1]

    # ------------------------------------------------------------------------ forward
    def forward(self, x: Tensor) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f'DiffStride expects a torch.Tensor, got {type(x).__name__}')
        if x.dim() != 4:
            raise ValueError('DiffStride expects a 4-D (N, C, H, W) tensor, got shape '
                             f'{tuple(x.shape)}')
        if x.shape[2] == 0 or x.shape[3] == 0:
            raise ValueError('DiffStride got an input with an empty spatial dimension: '
                             f'shape {tuple(x.shape)}')
        in_size = (int(x.shape[2]), int(x.shape[3]))
        # Guarded stride and sizes from the host copy (refreshed, and the stride
        # guarded, only if the stride changed since).
        out_size = self._sizes(self._host_copy(), in_size)
        y = spectral_pool(x, self.effective_stride(in_size), self.smoothness, out_size)
        self.last_input_size = in_size
        self.last_size = (int(y.shape[2]), int(y.shape[3]))
        return y

    # -------------------------------------------------------------------------- cost
    def count_macs(self, input_shape: Sequence[int]) -> int:
        """Multiply-accumulates of one call on an input of ``input_shape`` (an estimate).

        Rule (radix-2 FFT count, applied to any length): a length-``n`` FFT costs
        ``2 n log2 n`` MACs on complex data and ``n log2 n`` on real data; the real mask
        costs 2 MACs per kept complex coefficient. Per channel, for ``H x W -> h x w``:
        ``H F_r(W) + (W//2+1) F_c(H)`` (forward), ``2 h (w//2+1)`` (mask),
        ``(w//2+1) F_c(h) + h F_r(w)`` (inverse).

        Args:
            input_shape (sequence[int]): ``(N, C, H, W)`` or ``(C, H, W)``.

        Example:
            >>> DiffStride(init_stride=1.0, adaptive_lower_bound=False).count_macs(
            ...     (1, 1, 8, 8))
            944
        """
        shape = tuple(int(v) for v in input_shape)
        if len(shape) == 3:
            shape = (1, ) + shape
        if len(shape) != 4 or min(shape) < 1:
            raise ValueError('input_shape must be (N, C, H, W) or (C, H, W) with positive '
                             f'entries, got {tuple(input_shape)!r}')
        n, c, h_in, w_in = shape
        h, w = self.output_size((h_in, w_in))
        per_channel = (h_in * _fft_macs(w_in, True) + (w_in // 2 + 1) * _fft_macs(h_in, False)
                       + 2 * h * (w // 2 + 1)
                       + (w // 2 + 1) * _fft_macs(h, False) + h * _fft_macs(w, True))
        return int(round(n * c * per_channel))
