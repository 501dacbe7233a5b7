# DynOPool-S VGG-16-BN on FGVC-Aircraft (Table 5.1).
# GMACs budget by construction (docs/budget.md): the thesis' DP-S / human cost,
# Table 5.1, VGG-16 FGVC-Aircraft: 13.9 / 15.4. target_ratio is relative to this model's cost at
# initialisation, which equals the human model's here.
_base_ = './dynopool-b_vgg16bn-1fc_8xb16-250e_aircraft.py'

custom_imports = dict(imports=['mmseg_dynopool'], allow_failed_imports=False)

custom_hooks = [dict(type='DynOPoolGMACsHook', target_ratio=13.9 / 15.4)]
