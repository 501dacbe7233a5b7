# DropClass on Cityscapes: the baseline next to this file with the FCN head replaced by
# DropClassFCNHead (authors' defaults: class drawn uniformly from all 19 classes, drop
# probability = training progress iter/max_iters, losses (1-t) CE + t CE_drop +
# 10 suppression). Inference runs the drop branch with nothing dropped (+1 conv1x1
# 270->270 + BN + ReLU at 1/4 resolution).
_base_ = './fcn_hr18s_4xb12-59k_cityscapes-512x1024.py'
model = dict(decode_head=dict(type='DropClassFCNHead'))
