from .dynopool import DynOPool, dynopool_layers
from .functional import (dynopool_sample, dynopool_sample_reference, output_size,
                         query_positions, ste_round)

__all__ = ['DynOPool', 'dynopool_layers', 'dynopool_sample', 'dynopool_sample_reference',
           'output_size', 'query_positions', 'ste_round']
