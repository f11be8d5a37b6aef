"""RoPE-ViT parity with timm's naver-compatible models (an implementation we did not write).

One naver-format state dict (as ``naver-ai/rope-vit`` saves it: flat ``freqs``, ``freqs_t_x/y`` buffers, a
``model`` wrapper) is loaded by timm and by our loader; the patch-token features must agree.
"""

from __future__ import annotations

import pytest
import torch

from ropevit_dense.backbones import RoPEViT
from ropevit_dense.checkpoints.load import load_pretrained

timm = pytest.importorskip("timm")

ATOL = 1e-4  # fp32; both run the same math in a different order (SDPA vs explicit softmax, sin/cos vs complex)

VARIANTS = {
    # timm model name: (our rope_type, use_ape)
    "vit_small_patch16_rope_224": ("axial", False),
    "vit_small_patch16_rope_mixed_224": ("mixed", False),
    "vit_small_patch16_rope_ape_224": ("axial", True),
    "vit_small_patch16_rope_mixed_ape_224": ("mixed", True),
}


def naver_state_dict(timm_model: torch.nn.Module, seed: int) -> dict:
    """Random weights in the naver checkpoint layout (keys and shapes of ``models/vit_rope.py``)."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, v in timm_model.state_dict().items():
        if k == "rope.freqs":  # naver keeps the mixed frequencies flat: (2, depth, heads * head_dim / 2)
            v = v + 0.05 * torch.randn(v.shape, generator=g)
            sd["freqs"] = v.reshape(2, v.shape[1], -1).clone()
            grid = torch.arange(196, dtype=torch.float32)
            sd["freqs_t_x"], sd["freqs_t_y"] = grid % 14, torch.div(grid, 14, rounding_mode="floor")
            continue
        if k.endswith(("gamma_1", "gamma_2")):
            v = 0.5 + torch.rand(v.shape, generator=g)  # make every block matter
        elif k.endswith("norm1.weight") or k.endswith("norm2.weight") or k == "norm.weight":
            v = 1.0 + 0.1 * torch.randn(v.shape, generator=g)
        else:
            v = 0.02 * torch.randn(v.shape, generator=g)
        sd[k] = v
    return {"model": sd}


def naver_into_timm(naver: dict, timm_model: torch.nn.Module) -> None:
    """How a timm user loads a naver file: timm's own filter after renaming the flat frequencies."""
    from timm.models.eva import checkpoint_filter_fn

    sd = dict(naver["model"])
    if "freqs" in sd:
        flat = sd.pop("freqs")
        sd["rope.freqs"] = flat.reshape(timm_model.rope.freqs.shape)
        sd.pop("freqs_t_x"), sd.pop("freqs_t_y")
    timm_model.load_state_dict(checkpoint_filter_fn(sd, timm_model), strict=True)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_patch_features_match_timm(name):
    rope_type, use_ape = VARIANTS[name]
    ref = timm.create_model(name, pretrained=False, dynamic_img_size=True).eval()
    naver = naver_state_dict(ref, seed=len(name))
    naver_into_timm(naver, ref)

    ours = RoPEViT(embed_dim=384, depth=12, num_heads=6, rope_type=rope_type, use_ape=use_ape).eval()
    report = load_pretrained(ours, naver)
    assert report.ok and not report.missing
    assert set(report.dropped) >= {"head.weight", "head.bias", "norm.weight", "norm.bias"}

    g = torch.Generator().manual_seed(0)
    for h, w in [(224, 224), (320, 224), (384, 384)]:
        x = torch.randn(1, 3, h, w, generator=g)
        with torch.no_grad():
            expected = ref.forward_features(x)[:, ref.num_prefix_tokens:]  # final norm applied by timm
            feat = ours(x)[0]  # (1, C, h/16, w/16), no final norm
            got = torch.nn.functional.layer_norm(
                feat.flatten(2).transpose(1, 2), (384,), naver["model"]["norm.weight"], naver["model"]["norm.bias"],
                eps=1e-6)
        assert got.shape == expected.shape
        diff = (got - expected).abs().max().item()
        assert diff <= ATOL, f"{name} at {h}x{w}: max abs diff {diff:.2e}"
