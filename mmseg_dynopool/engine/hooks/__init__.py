from .gmacs_hook import DynOPoolGMACsHook
from .rng_state_hook import RNGStateHook

__all__ = ['DynOPoolGMACsHook', 'RNGStateHook']
