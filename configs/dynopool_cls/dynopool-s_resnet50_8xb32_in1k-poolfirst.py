# DynOPool-S ResNet-50 on ImageNet with the pools in front of the formerly strided convs
# GMACs budget by construction (docs/budget.md): the thesis' DP-S / human cost,
# Table 5.1's ResNet-50 ImageNet ratio (not a thesis model): 6.2 / 4.11. target_ratio is relative to this model's cost at
# initialisation, 4.022 GMACs against the human model's 4.111 (counted with
# count_gmacs, docs/classification.md), hence the second factor; lambda follows.
_base_ = './dynopool-s_resnet50_8xb32_in1k.py'

custom_imports = dict(imports=['mmseg_dynopool'], allow_failed_imports=False)

model = dict(backbone=dict(placement='before'))

custom_hooks = [dict(type='DynOPoolGMACsHook', target_ratio=6.2 / 4.11 * 4.111 / 4.022)]
