# Pieces shared by the DynOPool classification configs, as variables (mmengine forbids
# two bases defining the same top-level key). Use next to a human config:
#   _base_ = ['./resnet50_8xb32_in1k.py', './_base_/dynopool.py']
#   model = dict(backbone={{_base_.dynopool_resnet50_imagenet}})
#   optim_wrapper = dict(constructor='DynOPoolOptimWrapperConstructor', paramwise_cfg={{_base_.dynopool_paramwise_cfg}})

# alpha (the DynOPool scale parameter, Eq. 4.6) learns 10x slower than the weights and
# without weight decay: the thesis lowers its learning rate "since the scale parameter
# affects the entire model even with its slight changes" (section 5.2.2) without giving
# the factor; 0.1 is our choice.
dynopool_paramwise_cfg = dict(custom_keys={'.alpha': dict(lr_mult=0.1, decay_mult=0.0)})

dynopool_pool_cfg = dict(min_size=1.5, aggregation='max', max_ratio=4.0)

# The DynOPool backbones replacing the human ones (`_delete_` drops the human backbone's
# keys); `stem` picks the ImageNet-style (224) or CIFAR-style (32) layout.
dynopool_vgg16bn_imagenet = dict(_delete_=True, type='DynOPoolVGG', depth=16,
                                 norm_cfg=dict(type='BN'), stem='imagenet',
                                 pool_cfg=dynopool_pool_cfg)
dynopool_vgg16bn_cifar = dict(dynopool_vgg16bn_imagenet, stem='cifar')
dynopool_mobilenet_v2_imagenet = dict(_delete_=True, type='DynOPoolMobileNetV2',
                                      widen_factor=1.0, stem='imagenet',
                                      pool_cfg=dynopool_pool_cfg)
dynopool_mobilenet_v2_cifar = dict(dynopool_mobilenet_v2_imagenet, stem='cifar')
dynopool_resnet50_imagenet = dict(_delete_=True, type='DynOPoolResNet', depth=50,
                                  stem='imagenet', pool_cfg=dynopool_pool_cfg)
dynopool_resnet50_cifar = dict(dynopool_resnet50_imagenet, stem='cifar')
dynopool_efficientnet_b0_imagenet = dict(_delete_=True, type='DynOPoolEfficientNet',
                                         arch='b0', stem='imagenet',
                                         pool_cfg=dynopool_pool_cfg)

# ResNet-50 on CIFAR-100 and Aircraft did not grow even with lambda = 0, so for DP-B the
# thesis raises the initial ratio of the first DynOPool (section 5.2.2) without giving
# the value; 1.0 (the first pool starts at its input size) is our choice.
dynopool_resnet50_cifar_dpb = dict(dynopool_resnet50_cifar, init_ratios=[1.0, 0.5, 0.5])
dynopool_resnet50_imagenet_dpb = dict(dynopool_resnet50_imagenet,
                                      init_ratios=[1.0, 0.5, 0.5, 0.5])
