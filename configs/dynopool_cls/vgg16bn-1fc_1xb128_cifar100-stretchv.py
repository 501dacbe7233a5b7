# Toy experiment of thesis chapter 3 with the human-designed VGG-16-BN on
# CIFAR-stretch-V (section 3.1, Fig. 3.1a)
# (pipelines in _base_/toy_pipelines.py).
# 32x32 inputs: feature maps [16,16] [8,8] [4,4] [2,2], 0.314 GMACs.
_base_ = ['./vgg16bn-1fc_1xb128_cifar100.py', './_base_/toy_pipelines.py']
custom_imports = dict(imports=['mmseg_dynopool'], allow_failed_imports=False)
train_dataloader = dict(dataset=dict(pipeline={{_base_.stretchv_train_pipeline}}))
val_dataloader = dict(dataset=dict(pipeline={{_base_.stretchv_test_pipeline}}))
test_dataloader = dict(dataset=dict(pipeline={{_base_.stretchv_test_pipeline}}))
