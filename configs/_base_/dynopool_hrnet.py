# Pieces that turn an mmseg HRNet config into a DynOPool one (section 5.6). Use as a
# second base next to an HRNet config and pull the pieces in:
#   _base_ = ['./fcn_hr48_....py', '../_base_/dynopool_hrnet.py']
#   model = dict(backbone={{_base_.dynopool_backbone}})
#   optim_wrapper = dict(constructor='DynOPoolOptimWrapperConstructor', paramwise_cfg={{_base_.dynopool_paramwise_cfg}})
#   custom_imports = dict(imports=['mmseg_dynopool'], allow_failed_imports=False)
#   custom_hooks = [dict(type='DynOPoolGMACsHook', loss_weight=LAMBDA)]
# (mmengine forbids two bases defining the same top-level key, hence the indirection.)
dynopool_backbone = dict(
    type='DynOPoolHRNet',
    init_ratios=0.5,  # = the human-designed HRNet at initialisation
    pool_cfg=dict(min_size=1.5, aggregation='max', max_ratio=4.0))
# alpha: 0.1x the base learning rate and no weight decay. The thesis lowers alpha's lr
# "since the scale parameter affects the entire model even with its slight changes" but
# gives no value; 0.1 is our choice.
dynopool_paramwise_cfg = dict(custom_keys={'.alpha': dict(lr_mult=0.1, decay_mult=0.0)})
