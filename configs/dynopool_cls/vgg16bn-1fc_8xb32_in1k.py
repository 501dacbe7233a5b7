# Human-designed VGG-16-BN on ImageNet (Table 5.1: 15.39 GMACs), the
# baseline of the DynOPool configs next to it.
_base_ = [
    './_base_/models/vgg16bn_1fc.py',
    'mmpretrain::_base_/datasets/imagenet_bs32_pil_resize.py',
    'mmpretrain::_base_/schedules/imagenet_bs256.py',
    'mmpretrain::_base_/default_runtime.py',
]

custom_imports = dict(imports=['mmseg_dynopool'], allow_failed_imports=False)
