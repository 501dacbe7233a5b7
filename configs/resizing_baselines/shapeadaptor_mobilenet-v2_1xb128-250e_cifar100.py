# Shape Adaptor MobileNetV2 on CIFAR-100 (the thesis' Table 5.2 comparison), next to
# dynopool_cls/dynopool-b_mobilenet-v2_1xb128-250e_cifar100.py: every resizing op of the
# human backbone becomes a ShapeAdaptor through the converter
# (configs/_base_/resizing_baselines.py), placement 'after' (Eq. 5.2, as the DynOPool
# classification configs); same data, schedule (250 epochs) and GMACs logging (lambda =
# 0).
_base_ = [
    '../dynopool_cls/mobilenet-v2_1xb128_cifar100.py',
    '../_base_/resizing_baselines.py',
]

custom_imports = dict(imports=['mmseg_dynopool'], allow_failed_imports=False)
model = dict(backbone=dict(_delete_=True, type='DynOPoolBackbone',
                           backbone={{_base_.model.backbone}}, placement='after',
                           exact_sizes=False,
                           pool_cfg={{_base_.shape_adaptor_pool_cfg}}))
optim_wrapper = dict(constructor='DynOPoolOptimWrapperConstructor', paramwise_cfg={{_base_.shape_adaptor_paramwise_cfg}})
param_scheduler = dict(milestones=[75, 150, 200])
train_cfg = dict(max_epochs=250)
custom_hooks = [dict(type='DynOPoolGMACsHook', loss_weight=0.0)]
