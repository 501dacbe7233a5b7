# DynOPool-B ResNet-50 on FGVC-Aircraft (Table 5.1).
# DP-B is "learned mainly for accuracy" (section 5.3.1): lambda = 0, the GMACs hook only
# logs the estimate. Starts with the human model's feature-map sizes; costs 6.44 GMACs
# there (human: 4.12) because Eq. 5.2 runs the replaced strided convs at stride 1.
_base_ = ['./resnet50_8xb16_aircraft.py', './_base_/dynopool.py']

custom_imports = dict(imports=['mmseg_dynopool'], allow_failed_imports=False)

# The first DynOPool starts at ratio 1.0 (see _base_/dynopool.py, section 5.2.2).
model = dict(backbone={{_base_.dynopool_resnet50_imagenet_dpb}})

optim_wrapper = dict(constructor='DynOPoolOptimWrapperConstructor', paramwise_cfg={{_base_.dynopool_paramwise_cfg}})
# DynOPool models train 250 epochs instead of 200 on CIFAR-100 and Aircraft
# (section 5.2.2).
param_scheduler = dict(T_max=250)
train_cfg = dict(max_epochs=250)
custom_hooks = [dict(type='DynOPoolGMACsHook', loss_weight=0.0)]
