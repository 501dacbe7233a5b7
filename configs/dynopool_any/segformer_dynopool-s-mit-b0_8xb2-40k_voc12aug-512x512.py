# DynOPool-S SegFormer (MiT-B0) on PascalVOC-aug, 512x512, 40k: the MixVisionTransformer
# converted by DynOPoolBackbone (docs/converter.md, "Transformers"). Converted: the
# overlapping patch embeddings of stages 2-4 (3x3 conv, stride 2, padding 1): DynOPool +
# stride-1 conv, placement 'before' - the human sizes and GMACs at initialisation.
# Left alone: stage 1's 7x7 stride-4 patch embedding (DynOPool's round(H / 4) differs
# from its ceil(H / 4) when H % 4 == 1; exact_sizes=False would convert it) and every
# attention's spatial-reduction conv (kernel = stride: its stride-1 copy changes the
# size). GMACs budget 0.84 x the initial cost: at 512x512 stages 2-4 (with their head
# projections) are ~29% of the 7.96 GMACs, so the budget takes about half of theirs.
_base_ = [
    './segformer_mit-b0_8xb2-40k_voc12aug-512x512.py',
    '../_base_/dynopool_any.py'
]
model = dict(backbone=dict(_delete_=True, type='DynOPoolBackbone',
                           backbone={{_base_.model.backbone}}, placement='before',
                           pool_cfg={{_base_.dynopool_pool_cfg}}))
optim_wrapper = dict(constructor='DynOPoolOptimWrapperConstructor', paramwise_cfg=dict(custom_keys={
    'pos_block': dict(decay_mult=0.),
    'norm': dict(decay_mult=0.),
    'head': dict(lr_mult=10.),
    '.alpha': dict(lr_mult=0.1, decay_mult=0.0)
}))
custom_hooks = {{_base_.dynopool_s_hooks}}
