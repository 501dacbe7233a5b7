"""Deployment: freeze learned DynOPool sizes into a fixed-size model, export to ONNX."""
from .freeze import (FrozenDynOPool, TensorForward, apply_frozen_sizes, compare_outputs,
                     export_onnx, freeze_dynopool, frozen_sizes, load_frozen,
                     max_abs_diff, named_pools, record_pool_sizes, run_onnx, save_frozen)

__all__ = [
    'FrozenDynOPool', 'TensorForward', 'apply_frozen_sizes', 'compare_outputs',
    'export_onnx', 'freeze_dynopool', 'frozen_sizes', 'load_frozen', 'max_abs_diff',
    'named_pools', 'record_pool_sizes', 'run_onnx', 'save_frozen'
]
