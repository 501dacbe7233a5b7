# DynOPool-S MobileNetV2 on CIFAR-100 (Table 5.1).
# GMACs budget by construction (docs/budget.md): the thesis' DP-S / human cost,
# Table 5.1, MobileNetV2 CIFAR-100: 0.08 / 0.09. target_ratio is relative to this model's cost at
# initialisation, 0.0933 GMACs against the human model's 0.0914 (counted with
# count_gmacs, docs/classification.md), hence the second factor; lambda follows.
_base_ = './dynopool-b_mobilenet-v2_1xb128-250e_cifar100.py'

custom_imports = dict(imports=['mmseg_dynopool'], allow_failed_imports=False)

custom_hooks = [dict(type='DynOPoolGMACsHook', target_ratio=0.08 / 0.09 * 0.0914 / 0.0933)]
