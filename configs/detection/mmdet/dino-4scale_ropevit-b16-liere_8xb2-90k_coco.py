# DINO 4-scale, ViT-B/16 ViTDet backbone with LieRE (Ostmeier et al., ICML 2025, arXiv:2406.10322; 8x8
# generator blocks, one set shared by all blocks and heads as in LieRE's reference code; 'liere-per-layer' gives
# each block and head its own): the RoPE-Mixed config of the same size with another position encoding.
# No checkpoint was pretrained with it, so the backbone starts from the naver RoPE-Mixed weights (inherited
# init_cfg, strict): everything but the position parameters loads, the RoPE-Mixed frequencies are dropped and the
# new RoPE parameters keep their initialisation (both listed in the load report). They train under the
# 'rope.freqs' optimizer rule (lr x0.1, no weight decay).
_base_ = ['./dino-4scale_ropevit-b16-mixed_8xb2-90k_coco.py']

model = dict(backbone=dict(rope_type='liere'))
