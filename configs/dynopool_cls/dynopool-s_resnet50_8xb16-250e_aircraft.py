# DynOPool-S ResNet-50 on FGVC-Aircraft (Table 5.1).
# GMACs budget by construction (docs/budget.md): the thesis' DP-S / human cost,
# Table 5.1, ResNet-50 FGVC-Aircraft: 3.57 / 4.12. target_ratio is relative to this model's cost at
# initialisation, 6.441 GMACs against the human model's 4.111 (counted with
# count_gmacs, docs/classification.md), hence the second factor; lambda follows.
_base_ = './dynopool-b_resnet50_8xb16-250e_aircraft.py'

custom_imports = dict(imports=['mmseg_dynopool'], allow_failed_imports=False)

model = dict(backbone=dict(init_ratios=None))
custom_hooks = [dict(type='DynOPoolGMACsHook', target_ratio=3.57 / 4.12 * 4.111 / 6.441)]
