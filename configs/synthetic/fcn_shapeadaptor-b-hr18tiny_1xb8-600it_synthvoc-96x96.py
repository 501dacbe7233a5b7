# Shape Adaptor counterpart of the main job's DP-B (docs/baselines.md, side-by-side
# table): the tiny HRNet's resizing ops (the stem's two strided convs, each new stream's
# strided conv) become ShapeAdaptor layers through the converter, one per resolution
# level, unconstrained (lambda = 0; the hook only logs the GMACs).
# Branches r1 = 0.25 / r2 = 1, starting at the human ratio 0.5: the reasons are in
# configs/_base_/resizing_baselines.py.
_base_ = ['./fcn_hr18tiny_1xb8-600it_synthvoc-96x96.py', '../_base_/resizing_baselines.py']
custom_imports = dict(imports=['mmseg_dynopool'], allow_failed_imports=False)
model = dict(backbone=dict(_delete_=True, type='DynOPoolBackbone',
                           backbone={{_base_.model.backbone}}, placement='before',
                           exact_sizes=False,
                           pool_cfg={{_base_.shape_adaptor_hrnet_pool_cfg}}))
optim_wrapper = dict(constructor='DynOPoolOptimWrapperConstructor', paramwise_cfg={{_base_.shape_adaptor_paramwise_cfg}})
custom_hooks = [dict(type='DynOPoolGMACsHook', loss_weight=0.0)]
