# DiffStride HRNet-W48 FCN on PascalVOC-aug (40k, 480x480), next to
# dynopool_hrnet/fcn_dynopool-b-hr48_4xb4-40k_voc12aug-480x480.py: HRNet's resizing ops
# (the stem's two strided convs and each new stream's strided conv) become DiffStride
# layers through the converter (configs/_base_/resizing_baselines.py), one shared layer
# per resolution level; lambda = 0 (the GMACs hook logs the estimate).
_base_ = [
    '../dynopool_hrnet/fcn_hr48_4xb4-40k_voc12aug-480x480.py',
    '../_base_/resizing_baselines.py',
]

custom_imports = dict(imports=['mmseg_dynopool'], allow_failed_imports=False)
model = dict(backbone=dict(_delete_=True, type='DynOPoolBackbone',
                           backbone={{_base_.model.backbone}}, placement='before',
                           exact_sizes=False, pool_cfg={{_base_.diffstride_pool_cfg}}))
optim_wrapper = dict(constructor='DynOPoolOptimWrapperConstructor', paramwise_cfg={{_base_.diffstride_paramwise_cfg}})
custom_hooks = [dict(type='DynOPoolGMACsHook', loss_weight=0.0)]
