"""Test helpers: random timm DINOv3 / EVA-02 models and the same weights in the official layouts.

The official layouts are written from the key names of ``facebookresearch/dinov3`` (``storage_tokens``,
``ls1.gamma``, a fused ``qkv.bias`` with a ``bias_mask`` buffer, ``rope_embed.periods`` saved in bfloat16,
``mask_token``) and of ``baaivision/EVA`` EVA-02 (separate ``q_proj`` / ``k_proj`` / ``v_proj``, ``q_bias`` /
``v_bias``, ``mlp.w1`` / ``w2`` / ``ffn_ln`` / ``w3``, RoPE ``freqs_cos`` / ``freqs_sin`` buffers, MIM
``mask_token`` / ``lm_head``). timm's own converter reads them back as a check that they are what timm calls
official.
"""

from __future__ import annotations

import copy

import torch

# id: (timm model, our family, RoPEViT arguments); real widths and depths
MODELS = {
    "dinov3-s": ("vit_small_patch16_dinov3_qkvb", "dinov3", dict(embed_dim=384, depth=12, num_heads=6)),
    "dinov3-s-nobias": ("vit_small_patch16_dinov3", "dinov3", dict(embed_dim=384, depth=12, num_heads=6,
                                                                     qkv_bias=False)),
    "dinov3-splus": ("vit_small_plus_patch16_dinov3_qkvb", "dinov3-plus", dict(embed_dim=384, depth=12, num_heads=6)),
    "dinov3-b": ("vit_base_patch16_dinov3_qkvb", "dinov3", dict(embed_dim=768, depth=12, num_heads=12)),
    "dinov3-l": ("vit_large_patch16_dinov3_qkvb", "dinov3", dict(embed_dim=1024, depth=24, num_heads=16)),
    "eva02-b": ("eva02_base_patch14_224", "eva02", dict(embed_dim=768, depth=12, num_heads=12)),
    "eva02-l": ("eva02_large_patch14_224", "eva02", dict(embed_dim=1024, depth=24, num_heads=16)),
}


def timm_model(name: str, seed: int, **kwargs) -> torch.nn.Module:
    """timm's model with random weights far from identity blocks (LayerScale, norms, biases, tokens redrawn)."""
    import timm

    model = timm.create_model(name, pretrained=False, dynamic_img_size=True, num_classes=0, **kwargs).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for k, p in model.named_parameters():
            if k.endswith(("gamma_1", "gamma_2")):
                p.copy_(0.5 + torch.rand(p.shape, generator=g))
            elif p.ndim == 1 and "norm" in k and k.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif p.ndim == 1 or k in ("cls_token", "reg_token", "pos_embed"):
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
    return model


def without_prefix(ref: torch.nn.Module) -> torch.nn.Module:
    """A copy of a timm model with its cls / register tokens (and the cls entry of its APE) removed, the way a
    windowed (ViTDet) backbone runs the same weights."""
    m = copy.deepcopy(ref)
    m.cls_token = None
    m.reg_token = None
    m.num_prefix_tokens = 0
    for blk in m.blocks:
        blk.attn.num_prefix_tokens = 0
    if m.pos_embed is not None:
        m.pos_embed = torch.nn.Parameter(m.pos_embed[:, 1:].clone())
    return m


def official_dinov3(timm_sd: dict, head_dim: int, seed: int) -> dict:
    """The facebookresearch/dinov3 layout of a timm DINOv3 ``_qkvb`` state dict (``torch.hub`` file content)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in timm_sd.items():
        if k.endswith(".attn.q_bias"):
            k_bias = torch.randn(v.shape, generator=g)  # masked in DINOv3's forward: must not matter
            v_bias = timm_sd[k.replace("q_bias", "v_bias")]
            out[k.replace("q_bias", "qkv.bias")] = torch.cat((v, k_bias, v_bias))
            out[k.replace("q_bias", "qkv.bias_mask")] = torch.cat((torch.ones_like(v), torch.zeros_like(v),
                                                                   torch.ones_like(v)))
            continue
        if k.endswith(".attn.v_bias"):
            continue
        for old, new in (("reg_token", "storage_tokens"), ("gamma_1", "ls1.gamma"), ("gamma_2", "ls2.gamma"),
                         ("mlp.fc1_g", "mlp.w1"), ("mlp.fc1_x", "mlp.w2"), ("mlp.fc2", "mlp.w3")):
            k = k.replace(old, new)
        out[k] = v.clone()
    # DINOv3 saves its derived RoPE periods, in bfloat16
    periods = 100.0 ** (2 * torch.arange(head_dim // 4, dtype=torch.float32) / (head_dim // 2))
    out["rope_embed.periods"] = periods.to(torch.bfloat16)
    out["mask_token"] = torch.zeros(1, timm_sd["cls_token"].shape[-1])
    return out


def official_eva02(timm_sd: dict, head_dim: int = 64, grid: int = 16) -> dict:
    """The baaivision/EVA EVA-02 MIM-pretraining layout of a timm EVA-02 B / L state dict."""
    out = {}
    dim = timm_sd["cls_token"].shape[-1]
    for k, v in timm_sd.items():
        for old, new in (("attn.q_proj.bias", "attn.q_bias"), ("attn.v_proj.bias", "attn.v_bias"),
                         ("mlp.fc1_g", "mlp.w1"), ("mlp.fc1_x", "mlp.w2"), ("mlp.norm", "mlp.ffn_ln"),
                         ("mlp.fc2", "mlp.w3"), ("fc_norm", "norm")):
            k = k.replace(old, new)
        out[k] = v.clone()
    depth = 1 + max(int(k.split(".")[1]) for k in out if k.startswith("blocks."))
    for i in range(depth):  # the shared RoPE module's buffers, registered under every block
        out[f"blocks.{i}.attn.rope.freqs_cos"] = torch.ones(grid * grid, head_dim)
        out[f"blocks.{i}.attn.rope.freqs_sin"] = torch.zeros(grid * grid, head_dim)
    out["rope.freqs_cos"], out["rope.freqs_sin"] = torch.ones(grid * grid, head_dim), torch.zeros(grid * grid, head_dim)
    out["mask_token"] = torch.zeros(1, 1, dim)
    out["lm_head.weight"], out["lm_head.bias"] = torch.zeros(1024, dim), torch.zeros(1024)
    return {"module": out}
