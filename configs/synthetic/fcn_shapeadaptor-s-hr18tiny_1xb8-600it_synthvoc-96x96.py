# Shape Adaptor under the main job's DP-S budget (docs/baselines.md, side-by-side table):
# fcn_shapeadaptor-b-...'s model held to the same absolute cost as DP-S, Table 5.4's
# DP-S / human ratio (69.39 / 82.55) times the human model's 0.09178 GMACs at 96x96
# (a test recounts it).
_base_ = ['./fcn_shapeadaptor-b-hr18tiny_1xb8-600it_synthvoc-96x96.py']
# lock_after=0.9: this layer's sizes move in coarse steps (DiffStride: 2 rows at a
# time; Shape Adaptor: one common scale, floored), so the final projection onto the
# budget can change them a lot; the last 10 % of training adapts the weights to them.
custom_hooks = [dict(type='DynOPoolGMACsHook', target_gmacs=0.09178 * 69.39 / 82.55,
                     lock_after=0.9)]
