"""Deployment: freeze learned resizing sizes into a fixed-size model, export to ONNX.

``frozen_layer.py``: the fixed-size stand-ins; ``freeze.py``: freezing, the size table,
save/load; ``onnx.py``: ONNX export and verification against the trained model.
"""
from .freeze import (CONFIG_FILE, FROZEN_LAYERS, SIZES_FILE, STAND_INS, WEIGHTS_FILE,
                     apply_frozen_sizes, freeze_dynopool, frozen_sizes, load_frozen,
                     named_pools, record_pool_sizes, save_frozen)
from .frozen_layer import FrozenDynOPool, FrozenLayer, FrozenResizingLayer
from .onnx import (ONNX_FILE, TensorForward, UnsupportedExportError, compare_outputs,
                   export_onnx, max_abs_diff, run_onnx)

__all__ = [
    'CONFIG_FILE', 'FROZEN_LAYERS', 'FrozenDynOPool', 'FrozenLayer', 'FrozenResizingLayer',
    'ONNX_FILE', 'STAND_INS',
    'SIZES_FILE', 'TensorForward', 'UnsupportedExportError', 'WEIGHTS_FILE',
    'apply_frozen_sizes', 'compare_outputs', 'export_onnx', 'freeze_dynopool',
    'frozen_sizes', 'load_frozen', 'max_abs_diff', 'named_pools', 'record_pool_sizes',
    'run_onnx', 'save_frozen'
]
