"""An optimizer-wrapper constructor whose parameter groups ``torch.compile`` can trace."""
from typing import Optional

from mmengine.optim import DefaultOptimWrapperConstructor, OptimWrapper
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS
from torch import nn


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class DynOPoolOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """mmengine's default constructor, with the optimizer's parameter groups as plain
    dicts.

    With a ``paramwise_cfg`` (ours sets alpha's lr and decay multipliers), mmengine
    0.10.7 builds the groups into its config and they come out as ``ConfigDict``s;
    ``torch.compile`` of ``train_step`` (``compile=True`` in a config) then fails inside
    the optimizer's step (Dynamo traces ``param_groups`` only as plain dicts). The
    groups' contents are unchanged.

    Args: those of :class:`mmengine.optim.DefaultOptimWrapperConstructor`.

    Example:
        >>> optim_wrapper = dict(
        ...     constructor='DynOPoolOptimWrapperConstructor',
        ...     optimizer=dict(type='SGD', lr=0.01),
        ...     paramwise_cfg=dict(custom_keys={'.alpha': dict(lr_mult=0.1)}))
    """

    def __call__(self, model: nn.Module) -> OptimWrapper:
        wrapper = super().__call__(model)
        optimizer = getattr(wrapper, 'optimizer', None)
        if optimizer is not None:
            # In place: the list object is what the schedulers and the wrapper hold.
            optimizer.param_groups[:] = [dict(group) for group in optimizer.param_groups]
        return wrapper
