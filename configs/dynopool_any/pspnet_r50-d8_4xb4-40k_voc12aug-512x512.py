# mmseg's own pspnet R50-D8 PascalVOC-aug recipe (40k, 512x512), offline: no
# ImageNet-pretrained backbone download (set model.pretrained to a local copy of
# resnet50_v1c to start from it; the DynOPool variant loads it too).
_base_ = ['mmseg::pspnet/pspnet_r50-d8_4xb4-40k_voc12aug-512x512.py']
model = dict(pretrained=None)
# Exact --resume (docs/reliability.md): RNGStateHook puts the random generator
# states into every checkpoint, and a fixed seed gives the resumed run the same
# data order.
custom_imports = dict(imports=['mmseg_dynopool'], allow_failed_imports=False)
default_hooks = dict(rng_state=dict(type='RNGStateHook'))
randomness = dict(seed=0)
