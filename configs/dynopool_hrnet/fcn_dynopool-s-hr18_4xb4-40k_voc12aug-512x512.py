# DynOPool-S on HRNet-W18: the thesis reports no W18 model; the budget is Table 5.4's
# W48 DP-S / human ratio, 69.39 / 82.55, applied to this model's initial cost.
_base_ = './fcn_dynopool-b-hr18_4xb4-40k_voc12aug-512x512.py'
custom_hooks = [dict(type='DynOPoolGMACsHook', target_ratio=69.39 / 82.55, lambda_lr=0.02)]
