# Toy experiment of thesis chapter 3 with the human-designed VGG-16-BN on
# CIFAR-tile (section 3.2, Fig. 3.1b)
# (pipelines in _base_/toy_pipelines.py).
# 64x64 inputs: feature maps [32,32] [16,16] [8,8] [4,4], 1.25 GMACs.
_base_ = ['./vgg16bn-1fc_1xb128_cifar100.py', './_base_/toy_pipelines.py']
custom_imports = dict(imports=['mmseg_dynopool'], allow_failed_imports=False)
train_dataloader = dict(dataset=dict(pipeline={{_base_.tile_train_pipeline}}))
val_dataloader = dict(dataset=dict(pipeline={{_base_.tile_test_pipeline}}))
test_dataloader = dict(dataset=dict(pipeline={{_base_.tile_test_pipeline}}))
