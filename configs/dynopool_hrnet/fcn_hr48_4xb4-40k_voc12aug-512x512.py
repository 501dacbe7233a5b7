# Human-designed baseline: mmseg's FCN-HRNetV2-W48 recipe unchanged, except that the
# ImageNet-pretrained weights are not fetched (offline); set model.pretrained to a local
# copy of hrnetv2_w48 to start from them (see README).
_base_ = 'mmseg::hrnet/fcn_hr48_4xb4-40k_voc12aug-512x512.py'
model = dict(pretrained=None)
# A fixed seed makes --resume continue the same data order (bitwise-exact resume).
randomness = dict(seed=0)
# Exact --resume (docs/reliability.md): RNGStateHook puts the random generator
# states into every checkpoint.
custom_imports = dict(imports=['mmseg_dynopool'], allow_failed_imports=False)
default_hooks = dict(rng_state=dict(type='RNGStateHook'))
