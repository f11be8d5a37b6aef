# Mask2Former, Swin-T (patch 4, window 7) with ComRoPE-AP (commuting axis-partitioned 8x8 angle matrices): the RoPE-Mixed config of the same size with another
# position encoding. No checkpoint was pretrained with it, so the backbone starts from the naver RoPE-Mixed Swin
# weights (inherited init_cfg, strict): everything but the position parameters loads, the RoPE-Mixed frequencies
# are dropped and the new RoPE parameters keep their initialisation (both listed in the load report). They follow
# the 'rope.freqs' optimizer rule: backbone lr x0.1, no weight decay.
_base_ = ['./mask2former_ropeswin-t-p4-w7-mixed_8xb2-amp-160k_ade20k-512x512.py']

model = dict(backbone=dict(rope_type='comrope-ap'))
