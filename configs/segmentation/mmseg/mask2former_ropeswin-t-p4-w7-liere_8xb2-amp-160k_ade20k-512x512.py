# Mask2Former, Swin-T (patch 4, window 7) with LieRE (learned skew-symmetric 8x8 generator blocks, expm(x A_x +
# y A_y), one set shared by all blocks and heads as in LieRE's reference code): the RoPE-Mixed config of the same
# size with another position encoding. No checkpoint was pretrained with it, so the backbone starts from the naver RoPE-Mixed Swin
# weights (inherited init_cfg, strict): everything but the position parameters loads, the RoPE-Mixed frequencies
# are dropped and the new RoPE parameters keep their initialisation (both listed in the load report). They follow
# the 'rope.freqs' optimizer rule: backbone lr x0.1, no weight decay.
_base_ = ['./mask2former_ropeswin-t-p4-w7-mixed_8xb2-amp-160k_ade20k-512x512.py']

model = dict(backbone=dict(rope_type='liere'))
