# Human-designed ResNet-50 on CIFAR-100 (Table 5.1: 1.31 GMACs), the
# baseline of the DynOPool configs next to it.
_base_ = [
    'mmpretrain::_base_/models/resnet50_cifar.py',
    './_base_/datasets/cifar100_bs128.py',
    './_base_/schedules/cifar100_bs128_200e.py',
    'mmpretrain::_base_/default_runtime.py',
]

custom_imports = dict(imports=['mmseg_dynopool'], allow_failed_imports=False)

model = dict(head=dict(num_classes=100, topk=(1, )))
# Exact --resume (docs/reliability.md): RNGStateHook puts the random generator
# states into every checkpoint, and a fixed seed gives the resumed run the same
# data order.
default_hooks = dict(rng_state=dict(type='RNGStateHook'))
randomness = dict(seed=0)
