# SegFormer (MiT-B0) on PascalVOC-aug, 512x512, 40k iterations: mmseg's SegFormer recipe
# (model, AdamW, warm-up + poly schedule of segformer_mit-b0_8xb2-160k_ade20k) on mmseg's
# VOC-aug dataset config, 8 GPUs x 2 images (the 16 images per iteration of the VOC R50
# recipes). Offline: no pretrained MiT download (set model.backbone.init_cfg to a local
# mit_b0 checkpoint to start from it; the DynOPool variant loads it too).
_base_ = [
    'mmseg::_base_/models/segformer_mit-b0.py',
    'mmseg::_base_/datasets/pascal_voc12_aug.py', 'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_40k.py'
]
crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = dict(data_preprocessor=data_preprocessor, pretrained=None,
             decode_head=dict(num_classes=21))
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=0.00006, betas=(0.9, 0.999), weight_decay=0.01),
    paramwise_cfg=dict(custom_keys={
        'pos_block': dict(decay_mult=0.),
        'norm': dict(decay_mult=0.),
        'head': dict(lr_mult=10.)
    }))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=40000, by_epoch=False)
]
train_dataloader = dict(batch_size=2, num_workers=2)
val_dataloader = dict(batch_size=1, num_workers=4)
test_dataloader = val_dataloader
# Exact --resume (docs/reliability.md): RNGStateHook puts the random generator
# states into every checkpoint, and a fixed seed gives the resumed run the same
# data order.
custom_imports = dict(imports=['mmseg_dynopool'], allow_failed_imports=False)
default_hooks = dict(rng_state=dict(type='RNGStateHook'))
randomness = dict(seed=0)
