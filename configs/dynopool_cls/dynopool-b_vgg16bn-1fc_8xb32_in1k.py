# DynOPool-B VGG-16-BN on ImageNet (Table 5.1).
# DP-B is "learned mainly for accuracy" (section 5.3.1): lambda = 0, the GMACs hook only
# logs the estimate. Starts as the human model (same sizes and GMACs, 15.37).
_base_ = ['./vgg16bn-1fc_8xb32_in1k.py', './_base_/dynopool.py']

custom_imports = dict(imports=['mmseg_dynopool'], allow_failed_imports=False)

model = dict(backbone={{_base_.dynopool_vgg16bn_imagenet}})

optim_wrapper = dict(constructor='DynOPoolOptimWrapperConstructor', paramwise_cfg={{_base_.dynopool_paramwise_cfg}})
custom_hooks = [dict(type='DynOPoolGMACsHook', loss_weight=0.0)]
