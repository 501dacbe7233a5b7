from .gmacs_hook import DynOPoolGMACsHook

__all__ = ['DynOPoolGMACsHook']
