# DiffStride under the main job's DP-S budget (docs/baselines.md, side-by-side table):
# fcn_diffstride-b-...'s model held to the same absolute cost as DP-S, Table 5.4's
# DP-S / human ratio (69.39 / 82.55) times the human model's 0.09178 GMACs at 96x96
# (a test recounts it). DiffStride starts above the budget; lambda pushes the strides up.
_base_ = ['./fcn_diffstride-b-hr18tiny_1xb8-600it_synthvoc-96x96.py']
custom_hooks = [dict(type='DynOPoolGMACsHook', target_gmacs=0.09178 * 69.39 / 82.55)]
