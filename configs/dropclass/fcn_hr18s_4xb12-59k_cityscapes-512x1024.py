# Plain baseline for DropClass on Cityscapes: FCN on HRNetV2-W18-Small (the authors'
# "HRNet-W18-small v2" layout, mmseg's fcn_hr18s) trained with the authors' recipe
# (Chu et al., NeurIPS 2021, HRNet code): 4 GPUs x 12 images, 512x1024 crops, random
# scale 0.5-2.1 and flip, SGD lr 0.004 / momentum 0.9 / wd 5e-4, poly 0.9 to zero,
# full 2048x1024 single-scale test. Only the head differs in the DropClass config.
#
# 968 epochs -> iterations: the authors' loop runs int(2975 / 12 / 4) = 61 iterations
# per epoch (2975 Cityscapes train images, 12 images on each of 4 GPUs, last partial
# batch dropped), and its poly schedule spans 968 * 61 = 59048 iterations. Hence
# max_iters = 59048 at a total batch of 48 (4 GPUs x batch_size=12).
#
# Differences from mmseg's fcn_hr18s cityscapes recipe besides lr/batch/schedule: no
# PhotoMetricDistortion and no cat_max_ratio crop constraint (the authors' loader only
# rescales, crops and flips), and the cross-entropy averages over non-ignored pixels
# like torch's (avg_non_ignore=True), as the authors' criterion does.
# model.pretrained=None because open-mmlab://msra/hrnetv2_w18_small cannot be fetched
# offline; the authors start from ImageNet weights, so point it at a local copy of
# hrnetv2_w18_small for a faithful run.
_base_ = 'mmseg::hrnet/fcn_hr18s_4xb2-80k_cityscapes-512x1024.py'
custom_imports = dict(imports=['mmseg_dynopool'], allow_failed_imports=False)

crop_size = (512, 1024)
max_iters = 59048  # 968 epochs x 61 iterations (see above)
model = dict(
    pretrained=None,
    decode_head=dict(
        loss_decode=dict(
            type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0,
            avg_non_ignore=True)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=(2048, 1024), ratio_range=(0.5, 2.1),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=1.0),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs')
]
train_dataloader = dict(batch_size=12, num_workers=4,
                        dataset=dict(pipeline=train_pipeline))

optimizer = dict(type='SGD', lr=0.004, momentum=0.9, weight_decay=0.0005)
optim_wrapper = dict(type='OptimWrapper', optimizer=optimizer, clip_grad=None)
param_scheduler = [
    dict(type='PolyLR', eta_min=0.0, power=0.9, begin=0, end=max_iters,
         by_epoch=False)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=6100)
# Exact --resume (docs/reliability.md): RNGStateHook puts the random generator states into
# every checkpoint, and a fixed seed gives the resumed run the same data order.
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=6100,
                    max_keep_ckpts=3, save_last=True),
    rng_state=dict(type='RNGStateHook'))
randomness = dict(seed=0)
