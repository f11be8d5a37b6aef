# The UperNet recipe shrunk for a CPU, on a 4-block 64-wide DINOv3-family backbone (cls + 4 register tokens through
# the blocks, final norm on the outputs): the tiny RoPE-Mixed UperNet's data, heads and schedule. Trains from scratch
# on the generated ADE20k-format dataset (python -m ropevit_dense.data ade20k data/tiny_ade20k).
_base_ = ['../../tiny/upernet_ropevit-tiny-mixed_1xb4-400i_tinyade20k-64x64.py']

model = dict(
    backbone=dict(_delete_=True, type='RoPEViT', family='dinov3', embed_dim=64, depth=4, num_heads=2,
                  out_indices=(0, 1, 2, 3), drop_path_rate=0.0, init_values=1.0, init_cfg=None))
