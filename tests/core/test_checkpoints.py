"""Checkpoint formats, strict key reports, the name table, and errors that name the problem."""

from __future__ import annotations

import pytest
import torch

from ropevit_dense import PRETRAINED, RoPESwin, RoPEViT, create_backbone, load_pretrained
from ropevit_dense.checkpoints import CheckpointError
from ropevit_dense.checkpoints.zoo import NAVER_SWIN, NAVER_VIT, TIMM_VIT, pretrained_spec

TINY = dict(embed_dim=64, depth=3, num_heads=4, init_values=1.0)


def naver_vit_file(model: RoPEViT) -> dict:
    """Our weights written back in the naver layout: flat ``freqs``, position buffers, classifier keys."""
    sd = {k: v.clone() for k, v in model.state_dict().items() if ".attn.rope.freqs" not in k}
    if model.rope_type == "mixed":
        freqs = torch.stack([b.attn.rope.freqs.detach() for b in model.blocks], dim=1)  # (2, depth, heads, hd/2)
        sd["freqs"] = freqs.reshape(2, model.depth, -1)
        sd["freqs_t_x"] = torch.arange(196.0) % 14
        sd["freqs_t_y"] = torch.arange(196.0) // 14
    sd["norm.weight"], sd["norm.bias"] = torch.ones(model.embed_dim), torch.zeros(model.embed_dim)
    sd["head.weight"], sd["head.bias"] = torch.zeros(1000, model.embed_dim), torch.zeros(1000)
    return {"model": sd, "epoch": 400, "args": "Namespace(...)"}


def test_naver_file_on_disk_loads_exactly(tmp_path):
    torch.manual_seed(0)
    src = RoPEViT(**TINY, rope_type="mixed", use_ape=True)
    path = tmp_path / "pytorch_model.bin"
    torch.save(naver_vit_file(src), path)
    dst = RoPEViT(**TINY, rope_type="mixed", use_ape=True)
    report = load_pretrained(dst, path)
    assert report.ok and not report.missing and not report.unexpected
    assert {"freqs_t_x", "freqs_t_y", "head.weight", "norm.weight"} <= set(report.dropped)
    for k, v in src.state_dict().items():
        torch.testing.assert_close(dst.state_dict()[k], v, msg=k)


def test_windowed_layout_drops_cls_and_keeps_everything_else():
    src = RoPEViT(**TINY, rope_type="axial")
    dst = RoPEViT(**TINY, rope_type="axial", window_size=4, global_block_indexes=(2,))
    report = load_pretrained(dst, naver_vit_file(src))
    assert report.ok and "cls_token" in report.dropped


def test_mm_and_detectron2_wrappers_and_prefixes():
    src = RoPEViT(**TINY, rope_type="mixed")
    sd = {f"backbone.{k}": v for k, v in src.state_dict().items()}
    sd["neck.0.weight"] = torch.zeros(3)
    for wrapped in ({"state_dict": sd, "meta": {"iter": 5}}, {"model": {f"module.{k}": v for k, v in sd.items()}}):
        assert load_pretrained(RoPEViT(**TINY, rope_type="mixed"), wrapped).ok


def test_ape_is_resized_to_the_model_grid():
    src = RoPEViT(**TINY, rope_type=None, use_ape=True)  # 14x14 table
    dst = RoPEViT(**TINY, rope_type=None, use_ape=True, pretrain_img_size=256)  # 16x16
    report = load_pretrained(dst, naver_vit_file(src))
    assert report.ok and report.resized == ["pos_embed (1, 196, 64) -> (1, 256, 64)"]


@pytest.mark.parametrize("dst_kwargs, message", [
    (dict(rope_type="axial"), r"unexpected in checkpoint \(3\): blocks.0.attn.rope.freqs"),
    (dict(rope_type="mixed", use_ape=True), r"missing in checkpoint \(1\): pos_embed"),
    (dict(rope_type="mixed", embed_dim=128, num_heads=8), "shape mismatch"),
    (dict(rope_type="mixed", depth=4),
     r"does not fit RoPEViT: .freqs. has shape \(2, 3, 32\); expected \(2, 4, ...\) for depth 4"),
])
def test_strict_loading_reports_the_mismatch(dst_kwargs, message):
    src = RoPEViT(**TINY, rope_type="mixed")
    with pytest.raises(CheckpointError, match=message):
        load_pretrained(RoPEViT(**{**TINY, **dst_kwargs}), naver_vit_file(src))


def test_non_strict_loading_returns_the_report():
    src = RoPEViT(**TINY, rope_type="mixed")
    report = load_pretrained(RoPEViT(**TINY, rope_type="mixed", use_ape=True), naver_vit_file(src), strict=False)
    assert not report.ok and report.missing == ["pos_embed"] and "blocks.0.attn.qkv.weight" in report.loaded
    assert "missing in checkpoint (1): pos_embed" in str(report)


def test_other_architectures_are_named():
    with pytest.raises(CheckpointError, match="looks like a ResNet-like CNN checkpoint, but the model is RoPEViT"):
        load_pretrained(RoPEViT(**TINY), {"conv1.weight": torch.zeros(64, 3, 7, 7), "layer1.0.conv1.weight":
                                          torch.zeros(1)})
    swin = RoPESwin(embed_dim=32, depths=(2, 2), num_heads=(2, 4))
    with pytest.raises(CheckpointError, match="looks like a Swin checkpoint, but the model is RoPEViT"):
        load_pretrained(RoPEViT(**TINY), {"model": swin.state_dict()})
    with pytest.raises(CheckpointError, match="holds no tensors"):
        load_pretrained(RoPEViT(**TINY), {"model": {"a": 1}})


def naver_axial_swin_buffer(head_dim: int, heads: int, theta: float = 50.0) -> torch.Tensor:
    """naver RoPE-Swin's axial ``rope_freqs`` buffer: its mixed initialisation with angle 0, written as the formula
    (x: magnitudes, then magnitudes * cos(pi/2); y: magnitudes * sin(0), then magnitudes), float32."""
    mag = 1.0 / theta ** (torch.arange(0, head_dim, 4)[: head_dim // 4].float() / head_dim)
    zero, right = torch.zeros(1), torch.full((1,), torch.pi / 2)
    fx = torch.cat((mag * torch.cos(zero), mag * torch.cos(right)))
    fy = torch.cat((mag * torch.sin(zero), mag * torch.sin(right)))
    return torch.stack((fx.expand(heads, -1), fy.expand(heads, -1)))


def _naver_swin_sd(src: RoPESwin) -> dict:
    sd = {k: v for k, v in src.state_dict().items() if not k.startswith("norm")}
    sd["norm.weight"], sd["norm.bias"] = src.norm1.weight.detach(), src.norm1.bias.detach()
    sd["layers.0.blocks.1.attn_mask"] = torch.zeros(16, 49, 49)
    return sd


def test_naver_axial_swin_frequencies_are_recomputed_not_loaded():
    kw = dict(embed_dim=32, depths=(2, 2), num_heads=(2, 4), rope_type="axial")
    sd = _naver_swin_sd(RoPESwin(**kw))
    sd["layers.0.blocks.0.attn.rope_freqs"] = naver_axial_swin_buffer(16, 2)  # naver's fixed buffer
    report = load_pretrained(RoPESwin(**kw), {"model": sd})
    assert report.ok
    assert "layers.0.blocks.0.attn.rope.freqs" in report.dropped and "layers.0.blocks.1.attn_mask" in report.dropped
    assert report.initialized == ["norm0.weight", "norm0.bias"]


def test_learned_swin_frequencies_are_not_dropped_by_an_axial_model():
    """A RoPE-Mixed Swin checkpoint must not load silently into an axial model: its learned frequencies would be
    thrown away and the outputs change. Only the fixed axial buffer that the axial model recomputes is dropped."""
    mixed = RoPESwin(embed_dim=32, depths=(2, 2), num_heads=(2, 4), rope_type="mixed")
    axial_kw = dict(embed_dim=32, depths=(2, 2), num_heads=(2, 4), rope_type="axial")
    sd = _naver_swin_sd(mixed)
    with pytest.raises(CheckpointError, match=r"unexpected in checkpoint \(4\): layers.0.blocks.0.attn.rope.freqs"):
        load_pretrained(RoPESwin(**axial_kw), {"model": sd})
    # an axial buffer of another theta is not this model's either
    sd = _naver_swin_sd(RoPESwin(**axial_kw))
    sd["layers.0.blocks.0.attn.rope_freqs"] = naver_axial_swin_buffer(16, 2, theta=10.0)
    with pytest.raises(CheckpointError, match="unexpected in checkpoint"):
        load_pretrained(RoPESwin(**axial_kw), {"model": sd})


def test_name_table():
    assert len(NAVER_VIT) == 15 and len(NAVER_SWIN) == 6 and len(TIMM_VIT) == 12
    spec = pretrained_spec("rope_mixed_ape_deit_large_patch16_LS")
    assert spec.backbone_kwargs() == dict(embed_dim=1024, depth=24, num_heads=16, rope_type="mixed", use_ape=True)
    assert spec.source == "hf://naver-ai/rope_mixed_ape_deit_large_patch16_LS/pytorch_model.bin"
    assert pretrained_spec("deit_base_patch16_LS").rope_type is None
    assert pretrained_spec("swin_rope_axial_small_patch4_window7_224").backbone_kwargs()["depths"] == (2, 2, 18, 2)
    assert pretrained_spec("vit_base_patch16_rope_mixed_ape_224.naver_in1k").use_ape
    with pytest.raises(KeyError, match="unknown pretrained checkpoint 'rope_deit_tiny'"):
        pretrained_spec("rope_deit_tiny")
    for name, spec in PRETRAINED.items():
        assert spec.source.startswith("hf://"), name


def test_create_backbone_builds_and_loads_by_name(tmp_path, monkeypatch):
    """The hub path of a name, served from a local file through a stand-in for the hub client."""
    model, report = create_backbone("swin_rope_mixed_tiny_patch4_window7_224", pretrained=False, out_indices=(1, 2, 3))
    assert report is None and model.out_indices == (1, 2, 3) and model.num_features == [96, 192, 384, 768]
    sd = {k: v for k, v in model.state_dict().items() if not k.startswith("norm")}
    sd["norm.weight"], sd["norm.bias"] = model.norm3.weight.detach(), model.norm3.bias.detach()
    torch.save({"model": sd}, tmp_path / "pytorch_model.bin")

    import huggingface_hub

    calls = []

    def fake_download(repo_id, filename, **_):
        calls.append((repo_id, filename))
        return str(tmp_path / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    model, report = create_backbone("swin_rope_mixed_tiny_patch4_window7_224", out_indices=(1, 2, 3))
    assert calls == [("naver-ai/swin_rope_mixed_tiny_patch4_window7_224", "pytorch_model.bin")]
    assert report.ok and report.initialized == ["norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias"]
    with pytest.raises(ValueError, match="would change the architecture"):
        create_backbone("swin_rope_mixed_tiny_patch4_window7_224", pretrained=False, embed_dim=128)


def test_ape_with_a_cls_entry_from_another_grid_is_resized():
    """A ``(1, 1 + 24*24, C)`` table (timm / MAE / DeiT at 384) loses its cls entry, then its 24x24 grid is resized."""
    dst = RoPEViT(**TINY, rope_type=None, use_ape=True)  # 14x14 table
    grid = torch.randn(1, 24 * 24, 64)
    sd = {k: v for k, v in dst.state_dict().items() if k != "pos_embed"}
    sd["pos_embed"] = torch.cat((torch.full((1, 1, 64), 100.0), grid), dim=1)  # the cls entry must not leak in
    report = load_pretrained(dst, sd)
    assert report.ok and report.resized == ["pos_embed (1, 576, 64) -> (1, 196, 64)"]
    expected = torch.nn.functional.interpolate(grid.reshape(1, 24, 24, 64).permute(0, 3, 1, 2), size=(14, 14),
                                               mode="bicubic", align_corners=False)
    expected = expected.permute(0, 2, 3, 1).reshape(1, 196, 64)
    torch.testing.assert_close(dst.pos_embed.detach(), expected)
    with pytest.raises(CheckpointError, match="neither a square grid nor a square grid plus one cls entry"):
        load_pretrained(dst, {**sd, "pos_embed": torch.zeros(1, 3 + 24 * 24, 64)})
