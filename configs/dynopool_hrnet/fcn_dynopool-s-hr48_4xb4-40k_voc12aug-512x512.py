# DynOPool-S (GMACs near the human model's). How lambda was chosen: the thesis does not
# report it. L_GMACs is in GMACs (~82-94 for this model), the task cross-entropy is ~0.2-1
# during training; lambda = 1e-3 makes the GMACs term ~0.1, a tenth of the task loss at
# the start, so it restrains growth without dominating. Not yet calibrated on real VOC:
# raise lambda if the logged 'gmacs' drifts above the baseline's, lower it if mIoU drops.
_base_ = './fcn_dynopool-b-hr48_4xb4-40k_voc12aug-512x512.py'
custom_hooks = [dict(type='DynOPoolGMACsHook', loss_weight=1e-3)]
