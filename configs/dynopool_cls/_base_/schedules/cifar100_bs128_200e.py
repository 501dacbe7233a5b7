# mmpretrain's CIFAR-100 recipe (configs/resnet/resnet50_8xb16_cifar100.py): SGD, lr 0.1,
# momentum 0.9, weight decay 5e-4, x0.2 at epochs 60/120/160, 200 epochs (the thesis'
# human models train 200 epochs on CIFAR-100; its other hyperparameters are Shape
# Adaptor's, which it does not restate).
_base_ = 'mmpretrain::_base_/schedules/cifar10_bs128.py'

optim_wrapper = dict(optimizer=dict(weight_decay=0.0005))
param_scheduler = dict(
    type='MultiStepLR', by_epoch=True, milestones=[60, 120, 160], gamma=0.2)
train_cfg = dict(by_epoch=True, max_epochs=200, val_interval=1)
