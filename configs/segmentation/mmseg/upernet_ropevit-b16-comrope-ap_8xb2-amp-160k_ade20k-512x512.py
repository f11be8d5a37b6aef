# UperNet, ViT-B/16 backbone with ComRoPE-AP (commuting axis-partitioned 8x8 angle matrices): the RoPE-Mixed config of the same size with another position
# encoding. No checkpoint was pretrained with it, so the backbone starts from the naver RoPE-Mixed weights
# (inherited init_cfg, strict): everything but the position parameters loads, the RoPE-Mixed frequencies are
# dropped and the new RoPE parameters keep their initialisation (both listed in the load report). They follow the
# 'rope.freqs' optimizer rule: their block's layer-decayed lr, no weight decay.
_base_ = ['./upernet_ropevit-b16-mixed_8xb2-amp-160k_ade20k-512x512.py']

model = dict(backbone=dict(rope_type='comrope-ap'))
