# DynOPool-B of the main job: the tiny HRNet, unconstrained (lambda = 0, no budget); the
# hook only logs the GMACs estimate and the sizes.
_base_ = ['./fcn_hr18tiny_1xb8-600it_synthvoc-96x96.py', '../_base_/dynopool_hrnet.py']
custom_imports = dict(imports=['mmseg_dynopool'], allow_failed_imports=False)
model = dict(backbone={{_base_.dynopool_backbone}})
optim_wrapper = dict(constructor='DynOPoolOptimWrapperConstructor', paramwise_cfg={{_base_.dynopool_paramwise_cfg}})
custom_hooks = [dict(type='DynOPoolGMACsHook', loss_weight=0.0)]
