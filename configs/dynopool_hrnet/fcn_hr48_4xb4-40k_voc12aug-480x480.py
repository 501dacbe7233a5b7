# Human-designed baseline at the thesis' input size: 480x480 crops give the 240x240 stem
# map and the 82.55 GMACs of Table 5.4.
_base_ = './fcn_hr48_4xb4-40k_voc12aug-512x512.py'
crop_size = (480, 480)
data_preprocessor = dict(size=crop_size)
model = dict(data_preprocessor=data_preprocessor)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations'),
    dict(type='RandomResize', scale=(2048, 480), ratio_range=(0.5, 2.0),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='Pad', size=crop_size),
    dict(type='PackSegInputs')
]
train_dataloader = dict(dataset=dict(datasets=[
    dict(type='PascalVOCDataset', data_root='data/VOCdevkit/VOC2012',
         data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClass'),
         ann_file='ImageSets/Segmentation/train.txt', pipeline=train_pipeline),
    dict(type='PascalVOCDataset', data_root='data/VOCdevkit/VOC2012',
         data_prefix=dict(img_path='JPEGImages', seg_map_path='SegmentationClassAug'),
         ann_file='ImageSets/Segmentation/aug.txt', pipeline=train_pipeline),
]))
