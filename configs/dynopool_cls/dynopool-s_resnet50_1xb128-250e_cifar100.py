# DynOPool-S ResNet-50 on CIFAR-100 (Table 5.1).
# GMACs budget by construction (docs/budget.md): the thesis' DP-S / human cost,
# Table 5.1, ResNet-50 CIFAR-100: 1.01 / 1.31. target_ratio is relative to this model's cost at
# initialisation, 1.948 GMACs against the human model's 1.305 (counted with
# count_gmacs, docs/classification.md), hence the second factor; lambda follows.
_base_ = './dynopool-b_resnet50_1xb128-250e_cifar100.py'

custom_imports = dict(imports=['mmseg_dynopool'], allow_failed_imports=False)

model = dict(backbone=dict(init_ratios=None))
custom_hooks = [dict(type='DynOPoolGMACsHook', target_ratio=1.01 / 1.31 * 1.305 / 1.948)]
