# DropClass on the built-in synthetic PascalVOC-format data: the tiny CPU baseline
# ../synthetic/fcn_hr18tiny_1xb8-600it_synthvoc-96x96.py with DropClassFCNHead
# (linear drop schedule over its 600 iterations). Used by tests/test_dropclass/ and
# tests/integration/test_dropclass_training.py.
_base_ = '../synthetic/fcn_hr18tiny_1xb8-600it_synthvoc-96x96.py'
custom_imports = dict(imports=['mmseg_dynopool'], allow_failed_imports=False)
model = dict(decode_head=dict(type='DropClassFCNHead'))
