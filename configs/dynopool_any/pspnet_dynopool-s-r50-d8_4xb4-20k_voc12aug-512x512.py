# DynOPool-S pspnet R50-D8 on PascalVOC-aug (20k, 512x512): mmseg's recipe with the
# ResNetV1c backbone converted by DynOPoolBackbone (docs/converter.md). Every strided op
# - the stem's stride-2 conv, its max-pooling, layer2's strided conv and shortcut (one
# shared pool) - becomes DynOPool + stride-1 op, placement 'before' (Eq. 5.3): at
# initialisation the human model's feature-map sizes and GMACs. Layers 3-4 are dilated
# (D8): no strided op to convert. GMACs budget 0.84 x the initial cost.
_base_ = [
    './pspnet_r50-d8_4xb4-20k_voc12aug-512x512.py',
    '../_base_/dynopool_any.py'
]
model = dict(backbone=dict(_delete_=True, type='DynOPoolBackbone',
                           backbone={{_base_.model.backbone}}, placement='before',
                           pool_cfg={{_base_.dynopool_pool_cfg}}))
optim_wrapper = dict(constructor='DynOPoolOptimWrapperConstructor', paramwise_cfg={{_base_.dynopool_paramwise_cfg}})
custom_hooks = {{_base_.dynopool_s_hooks}}
