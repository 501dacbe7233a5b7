# DynOPool-B VGG-16-BN on ImageNet (Table 5.1).
# DP-B is "learned mainly for accuracy" (section 5.3.1): lambda = 0, the GMACs hook only
# logs the estimate. Starts as the human model (same sizes and GMACs, 15.37).
_base_ = './vgg16bn-1fc_8xb32_in1k.py'

custom_imports = dict(imports=['mmseg_dynopool'], allow_failed_imports=False)

model = dict(
    backbone=dict(
        _delete_=True,
        type='DynOPoolVGG',
        depth=16,
        norm_cfg=dict(type='BN'),
        stem='imagenet',
        dynopool_cfg=dict(min_size=1.5, aggregation='max', max_ratio=4.0)))

# alpha (the DynOPool scale parameter, Eq. 4.6) learns 10x slower than the weights and
# without weight decay: the thesis lowers its learning rate "since the scale parameter
# affects the entire model even with its slight changes" (section 5.2.2) without giving
# the factor; 0.1 is our choice.
optim_wrapper = dict(
    paramwise_cfg=dict(custom_keys={'.alpha': dict(lr_mult=0.1, decay_mult=0.0)}))
custom_hooks = [dict(type='DynOPoolGMACsHook', loss_weight=0.0)]
