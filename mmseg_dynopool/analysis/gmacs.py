"""Deprecated: the cost model lives in :mod:`mmseg_dynopool.models.cost`.

Kept so that ``from mmseg_dynopool.analysis.gmacs import profile_gmacs`` keeps working;
new code imports from ``mmseg_dynopool.models.cost``. The package never imports this
module.
"""
import warnings

from ..models.cost import (GMACsProfile, count_gmacs, profile_gmacs,  # noqa: F401
                           reset_to_initial_ratios)

warnings.warn('mmseg_dynopool.analysis.gmacs is deprecated: import GMACsProfile, '
              'count_gmacs, profile_gmacs and reset_to_initial_ratios from '
              'mmseg_dynopool.models.cost', DeprecationWarning, stacklevel=2)

__all__ = ['GMACsProfile', 'count_gmacs', 'profile_gmacs', 'reset_to_initial_ratios']
