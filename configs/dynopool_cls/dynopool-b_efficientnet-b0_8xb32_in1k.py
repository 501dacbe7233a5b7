# DynOPool-B EfficientNet-B0 on ImageNet (Table 5.3).
# DP-B is "learned mainly for accuracy" (section 5.3.1): lambda = 0, the GMACs hook only
# logs the estimate. Starts with the human model's feature-map sizes; costs 0.46 GMACs
# there (human: 0.42) because Eq. 5.2 runs the replaced strided convs at stride 1.
# Table 5.3 has a single DynOPool EfficientNet-B0 row (0.58 GMACs, above this model's
# initial 0.46), i.e. a DP-B-like run; dynopool-s_... is the DP-S counterpart.
_base_ = ['./efficientnet-b0_8xb32_in1k.py', './_base_/dynopool.py']

custom_imports = dict(imports=['mmseg_dynopool'], allow_failed_imports=False)

model = dict(backbone={{_base_.dynopool_efficientnet_b0_imagenet}})

optim_wrapper = dict(constructor='DynOPoolOptimWrapperConstructor', paramwise_cfg={{_base_.dynopool_paramwise_cfg}})
custom_hooks = [dict(type='DynOPoolGMACsHook', loss_weight=0.0)]
