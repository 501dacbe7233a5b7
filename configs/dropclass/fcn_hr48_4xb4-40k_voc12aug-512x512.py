# Plain baseline for DropClass on PascalVOC 2012 aug: mmseg's FCN-HRNetV2-W48 recipe
# (fcn_hr48_4xb4-40k_voc12aug-512x512) unchanged, except that the ImageNet-pretrained
# weights are not fetched (offline): set model.pretrained to a local copy of
# hrnetv2_w48 to start from them.
_base_ = 'mmseg::hrnet/fcn_hr48_4xb4-40k_voc12aug-512x512.py'
custom_imports = dict(imports=['mmseg_dynopool'], allow_failed_imports=False)
model = dict(pretrained=None)
# Exact --resume (docs/reliability.md): RNGStateHook puts the random generator
# states into every checkpoint, and a fixed seed gives the resumed run the same
# data order.
default_hooks = dict(rng_state=dict(type='RNGStateHook'))
randomness = dict(seed=0)
