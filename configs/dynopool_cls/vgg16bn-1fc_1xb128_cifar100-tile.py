# Toy experiment of thesis chapter 3 with the human-designed VGG-16-BN.
# CIFAR-tile (section 3.2, Fig. 3.1b): every CIFAR-100 image downsampled to 16x16 and
# tiled 4x4 into a 64x64 image (the usual crop/flip augmentation is applied first).
# 64x64 inputs: feature maps [32,32] [16,16] [8,8] [4,4], 1.25 GMACs.
_base_ = './vgg16bn-1fc_1xb128_cifar100.py'

custom_imports = dict(imports=['mmseg_dynopool'], allow_failed_imports=False)

train_pipeline = [
    dict(type='RandomCrop', crop_size=32, padding=4),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='CIFARTile', size=16, grid=4),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='CIFARTile', size=16, grid=4),
    dict(type='PackInputs'),
]

train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
