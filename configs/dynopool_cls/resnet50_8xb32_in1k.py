# Human-designed ResNet-50 on ImageNet (Table 5.1: 4.11 GMACs), the
# baseline of the DynOPool configs next to it.
_base_ = 'mmpretrain::resnet/resnet50_8xb32_in1k.py'

custom_imports = dict(imports=['mmseg_dynopool'], allow_failed_imports=False)
# Exact --resume (docs/reliability.md): RNGStateHook puts the random generator
# states into every checkpoint, and a fixed seed gives the resumed run the same
# data order.
default_hooks = dict(rng_state=dict(type='RNGStateHook'))
randomness = dict(seed=0)
