"""mmseg_dynopool: DynOPool (learnable feature-map resizing) for MMSegmentation/MMPretrain.

Importing the package registers its modules in the OpenMMLab registries (use it through
``custom_imports=dict(imports=['mmseg_dynopool'])`` in a config) and gives mmengine a
loader for local checkpoints that uses ``torch.load(weights_only=True)`` with a minimal
allow-list (see ``utils/checkpoint_compat.py``).
"""
from .layers import (DiffStride, DynOPool, ResizingLayer, ShapeAdaptor,  # noqa: F401
                     dynopool_layers, resizing_layers)
from .utils import install_checkpoint_compat

install_checkpoint_compat()

from . import datasets, dropclass, engine, models  # noqa: E402,F401  (registration)

__version__ = '0.1.0'
__all__ = ['DynOPool', 'ShapeAdaptor', 'DiffStride', 'ResizingLayer', 'resizing_layers',
           'dynopool_layers', '__version__']
