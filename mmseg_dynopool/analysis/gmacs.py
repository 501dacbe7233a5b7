"""Re-export of the cost model, which lives in :mod:`mmseg_dynopool.models.cost`.

Kept so that ``from mmseg_dynopool.analysis.gmacs import profile_gmacs`` keeps working;
new code imports from ``mmseg_dynopool.models.cost``.
"""
from ..models.cost import (GMACsProfile, count_gmacs, profile_gmacs,  # noqa: F401
                           reset_to_initial_ratios)

__all__ = ['GMACsProfile', 'count_gmacs', 'profile_gmacs', 'reset_to_initial_ratios']
