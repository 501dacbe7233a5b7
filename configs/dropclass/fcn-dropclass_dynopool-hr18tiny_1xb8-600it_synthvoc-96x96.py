# DynOPool HRNet + DropClass on the synthetic data: the tiny DynOPool model
# ../synthetic/fcn_dynopool-hr18tiny_1xb8-600it_synthvoc-96x96.py (GMACs hook and alpha
# paramwise_cfg included) with DropClassFCNHead. Used by tests/test_dropclass/ and
# tests/integration/test_dropclass_training.py.
_base_ = '../synthetic/fcn_dynopool-hr18tiny_1xb8-600it_synthvoc-96x96.py'
custom_imports = dict(imports=['mmseg_dynopool'], allow_failed_imports=False)
model = dict(decode_head=dict(type='DropClassFCNHead'))
