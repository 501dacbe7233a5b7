# Toy experiment of thesis chapter 3 with DynOPool VGG-16-BN.
# CIFAR-large (section 3.2, Fig. 3.1c): every CIFAR-100 image downsampled to 16x16 and
# enlarged (bilinear) to 64x64 (the usual crop/flip augmentation is applied first).
# The thesis' Fig. 3.1 shows how the learned feature-map shapes follow the data.
# lambda is NOT calibrated (the thesis does not report it); it follows the DP-S rule
# of the CIFAR-100 configs: 0.1 / GMACs at initialisation = 0.1 / 1.25 -> 0.08.
_base_ = './vgg16bn-1fc_1xb128_cifar100-large.py'

custom_imports = dict(imports=['mmseg_dynopool'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='DynOPoolVGG',
        depth=16,
        norm_cfg=dict(type='BN'),
        stem='cifar',
        dynopool_cfg=dict(min_size=1.5, aggregation='max', max_ratio=4.0)))

# alpha learns 10x slower than the weights, without weight decay (section 5.2.2;
# the factor is our choice).
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'.alpha': dict(lr_mult=0.1, decay_mult=0.0)}))
# 250 epochs for DynOPool models on CIFAR-100 (section 5.2.2).
param_scheduler = dict(milestones=[75, 150, 200])
train_cfg = dict(max_epochs=250)
custom_hooks = [dict(type='DynOPoolGMACsHook', loss_weight=0.08)]
