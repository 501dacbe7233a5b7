"""Deprecated module path: the tracer is :mod:`mmseg_dynopool.models.converter.trace`
(and ``output_size`` :mod:`mmseg_dynopool.models.converter.size_rules`)."""
import warnings

from ..converter.size_rules import output_size
from ..converter.trace import (RESIZE_FUNCTIONS, FunctionCall, ModuleCall, Size, Trace,
                               flat_tensors, spatial, trace_forward)

__all__ = ['RESIZE_FUNCTIONS', 'FunctionCall', 'ModuleCall', 'Size', 'Trace',
           'flat_tensors', 'spatial', 'trace_forward', 'output_size']
warnings.warn('mmseg_dynopool.models.utils.probe is deprecated: import from '
              'mmseg_dynopool.models.converter.trace', DeprecationWarning, stacklevel=2)
