# DynOPool counterpart of the main job's baseline: same network and recipe, every strided
# conv replaced by DynOPool + stride-1 conv, GMACs loss on. alpha gets 0.1x the base lr
# (as in the paper configs) and lambda = 0.2 against the ~0.09 GMACs of this model: in a
# 200-iteration trial the sizes moved within the first ~50 iterations (stem 48x48 ->
# ~36x28) while the task loss kept falling.
_base_ = ['./fcn_hr18tiny_1xb8-600it_synthvoc-96x96.py', '../_base_/dynopool_hrnet.py']
custom_imports = dict(imports=['mmseg_dynopool'], allow_failed_imports=False)
model = dict(backbone={{_base_.dynopool_backbone}})
optim_wrapper = dict(constructor='DynOPoolOptimWrapperConstructor', paramwise_cfg={{_base_.dynopool_paramwise_cfg}})
custom_hooks = [dict(type='DynOPoolGMACsHook', loss_weight=0.2)]
