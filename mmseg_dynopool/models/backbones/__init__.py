from .dynopool_hrnet import DynOPoolHRNet

__all__ = ['DynOPoolHRNet']
