# Human-designed EfficientNet-B0 on ImageNet (Table 5.3: 0.42 GMACs), the
# baseline of the DynOPool configs next to it.
_base_ = 'mmpretrain::efficientnet/efficientnet-b0_8xb32_in1k.py'

custom_imports = dict(imports=['mmseg_dynopool'], allow_failed_imports=False)
