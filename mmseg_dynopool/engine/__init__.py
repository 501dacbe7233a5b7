from .budget import BudgetController
from .hooks import DynOPoolGMACsHook, RNGStateHook
from .optim_constructor import DynOPoolOptimWrapperConstructor

__all__ = ['BudgetController', 'DynOPoolGMACsHook', 'DynOPoolOptimWrapperConstructor',
           'RNGStateHook']
