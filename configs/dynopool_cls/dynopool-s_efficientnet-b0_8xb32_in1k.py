# DynOPool-S EfficientNet-B0 on ImageNet (Table 5.3).
# GMACs budget by construction (docs/budget.md): the thesis' DP-S / human cost,
# Table 5.3, EfficientNet-B0 ImageNet: 0.58 / 0.42. target_ratio is relative to this model's cost at
# initialisation, 0.46 GMACs against the human model's 0.402 (counted with
# count_gmacs, docs/classification.md), hence the second factor; lambda follows.
_base_ = './dynopool-b_efficientnet-b0_8xb32_in1k.py'

custom_imports = dict(imports=['mmseg_dynopool'], allow_failed_imports=False)

custom_hooks = [dict(type='DynOPoolGMACsHook', target_ratio=0.58 / 0.42 * 0.402 / 0.46)]
