# mmpretrain's CIFAR-100 pipeline (random crop with 4-pixel padding + flip) with one
# batch of 128 per GPU.
_base_ = 'mmpretrain::_base_/datasets/cifar100_bs16.py'

train_dataloader = dict(batch_size=128)
val_dataloader = dict(batch_size=128)
test_dataloader = dict(batch_size=128)
