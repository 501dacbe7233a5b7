# DiffStride counterpart of the main job's DP-B (docs/baselines.md, side-by-side table):
# the tiny HRNet's resizing ops become DiffStride layers through the converter, one per
# resolution level, starting at the replaced op's stride 2 (so with the default
# smoothness R = 4 the maps start larger than the human ones: 96 -> 55, not 48),
# unconstrained (lambda = 0; the hook only logs the GMACs).
_base_ = ['./fcn_hr18tiny_1xb8-600it_synthvoc-96x96.py', '../_base_/resizing_baselines.py']
custom_imports = dict(imports=['mmseg_dynopool'], allow_failed_imports=False)
model = dict(backbone=dict(_delete_=True, type='DynOPoolBackbone',
                           backbone={{_base_.model.backbone}}, placement='before',
                           exact_sizes=False, pool_cfg={{_base_.diffstride_pool_cfg}}))
optim_wrapper = dict(constructor='DynOPoolOptimWrapperConstructor', paramwise_cfg={{_base_.diffstride_paramwise_cfg}})
custom_hooks = [dict(type='DynOPoolGMACsHook', loss_weight=0.0)]
