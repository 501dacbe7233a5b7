# Human-designed VGG-16-BN on ImageNet (Table 5.1: 15.39 GMACs), the
# baseline of the DynOPool configs next to it.
_base_ = [
    './_base_/models/vgg16bn_1fc.py',
    'mmpretrain::_base_/datasets/imagenet_bs32_pil_resize.py',
    'mmpretrain::_base_/schedules/imagenet_bs256.py',
    'mmpretrain::_base_/default_runtime.py',
]

custom_imports = dict(imports=['mmseg_dynopool'], allow_failed_imports=False)
# Exact --resume (docs/reliability.md): RNGStateHook puts the random generator
# states into every checkpoint, and a fixed seed gives the resumed run the same
# data order.
default_hooks = dict(rng_state=dict(type='RNGStateHook'))
randomness = dict(seed=0)
