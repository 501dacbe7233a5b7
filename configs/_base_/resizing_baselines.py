# Shape Adaptor (Liu, Deng & Johns, ECCV 2020) and DiffStride (Riad et al., ICLR 2022)
# next to DynOPool (issue 13): the same converter (DynOPoolBackbone, docs/converter.md)
# replaces every resizing op of the human backbone, only pool_cfg's type differs. Use
# as a second base next to a human config:
#   _base_ = ['./resnet50_1xb128_cifar100.py', '../_base_/resizing_baselines.py']
#   model = dict(backbone=dict(_delete_=True, type='DynOPoolBackbone',
#                              backbone={{_base_.model.backbone}}, exact_sizes=False,
#                              pool_cfg={{_base_.shape_adaptor_pool_cfg}}))
#   optim_wrapper = dict(constructor='DynOPoolOptimWrapperConstructor', paramwise_cfg={{_base_.shape_adaptor_paramwise_cfg}})
# exact_sizes=False: at init these layers follow their own size rules (ShapeAdaptor
# floors H * 0.5, DiffStride keeps about H / 2 + 2R), not the strided op's, so the
# converter must not leave a level alone for that. Each layer starts at 1 / stride of the
# op it replaces (ShapeAdaptor: essentially its r1 = 0.5 max-pooling branch).
shape_adaptor_pool_cfg = dict(type='ShapeAdaptor')
# HRNet segmentation (no paper setting to follow): branches r1 = 0.25 (4x4 max pooling)
# and r2 = 1, starting at the human ratio 0.5 (weight 2/3). With the default r1 = 0.5 the
# layer could not go below the human sizes (so no budget under the human cost is
# reachable), and starting at r1 saturates the sigmoid (alpha's gradient ~1e-4 of the
# others'). Our choice, for equal terms with DynOPool and DiffStride, which also start
# at the human ratio and can move both ways.
shape_adaptor_hrnet_pool_cfg = dict(type='ShapeAdaptor', r1=0.25, r2=1.0)
diffstride_pool_cfg = dict(type='DiffStride')
# The layers' own parameters (ShapeAdaptor's alpha, DiffStride's stride): 0.1x the base
# learning rate and no weight decay, as DynOPool's alpha (our choice, for equal terms).
shape_adaptor_paramwise_cfg = dict(
    custom_keys={'.alpha': dict(lr_mult=0.1, decay_mult=0.0)})
diffstride_paramwise_cfg = dict(
    custom_keys={'.stride': dict(lr_mult=0.1, decay_mult=0.0)})
