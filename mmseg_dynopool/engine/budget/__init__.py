"""The cost budget of Eq. 4.8, without mmengine's Runner: :class:`BudgetController` (the
term ``lambda * C``, dual ascent on lambda, the lock) in ``controller.py``, the projection
onto the budget in ``projection.py``, and what both need from a cost model and the
resizing layers in ``interface.py``. ``DynOPoolGMACsHook`` wires it into the Runner."""
from .controller import BudgetController, LockReport, check_budget_options
from .interface import BudgetCost
from .projection import Projection, project_to_budget

__all__ = ['BudgetController', 'BudgetCost', 'LockReport', 'Projection',
           'check_budget_options', 'project_to_budget']
