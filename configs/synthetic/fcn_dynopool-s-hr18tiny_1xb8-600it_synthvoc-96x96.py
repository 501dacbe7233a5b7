# DynOPool-S of the main job: the tiny HRNet with a GMACs budget of Table 5.4's DP-S /
# human ratio (69.39 / 82.55 of the initial = human cost). lambda starts at 0 and follows
# the budget (dual ascent + proportional term, the hook's defaults; docs/budget.md).
_base_ = ['./fcn_hr18tiny_1xb8-600it_synthvoc-96x96.py', '../_base_/dynopool_hrnet.py']
custom_imports = dict(imports=['mmseg_dynopool'], allow_failed_imports=False)
model = dict(backbone={{_base_.dynopool_backbone}})
optim_wrapper = dict(paramwise_cfg={{_base_.dynopool_paramwise_cfg}})
custom_hooks = [dict(type='DynOPoolGMACsHook', target_ratio=69.39 / 82.55)]
