# DynOPool-S (Table 5.4) with its cost set by construction: a GMACs budget of the thesis'
# DP-S / human ratio, 69.39 / 82.55 GMACs at 480x480, instead of a guessed lambda. The
# hook's budget mode adapts lambda by dual ascent (lambda_lr: dual step per iteration and
# unit of relative excess, docs/budget.md) and projects the ratios onto the budget at the
# end of training, so the trained model costs at most 69.39 GMACs per 480x480 image.
_base_ = './fcn_dynopool-b-hr48_4xb4-40k_voc12aug-480x480.py'
custom_hooks = [dict(type='DynOPoolGMACsHook', target_ratio=69.39 / 82.55, lambda_lr=0.02)]
