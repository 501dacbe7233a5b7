# Human-designed baseline for the main job: a narrow, shallow HRNet (the HRNet-W18 layout
# with one block per branch and half the width) on the synthetic PascalVOC-format data,
# sized to train in a few minutes on 2 CPU cores.
_base_ = [
    'mmseg::_base_/models/fcn_hr18.py', '../_base_/datasets/synthetic_voc.py',
    'mmseg::_base_/default_runtime.py'
]
norm_cfg = dict(type='BN', requires_grad=True)
crop_size = (96, 96)
model = dict(
    pretrained=None,
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        norm_cfg=norm_cfg,
        extra=dict(
            stage1=dict(num_blocks=(1, ), num_channels=(32, )),
            stage2=dict(num_blocks=(1, 1), num_channels=(12, 24)),
            stage3=dict(num_modules=1, num_blocks=(1, 1, 1), num_channels=(12, 24, 48)),
            stage4=dict(num_modules=1, num_blocks=(1, 1, 1, 1),
                        num_channels=(12, 24, 48, 96)))),
    decode_head=dict(
        in_channels=[12, 24, 48, 96], channels=sum([12, 24, 48, 96]),
        num_classes=21, norm_cfg=norm_cfg))
max_iters = 600
optimizer = dict(type='SGD', lr=0.05, momentum=0.9, weight_decay=0.0005)
optim_wrapper = dict(type='OptimWrapper', optimizer=optimizer, clip_grad=None)
param_scheduler = [
    dict(type='PolyLR', eta_min=1e-4, power=0.9, begin=0, end=max_iters, by_epoch=False)
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters // 2,
                    max_keep_ckpts=2),
    visualization=dict(type='SegVisualizationHook', draw=False),
    # Random generator states in the checkpoints: exact --resume with dropout / random
    # augmentation (docs/reliability.md). default_hooks merge, so every child keeps it.
    rng_state=dict(type='RNGStateHook'))
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'))
randomness = dict(seed=0)
