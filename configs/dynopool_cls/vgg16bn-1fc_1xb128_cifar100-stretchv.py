# Toy experiment of thesis chapter 3 with the human-designed VGG-16-BN.
# CIFAR-stretch-V (section 3.1, Fig. 3.1a): every CIFAR-100 image stretched x2
# vertically and cropped to 32x32 at a random height (centre crop for testing).
# 32x32 inputs: feature maps [16,16] [8,8] [4,4] [2,2], 0.314 GMACs.
_base_ = './vgg16bn-1fc_1xb128_cifar100.py'

custom_imports = dict(imports=['mmseg_dynopool'], allow_failed_imports=False)

train_pipeline = [
    dict(type='CIFARStretchV', scale=2.0, crop_size=32, random_crop=True),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='CIFARStretchV', scale=2.0, crop_size=32, random_crop=False),
    dict(type='PackInputs'),
]

train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
