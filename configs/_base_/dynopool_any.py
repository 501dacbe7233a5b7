# Pieces that turn an mmseg config into a DynOPool one with DynOPoolBackbone (the
# converter, docs/converter.md). Use as a second base next to the human config:
#   _base_ = ['./deeplabv3plus_r50-d8_....py', '../_base_/dynopool_any.py']
#   model = dict(backbone=dict(_delete_=True, type='DynOPoolBackbone',
#                              backbone={{_base_.model.backbone}},
#                              pool_cfg={{_base_.dynopool_pool_cfg}}))
#   optim_wrapper = dict(constructor='DynOPoolOptimWrapperConstructor', paramwise_cfg={{_base_.dynopool_paramwise_cfg}})
#   custom_hooks = {{_base_.dynopool_s_hooks}}
# (mmengine forbids two bases defining the same top-level key, hence the indirection.)
# custom_imports comes from the human configs of configs/dynopool_any/ (they use
# RNGStateHook); next to another config, also set
#   custom_imports = dict(imports=['mmseg_dynopool'], allow_failed_imports=False)
# Every DynOPool starts at 1 / stride of the op it replaces (the human model); the
# layer's own defaults otherwise (docs/dynopool.md).
dynopool_pool_cfg = dict(type='DynOPool', min_size=1.5, aggregation='max', max_ratio=4.0)
# alpha: 0.1x the base learning rate and no weight decay (as the HRNet configs).
dynopool_paramwise_cfg = dict(custom_keys={'.alpha': dict(lr_mult=0.1, decay_mult=0.0)})
# DynOPool-S: a GMACs budget of 0.84 x the initial (= human, placement='before') cost,
# the thesis' DP-S / human ratio of Table 5.4 (69.39 / 82.55), enforced by the hook's
# budget mode (dual ascent on lambda, projection onto the budget at the end).
dynopool_s_hooks = [dict(type='DynOPoolGMACsHook', target_ratio=0.84, lambda_lr=0.02)]
