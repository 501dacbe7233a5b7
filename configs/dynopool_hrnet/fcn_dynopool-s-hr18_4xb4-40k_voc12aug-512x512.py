# DynOPool-S on HRNet-W18. Same reasoning as the W48 config, scaled to this model's cost
# (~23 GMACs at 512x512 instead of ~94): lambda = 4e-3 keeps the GMACs term ~0.1.
_base_ = './fcn_dynopool-b-hr18_4xb4-40k_voc12aug-512x512.py'
custom_hooks = [dict(type='DynOPoolGMACsHook', loss_weight=4e-3)]
