"""The resizing layers the converter builds, from ``pool_cfg``.

Every pool is built from mmengine's root ``MODELS`` registry with ``pool_cfg`` (default
``dict(type='DynOPool')``) plus ``init_ratio``, so any registered layer with that
interface (``init_ratio``, ``ratio``, ``continuous_size``) can take DynOPool's place:
``ShapeAdaptor``, ``DiffStride`` or a user's own.
"""
from typing import Optional, Sequence

from mmengine.registry import MODELS
from torch import nn

from .init_ratios import Ratio


def pool_config(pool_cfg: Optional[dict]) -> dict:
    """``pool_cfg`` with its default ``type='DynOPool'``, validated.

    Raises:
        ValueError: ``pool_cfg`` sets ``init_ratio`` (the converter's ``init_ratios``
            does).
    """
    cfg = dict(pool_cfg or {})
    if 'init_ratio' in cfg:
        raise ValueError('pool_cfg must not set init_ratio: use init_ratios')
    cfg.setdefault('type', 'DynOPool')
    return cfg


def build_pool(cfg: dict, ratio: Ratio, modules: Sequence[nn.Module] = ()) -> nn.Module:
    """The layer of ``cfg`` at ``init_ratio=ratio`` for a level of resizing ``modules``.

    A DynOPool for a level whose ops are all ``nn.AvgPool2d`` averages its four query
    points (``aggregation='avg'``) unless ``cfg`` says otherwise; else it takes their
    max (Eq. 4.2 and the aggregation after it).
    """
    cfg = dict(cfg, init_ratio=ratio)
    if cfg['type'] == 'DynOPool' and 'aggregation' not in cfg and modules and all(
            isinstance(m, nn.AvgPool2d) for m in modules):
        cfg['aggregation'] = 'avg'
    return MODELS.build(cfg)
