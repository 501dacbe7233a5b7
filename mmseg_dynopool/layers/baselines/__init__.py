"""The learnable resizing layers the thesis compares DynOPool with (docs/baselines.md)."""
from .diffstride import DiffStride, spectral_output_sizes, spectral_pool
from .shape_adaptor import ShapeAdaptor, shape_adaptor_size_limit

__all__ = ['DiffStride', 'spectral_output_sizes', 'spectral_pool', 'ShapeAdaptor',
           'shape_adaptor_size_limit']
