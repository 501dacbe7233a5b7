# FGVC-Aircraft (100 variants; 6,667 trainval / 3,333 test images) with mmpretrain's
# FGVCAircraft dataset. data_root is the extracted `fgvc-aircraft-2013b` folder (the one
# holding `data/images` and `data/images_variant_*.txt`). The images are trained at
# 224x224 like ImageNet (section 5.1: "the size of the images in Aircraft and ImageNet
# are large (224x224)"); the crops and flips are our choice, the thesis follows Shape
# Adaptor's augmentation without restating it.
dataset_type = 'FGVCAircraft'
data_preprocessor = dict(
    num_classes=100,
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True,
)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]

test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, edge='short'),
    dict(type='CenterCrop', crop_size=224),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=16,
    num_workers=4,
    dataset=dict(
        type=dataset_type,
        data_root='data/fgvc-aircraft-2013b',
        split='trainval',
        pipeline=train_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=True),
)

val_dataloader = dict(
    batch_size=16,
    num_workers=4,
    dataset=dict(
        type=dataset_type,
        data_root='data/fgvc-aircraft-2013b',
        split='test',
        pipeline=test_pipeline),
    sampler=dict(type='DefaultSampler', shuffle=False),
)
val_evaluator = dict(type='Accuracy', topk=(1, ))

test_dataloader = val_dataloader
test_evaluator = val_evaluator
