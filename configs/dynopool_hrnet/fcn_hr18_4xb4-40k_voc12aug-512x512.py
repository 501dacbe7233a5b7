# Human-designed FCN-HRNetV2-W18 baseline (mmseg recipe, no download of pretrained weights).
_base_ = 'mmseg::hrnet/fcn_hr18_4xb4-40k_voc12aug-512x512.py'
model = dict(pretrained=None)
# A fixed seed makes --resume continue the same data order (bitwise-exact resume).
randomness = dict(seed=0)
# Exact --resume (docs/reliability.md): RNGStateHook puts the random generator
# states into every checkpoint.
custom_imports = dict(imports=['mmseg_dynopool'], allow_failed_imports=False)
default_hooks = dict(rng_state=dict(type='RNGStateHook'))
