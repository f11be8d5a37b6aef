# DINO 4-scale (RECIPES B) on a RoPE-Swin backbone: stages 1-3 (strides 8/16/32) into a GN ChannelMapper whose
# 4th level is a 3x3 stride-2 conv. Same head and parity fixes as the ViT model. Windows as detectron2's Swin:
# padded tokens attend as keys and shifted windows always roll (window_padding='zero'; 'mask' hides them).
_base_ = ['./dino-4scale_ropevit.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='RoPESwin',
        embed_dim=96,
        depths=(2, 2, 6, 2),
        num_heads=(3, 6, 12, 24),
        window_size=7,
        rope_type='mixed',
        use_rpb=False,
        window_padding='zero',
        out_indices=(1, 2, 3),
        drop_path_rate=0.1),
    neck=dict(
        _delete_=True,
        type='ChannelMapper',
        in_channels=[192, 384, 768],
        kernel_size=1,
        out_channels=256,
        act_cfg=None,
        norm_cfg=dict(type='GN', num_groups=32),
        num_outs=4))
