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

    The configs give the scale parameters (``alpha``) a lower learning rate and no
    weight decay, as the DynOPool thesis, chapter 5, section 5.2.2, asks for
    (``shared/papers/dynopool_thesis.txt``; docs/dynopool.md, "Learning rate of α").

    Args:
        optim_wrapper_cfg (dict): the optimizer wrapper's config (``type``,
            ``optimizer``, ...), as for
            :class:`mmengine.optim.DefaultOptimWrapperConstructor`.
        paramwise_cfg (dict, optional): per-parameter options (``custom_keys``,
            ``bias_lr_mult``, ...), as for mmengine's constructor. Default: None.

    Example:
        >>> # In a config:
        >>> optim_wrapper = dict(
        ...     constructor='DynOPoolOptimWrapperConstructor',
        ...     optimizer=dict(type='SGD', lr=0.1, weight_decay=1e-4),
        ...     paramwise_cfg=dict(
        ...         custom_keys={'.alpha': dict(lr_mult=0.1, decay_mult=0.0)}))
        >>> # What the Runner builds from it (mmengine logs every alpha option at
        >>> # INFO; a WARNING-level current logger keeps this example quiet):
        >>> from mmengine.logging import MMLogger
        >>> _ = MMLogger.get_instance('optim_constructor_example', log_level='WARNING')
        >>> from mmseg_dynopool.layers import DynOPool
        >>> model = nn.Sequential(nn.Conv2d(3, 8, 3), DynOPool())
        >>> cfg = dict(optim_wrapper)
        >>> paramwise_cfg = cfg.pop('paramwise_cfg')
        >>> del cfg['constructor']
        >>> wrapper = DynOPoolOptimWrapperConstructor(cfg, paramwise_cfg)(model)
        >>> groups = wrapper.optimizer.param_groups   # conv weight, bias, alpha
        >>> [type(g).__name__ for g in groups]
        ['dict', 'dict', 'dict']
        >>> [(round(g['lr'], 6), g['weight_decay']) for g in groups]
        [(0.1, 0.0001), (0.1, 0.0001), (0.01, 0.0)]
    """

    def __call__(self, model: nn.Module) -> OptimWrapper:
        wrapper = super().__call__(model)
        optimizer = getattr(wrapper, 'optimizer', None)
        if optimizer is not None:
            # In place: the list object is what the schedulers and the wrapper hold.
            optimizer.param_groups[:] = [dict(group) for group in optimizer.param_groups]
        return wrapper
