# VGG-16-BN as the thesis (and Shape Adaptor) use it: four max-poolings (the fifth is
# dropped), global average pooling and a single fully-connected layer (section 5.2.1).
# [112,112] [56,56] [28,28] [14,14] at 224x224, 15.37 GMACs (Table 5.1: 15.39).
model = dict(
    type='ImageClassifier',
    backbone=dict(
        type='VGG', depth=16, norm_cfg=dict(type='BN'), with_last_pool=False),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=512,
        loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
        topk=(1, 5),
    ))
