from .gmacs import GMACsProfile, count_gmacs, profile_gmacs, reset_to_initial_ratios

__all__ = ['GMACsProfile', 'count_gmacs', 'profile_gmacs', 'reset_to_initial_ratios']
from .per_class import PerClassIoUMetric, per_class_report  # noqa: F401
from .report import (CheckpointMismatchError, NoDynOPoolError,  # noqa: F401,E402
                     build_model_from_config, dynopool_report, format_report,
                     model_report)
