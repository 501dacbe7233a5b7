# DiffStride HRNet-W48 FCN on PascalVOC-aug (40k, 480x480) held to DP-S's cost:
# fcn_diffstride-hr48_...'s model with a GMACs budget of 69.39 GMACs per image at
# 480x480 (Table 5.4's DP-S; the human model costs 82.55), in absolute GMACs because
# DiffStride's layers start larger than the strided ops they replace.
_base_ = ['./fcn_diffstride-hr48_4xb4-40k_voc12aug-480x480.py']
# lock_after=0.9: this layer's sizes move in coarse steps (DiffStride: 2 rows at a
# time; Shape Adaptor: one common scale, floored), so the final projection onto the
# budget can change them a lot; the last 10 % of training adapts the weights to them.
custom_hooks = [dict(type='DynOPoolGMACsHook', target_gmacs=69.39,
                     lock_after=0.9)]
