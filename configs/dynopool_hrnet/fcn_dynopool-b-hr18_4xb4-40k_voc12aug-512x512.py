# DynOPool-B on HRNet-W18: lambda = 0.
_base_ = ['./fcn_hr18_4xb4-40k_voc12aug-512x512.py', '../_base_/dynopool_hrnet.py']
custom_imports = dict(imports=['mmseg_dynopool'], allow_failed_imports=False)
model = dict(backbone={{_base_.dynopool_backbone}})
optim_wrapper = dict(constructor='DynOPoolOptimWrapperConstructor', paramwise_cfg={{_base_.dynopool_paramwise_cfg}})
custom_hooks = [dict(type='DynOPoolGMACsHook', loss_weight=0.0)]
