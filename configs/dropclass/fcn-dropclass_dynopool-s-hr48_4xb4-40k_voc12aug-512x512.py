# DynOPool HRNet + DropClass: the DynOPool-S model (DynOPoolHRNet-W48 backbone, alpha at
# 0.1x lr without weight decay, GMACs loss through DynOPoolGMACsHook) with the FCN head
# trained by DropClass. Inheriting the DynOPool-S config as a whole (rather than listing
# the DropClass VOC config and ../_base_/dynopool_hrnet.py as two bases) keeps lambda,
# the paramwise_cfg and the hook exactly those of DynOPool-S, so the comparison
# DynOPool-S vs. this config isolates DropClass. The GMACs the hook profiles include
# DropClass' extra inference conv.
_base_ = '../dynopool_hrnet/fcn_dynopool-s-hr48_4xb4-40k_voc12aug-512x512.py'
custom_imports = dict(imports=['mmseg_dynopool'], allow_failed_imports=False)
model = dict(decode_head=dict(type='DropClassFCNHead'))
