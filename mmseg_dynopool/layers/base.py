"""The base class of the learnable resizing layers: DynOPool, ShapeAdaptor, DiffStride.

Every tool that takes a model with learnable resizing layers (the GMACs hook and its
budget controller, the cost model, the report, plot and freeze tools) finds them with
:func:`resizing_layers` and uses only this interface - no caller branches on the layer
type:

* ``init_ratio``, :attr:`ratio` (detached ``(r_h, r_w)``), :attr:`host_ratio`,
  ``last_size``, ``last_input_size``;
* :meth:`continuous_size`: the straight-through output size, differentiable w.r.t. the
  layer's parameter (the per-layer term of Eq. 4.7); :meth:`host_output_size`: the
  integer size the next forward produces, computed on the host;
* :meth:`ratio_parameter` (the learnable parameter, named :attr:`ratio_param_name`),
  :meth:`scale_ratio` (set the parameter so the ratio is a given multiple of the ratio
  at a saved value - the budget projection), :meth:`reset_parameters_to_initial`;
* :meth:`count_macs`: the layer's own cost rule (the one rule the cost model uses);
* :attr:`exact_sizes` / :meth:`set_output_size`: whether any integer output size can be
  set exactly (DynOPool), which the budget projection uses to refine sizes;
* the host-copy bookkeeping (:class:`~.host_cache.HostCopyMixin`).
"""
import warnings
from typing import List, Optional, Sequence, Tuple

from mmengine.registry import MODELS
from torch import Tensor, nn

from .host_cache import HostCopyMixin, SizeLike


class ResizingLayer(HostCopyMixin, nn.Module):
    """A layer that resizes a feature map by a learned ratio (the family of DynOPool).

    Subclasses implement the abstract methods below and call ``self._host_track()`` at
    the end of ``__init__`` (host copies, see ``layers/host_cache.py``).

    Attributes:
        ratio_param_name (str): the name of the learnable parameter that sets the
            ratio (``'alpha'`` or ``'stride'``).
        exact_sizes (bool): :meth:`set_output_size` can give the layer any integer
            output size (DynOPool: ``alpha = in / out``).
    """

    ratio_param_name: str = 'alpha'
    exact_sizes: bool = False

    # ------------------------------------------------------------------ parameter
    def ratio_parameter(self) -> Tensor:
        """The learnable parameter that sets the ratio (``alpha`` or ``stride``)."""
        return getattr(self, self.ratio_param_name)

    @property
    def ratio(self) -> Tensor:
        """Current ``(r_h, r_w)`` as a detached tensor."""
        raise NotImplementedError

    @property
    def host_ratio(self) -> Tuple[float, float]:
        """``(r_h, r_w)`` as Python floats from the host copy (no device read unless
        the parameter changed)."""
        raise NotImplementedError

    def reset_parameters_to_initial(self) -> None:
        """Restore the parameter to its value at ``init_ratio``."""
        raise NotImplementedError

    def scale_ratio(self, start: Tensor, factor: Tensor) -> None:
        """Set the parameter so that the ratio is ``factor = (f_h, f_w)`` times the
        ratio at parameter value ``start``, clamped to the layer's allowed range (the
        budget projection's step, under ``no_grad``)."""
        raise NotImplementedError

    # ---------------------------------------------------------------------- sizes
    def continuous_size(self, in_size: Tuple[SizeLike, SizeLike],
                        in_values: Optional[Sequence[int]] = None
                        ) -> Tuple[Tensor, Tensor]:
        """Straight-through output size ``(h, w)`` for ``in_size`` (ints or
        straight-through tensors), differentiable w.r.t. the parameter (Eq. 4.7);
        ``in_values`` are the integer input sizes when the host knows them."""
        raise NotImplementedError

    def host_output_size(self, in_size: Tuple[int, int]) -> Tuple[int, int]:
        """The integer ``(h, w)`` the next forward gives for an ``(H, W)`` input."""
        raise NotImplementedError

    def set_output_size(self, in_size: Tuple[int, int], out_size: Tuple[int, int]
                        ) -> None:
        """Set the parameter so that an ``in_size`` input gives ``out_size`` (only for
        layers with :attr:`exact_sizes`)."""
        raise NotImplementedError(f'{type(self).__name__} cannot set an exact output '
                                  'size (exact_sizes is False)')

    def output_size_bounds(self, in_lo: int, in_hi: int) -> Tuple[int, int]:
        """The integer output sizes ``(lo, hi)`` (one axis) :meth:`set_output_size` can
        give for every input size in ``[in_lo, in_hi]`` (only for :attr:`exact_sizes`)."""
        raise NotImplementedError(f'{type(self).__name__} has no exact output sizes')

    def bounds_repr(self) -> str:
        """The allowed range of the ratio, for logs."""
        return ''

    # ----------------------------------------------------------------------- cost
    def count_macs(self, input_shape: Sequence[int]) -> int:
        """Multiply-accumulates of one call on an ``(N, C, H, W)`` input at the current
        parameter (the layer's own cost rule, used by the cost model)."""
        raise NotImplementedError


def resizing_layers(model: nn.Module) -> List[Tuple[str, ResizingLayer]]:
    """The distinct learnable resizing layers of ``model`` as ``(name, module)`` pairs.

    Order is that of ``model.named_modules()`` (registration order), stable across
    runs; a shared instance appears once, under the first name it is reachable by.

    Example:
        >>> model = nn.Sequential(nn.Conv2d(3, 8, 3), DynOPool())
        >>> [name for name, _ in resizing_layers(model)]
        ['1']
    """
    return [(name, m) for name, m in model.named_modules()
            if isinstance(m, ResizingLayer)]


def is_resizing_layer(module) -> bool:
    """Whether ``module`` is a learnable resizing layer (a :class:`ResizingLayer`)."""
    return isinstance(module, ResizingLayer)


def resizing_layer_type(layer_type) -> str:
    """The registered name of a learnable resizing layer type, given by name or class;
    anything else is a ``ValueError`` naming the registered types."""
    if isinstance(layer_type, type) and issubclass(layer_type, ResizingLayer):
        return layer_type.__name__
    if isinstance(layer_type, str):
        cls = MODELS.get(layer_type)
        if isinstance(cls, type) and issubclass(cls, ResizingLayer):
            return layer_type
    known = ', '.join(sorted(t.__name__ for t in _registered()))
    raise ValueError(f'unknown resizing layer type {layer_type!r}: the type must be one '
                     f'of {known}')


def _registered() -> List[type]:
    return [cls for cls in MODELS.module_dict.values()
            if isinstance(cls, type) and issubclass(cls, ResizingLayer)]


def resizing_layer_class(layer_type) -> type:
    """The registered :class:`ResizingLayer` subclass of a ``type`` (name or class)."""
    name = resizing_layer_type(layer_type)
    return layer_type if isinstance(layer_type, type) else MODELS.get(name)


def pool_cfg_arg(pool_cfg: Optional[dict], dynopool_cfg: Optional[dict],
                 owner: str) -> Optional[dict]:
    """A backbone's ``pool_cfg``, honouring the deprecated name ``dynopool_cfg``.

    ``dynopool_cfg`` warns; given together (a config that inherits ``pool_cfg`` from a
    base and overrides the old name), its keys update ``pool_cfg``'s."""
    if dynopool_cfg is None:
        return pool_cfg
    warnings.warn(f'{owner}: dynopool_cfg is deprecated, use pool_cfg (the same option '
                  'of DynOPoolBackbone and the converter)', DeprecationWarning,
                  stacklevel=3)
    return {**(pool_cfg or {}), **dynopool_cfg}


def resizing_layer_cfg(cfg: Optional[dict], arg: str = 'pool_cfg') -> dict:
    """A backbone's layer config ``cfg`` (argument ``arg``) checked and completed: a copy
    with ``type`` validated by :func:`resizing_layer_type` (default ``'DynOPool'``).
    ``init_ratio`` is refused: the backbones set it through ``init_ratios``."""
    cfg = dict(cfg or {})
    if 'init_ratio' in cfg:
        raise ValueError(f'{arg} must not set init_ratio; use init_ratios')
    cfg['type'] = resizing_layer_type(cfg.get('type', 'DynOPool'))
    return cfg
