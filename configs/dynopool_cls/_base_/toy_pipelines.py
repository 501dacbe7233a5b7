# Data pipelines of the chapter 3 toy datasets (CIFAR-100 based), as variables for
#   _base_ = ['./<model config>.py', './_base_/toy_pipelines.py']
#   train_dataloader = dict(dataset=dict(pipeline={{_base_.tile_train_pipeline}}))
# (mmengine forbids two bases defining the same top-level key, hence variables).

# CIFAR-stretch-V (section 3.1, Fig. 3.1a): stretched x2 vertically, cropped to 32x32 at a
# random height (centre crop for testing). 32x32 inputs.
stretchv_train_pipeline = [
    dict(type='CIFARStretchV', scale=2.0, crop_size=32, random_crop=True),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
stretchv_test_pipeline = [
    dict(type='CIFARStretchV', scale=2.0, crop_size=32, random_crop=False),
    dict(type='PackInputs'),
]
# CIFAR-tile (section 3.2, Fig. 3.1b): downsampled to 16x16 and tiled 4x4 into 64x64
# (after the usual crop/flip augmentation).
tile_train_pipeline = [
    dict(type='RandomCrop', crop_size=32, padding=4),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='CIFARTile', size=16, grid=4),
    dict(type='PackInputs'),
]
tile_test_pipeline = [dict(type='CIFARTile', size=16, grid=4), dict(type='PackInputs')]
# CIFAR-large (section 3.2, Fig. 3.1c): downsampled to 16x16 and enlarged (bilinear) to
# 64x64 (after the usual crop/flip augmentation).
large_train_pipeline = [
    dict(type='RandomCrop', crop_size=32, padding=4),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='CIFARLarge', size=16, out_size=64),
    dict(type='PackInputs'),
]
large_test_pipeline = [
    dict(type='CIFARLarge', size=16, out_size=64),
    dict(type='PackInputs'),
]
