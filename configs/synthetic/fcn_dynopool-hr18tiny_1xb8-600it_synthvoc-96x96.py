# DynOPool counterpart of the main job's baseline: same network and recipe, every strided
# conv replaced by DynOPool + stride-1 conv, GMACs loss on. On this small problem alpha
# gets the full learning rate (lr_mult=1) so the sizes move within a few hundred
# iterations; lambda trades the task loss against the ~0.3 GMACs of this model.
_base_ = ['./fcn_hr18tiny_1xb8-600it_synthvoc-96x96.py', '../_base_/dynopool_hrnet.py']
custom_imports = dict(imports=['mmseg_dynopool'], allow_failed_imports=False)
model = dict(backbone={{_base_.dynopool_backbone}})
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'.alpha': dict(lr_mult=1.0, decay_mult=0.0)}))
custom_hooks = [dict(type='DynOPoolGMACsHook', loss_weight=0.5)]
