from .gmacs_hook import DynOPoolGMACsHook
from .latency_hook import DynOPoolLatencyHook
from .rng_state_hook import RNGStateHook

__all__ = ['DynOPoolGMACsHook', 'DynOPoolLatencyHook', 'RNGStateHook']
