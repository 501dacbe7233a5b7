# FGVC-Aircraft from scratch: SGD (lr 0.1 for a total batch of 128, momentum 0.9,
# weight decay 5e-4), cosine annealing, 200 epochs for the human models (section 5.2.2).
# The optimiser settings are our choice (the thesis uses Shape Adaptor's without
# restating them).
optim_wrapper = dict(
    optimizer=dict(type='SGD', lr=0.1, momentum=0.9, weight_decay=0.0005))
param_scheduler = dict(type='CosineAnnealingLR', by_epoch=True, T_max=200)
train_cfg = dict(by_epoch=True, max_epochs=200, val_interval=10)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=128)
