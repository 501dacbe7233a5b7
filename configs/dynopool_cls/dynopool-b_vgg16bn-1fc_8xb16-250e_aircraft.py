# DynOPool-B VGG-16-BN on FGVC-Aircraft (Table 5.1).
# DP-B is "learned mainly for accuracy" (section 5.3.1): lambda = 0, the GMACs hook only
# logs the estimate. Starts as the human model (same sizes and GMACs, 15.37).
_base_ = ['./vgg16bn-1fc_8xb16_aircraft.py', './_base_/dynopool.py']

custom_imports = dict(imports=['mmseg_dynopool'], allow_failed_imports=False)

model = dict(backbone={{_base_.dynopool_vgg16bn_imagenet}})

optim_wrapper = dict(constructor='DynOPoolOptimWrapperConstructor', paramwise_cfg={{_base_.dynopool_paramwise_cfg}})
# DynOPool models train 250 epochs instead of 200 on CIFAR-100 and Aircraft
# (section 5.2.2).
param_scheduler = dict(T_max=250)
train_cfg = dict(max_epochs=250)
custom_hooks = [dict(type='DynOPoolGMACsHook', loss_weight=0.0)]
