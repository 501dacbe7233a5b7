# Toy experiment of thesis chapter 3 with DynOPool VGG-16-BN (DP-S) on
# CIFAR-stretch-V (section 3.1, Fig. 3.1a);
# the thesis' Fig. 3.1 shows how the learned feature-map shapes follow the data.
# lambda is NOT calibrated (the thesis does not report it); it follows the DP-S rule of
# the CIFAR-100 configs: 0.1 / GMACs at initialisation = 0.1 / 0.314 -> 0.3.
_base_ = ['./dynopool-b_vgg16bn-1fc_1xb128-250e_cifar100.py', './_base_/toy_pipelines.py']
custom_imports = dict(imports=['mmseg_dynopool'], allow_failed_imports=False)
train_dataloader = dict(dataset=dict(pipeline={{_base_.stretchv_train_pipeline}}))
val_dataloader = dict(dataset=dict(pipeline={{_base_.stretchv_test_pipeline}}))
test_dataloader = dict(dataset=dict(pipeline={{_base_.stretchv_test_pipeline}}))
# Chapter 3's toys compare shapes at the human cost: a budget of 1.0 (docs/budget.md).
custom_hooks = [dict(type='DynOPoolGMACsHook', target_ratio=1.0)]
