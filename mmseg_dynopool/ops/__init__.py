from .dynopool import DynOPool
from .functional import (dynopool_sample, dynopool_sample_reference, output_size,
                         query_positions, ste_round)

__all__ = ['DynOPool', 'dynopool_layers', 'dynopool_sample', 'dynopool_sample_reference',
           'output_size', 'query_positions', 'ste_round']
from .diffstride import DiffStride, spectral_output_sizes, spectral_pool  # noqa: E402
from .shape_adaptor import ShapeAdaptor, shape_adaptor_size_limit  # noqa: E402
__all__ += ['DiffStride', 'spectral_output_sizes', 'spectral_pool',
            'ShapeAdaptor', 'shape_adaptor_size_limit']
from .resizing import (RESIZING_LAYERS, dynopool_layers, is_resizing_layer,  # noqa: E402
                       ratio_parameter, scale_ratio)
__all__ += ['RESIZING_LAYERS', 'is_resizing_layer', 'ratio_parameter', 'scale_ratio']
