# The EVA-02 DINO recipe shrunk for a CPU: the tiny DINOv3 detector's head, data and schedule, with a 4-block 64-wide
# EVA-02-family backbone (patch 16 as detrex's DINO-EVA-02, APE, SwiGLU with sub-LN, RoPE interpolated onto the
# 16 x 16 pretraining grid; windows of 4 tokens, blocks 1 and 3 global), trained from scratch.
_base_ = ['../../dinov3/tiny/dino-4scale_dinov3-tiny-vitdet_1xb4-lsj-800i_tinycoco.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='RoPEViT',
        family='eva02',
        embed_dim=64,
        depth=4,
        num_heads=2,
        patch_size=16,
        pretrain_img_size=256,
        ape_img_size=224,
        window_size=4,
        global_block_indexes=(1, 3),
        window_padding='zero',
        ape_antialias=False,
        drop_path_rate=0.0,
        init_cfg=None))
