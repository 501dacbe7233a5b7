from .hooks import DynOPoolGMACsHook, RNGStateHook
from .optim_constructor import DynOPoolOptimWrapperConstructor

__all__ = ['DynOPoolGMACsHook', 'DynOPoolOptimWrapperConstructor', 'RNGStateHook']
