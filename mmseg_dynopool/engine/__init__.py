from .hooks import DynOPoolGMACsHook

__all__ = ['DynOPoolGMACsHook']
