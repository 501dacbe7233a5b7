# DropClass on PascalVOC 2012 aug: the mmseg FCN-HRNetV2-W48 baseline next to this file
# with DropClassFCNHead (authors' defaults; 21 classes incl. background, C = 720).
_base_ = './fcn_hr48_4xb4-40k_voc12aug-512x512.py'
model = dict(decode_head=dict(type='DropClassFCNHead'))
