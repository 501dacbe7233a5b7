# Plain baseline for DropClass on PascalVOC 2012 aug: mmseg's FCN-HRNetV2-W48 recipe
# (fcn_hr48_4xb4-40k_voc12aug-512x512) unchanged, except that the ImageNet-pretrained
# weights are not fetched (offline): set model.pretrained to a local copy of
# hrnetv2_w48 to start from them.
_base_ = 'mmseg::hrnet/fcn_hr48_4xb4-40k_voc12aug-512x512.py'
custom_imports = dict(imports=['mmseg_dynopool'], allow_failed_imports=False)
model = dict(pretrained=None)
