# The CIFAR MobileNetV2 of Table 5.1 (stride 1 in the stem and in stage 2; needs
# custom_imports=dict(imports=['mmseg_dynopool'])): [16,16] [8,8] [4,4] at 32x32.
model = dict(
    type='ImageClassifier',
    backbone=dict(type='CIFARMobileNetV2', widen_factor=1.0),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=100,
        in_channels=1280,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
    ))
