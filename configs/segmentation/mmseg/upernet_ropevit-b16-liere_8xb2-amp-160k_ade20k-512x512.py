# UperNet, ViT-B/16 backbone with LieRE (learned skew-symmetric 8x8 generator blocks, expm(x A_x + y A_y), one set
# shared by all blocks and heads as in LieRE's reference code): the RoPE-Mixed config of the same size with another
# position encoding. No checkpoint was pretrained with it, so the backbone starts from the naver RoPE-Mixed weights
# (inherited init_cfg, strict): everything but the position parameters loads, the RoPE-Mixed frequencies are
# dropped and the new RoPE parameters keep their initialisation (both listed in the load report). They follow the
# 'rope.freqs' optimizer rule: no weight decay, the layer-decayed lr of the embeddings (the backbone-wide generators
# sit at layer 0, as pos_embed).
_base_ = ['./upernet_ropevit-b16-mixed_8xb2-amp-160k_ade20k-512x512.py']

model = dict(backbone=dict(rope_type='liere'))
