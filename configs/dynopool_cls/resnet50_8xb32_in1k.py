# Human-designed ResNet-50 on ImageNet (Table 5.1: 4.11 GMACs), the
# baseline of the DynOPool configs next to it.
_base_ = 'mmpretrain::resnet/resnet50_8xb32_in1k.py'

custom_imports = dict(imports=['mmseg_dynopool'], allow_failed_imports=False)
