"""ViT families as data: the records, DINOv3's coordinates and rotate-half permutation, the key-bias-free qkv, the
built backbones, the converters' refusals, the name table and the gated-hub message."""

from __future__ import annotations

import math

import pytest
import torch

from ropevit_dense import RoPEViT, create_backbone, load_pretrained
from ropevit_dense.backbones import FAMILIES, ViTFamily, resolve_family
from ropevit_dense.backbones.lr_decay import vit_layer_id
from ropevit_dense.checkpoints import CheckpointError
from ropevit_dense.checkpoints.families import rotate_half_to_interleaved
from ropevit_dense.checkpoints.zoo import DINOV3, EVA02, pretrained_spec
from ropevit_dense.layers import QVBiasLinear
from ropevit_dense.rope import apply_rope, axial_frequencies, grid_coords, rope_table

TINY = dict(embed_dim=64, depth=2, num_heads=2)


def test_family_records_resolve_by_name_object_and_dict():
    assert resolve_family("dinov3") is FAMILIES["dinov3"]
    eva = FAMILIES["eva02"]
    assert resolve_family(eva) is eva
    custom = resolve_family(dict(base="dinov3", out_norm=False))
    assert isinstance(custom, ViTFamily) and not custom.out_norm and custom.num_register_tokens == 4
    with pytest.raises(ValueError, match="unknown ViT family 'dinov4'"):
        resolve_family("dinov4")
    with pytest.raises(ValueError, match=r"unknown ViT family fields \['registers'\]"):
        resolve_family(dict(base="dinov3", registers=2))
    with pytest.raises(ValueError, match="mlp_norm"):
        ViTFamily(name="x", mlp_norm=True)


def test_centered_coordinates():
    c = grid_coords(2, 4, mode="interpolate", rule="centered")
    assert c[:4, 0].tolist() == pytest.approx([-0.75, -0.25, 0.25, 0.75])
    assert c[::4, 1].tolist() == pytest.approx([-0.5, 0.5])
    # extrapolate: the step of the reference grid, continued past [-1, 1] on a larger grid
    e = grid_coords(1, 32, mode="extrapolate", rule="centered", ref_size=(16, 16))
    assert e[1, 0] - e[0, 0] == pytest.approx(2 / 16) and e[-1, 0].item() == pytest.approx(31 / 16)
    assert torch.allclose(grid_coords(16, 16, mode="extrapolate", rule="centered", ref_size=(16, 16)),
                          grid_coords(16, 16, mode="interpolate", rule="centered"))
    with pytest.raises(ValueError, match="needs ref_size"):
        grid_coords(2, 2, rule="centered")
    with pytest.raises(ValueError, match="unknown RoPE coordinate rule"):
        grid_coords(2, 2, rule="polar")


def test_axial_frequencies_of_dinov3_and_eva02():
    f = axial_frequencies(16, theta=100.0, scale=2 * math.pi, y_first=True)
    assert torch.all(f[0, 0, :4] == 0) and torch.all(f[1, 0, 4:] == 0)  # rows first, then columns
    periods = 2 * math.pi / f[1, 0, :4]
    torch.testing.assert_close(periods, 100.0 ** (2 * torch.arange(4.0) / 8), rtol=1e-6, atol=0)


def test_rotate_half_rows_become_interleaved_pairs():
    """DINOv3's rotation of (x_j, x_{j+D/2}) equals our pair rotation after the converter's row permutation."""
    d, n = 16, 5
    x = torch.randn(n, d, dtype=torch.float64)
    angles = torch.rand(n, d // 2, dtype=torch.float64) * 6
    half = torch.cat((-x[:, d // 2:], x[:, : d // 2]), dim=-1)
    theirs = x * angles.tile(2).cos() + half * angles.tile(2).sin()  # rotate-half, as DINOv3 writes it
    table = rope_table(torch.zeros(2, 1, d // 2, dtype=torch.float64), torch.zeros(n, 2))
    table = table._replace(sin=angles.sin()[None], cos=angles.cos()[None])
    ours = apply_rope(rotate_half_to_interleaved(x.T, d).T[None], table)[0]
    torch.testing.assert_close(ours, rotate_half_to_interleaved(theirs.T, d).T)


def test_qv_bias_linear_keeps_the_key_bias_at_zero():
    lin = QVBiasLinear(8, 24)
    with torch.no_grad():
        lin.bias.copy_(torch.randn(24))
    x = torch.randn(3, 8, requires_grad=True)
    out = lin(x)
    torch.testing.assert_close(out[:, 8:16], x @ lin.weight[8:16].T)
    out.sum().backward()
    assert torch.all(lin.bias.grad[8:16] == 0) and torch.all(lin.bias.grad[:8] != 0)
    assert "bias_mask" not in lin.state_dict()
    assert torch.all(QVBiasLinear(8, 24).bias[8:16] == 0)
    with pytest.raises(ValueError, match="divisible by 3"):
        QVBiasLinear(8, 10)


def test_dinov3_backbone_structure():
    m = RoPEViT(family="dinov3", **TINY, out_indices=(0, 1)).eval()
    assert m.patch_size == 16 and m.rope_type == "axial" and m.rope_position == "interpolate"
    assert m.register_tokens.shape == (1, 4, 64) and m.num_prefix_tokens == 5
    assert m.pos_embed is None and m.norm is not None and m.norm.eps == 1e-5
    assert isinstance(m.blocks[0].attn.qkv, QVBiasLinear) and m.blocks[0].gamma_1 is not None
    outs = m(torch.randn(2, 3, 37, 70))
    assert [tuple(o.shape) for o in outs] == [(2, 64, 3, 5)] * 2
    w = RoPEViT(family="dinov3", **TINY, window_size=4, global_block_indexes=(1,))
    assert w.register_tokens is None and w.cls_token is None and w.num_prefix_tokens == 0
    assert "register_tokens" in m.no_weight_decay()
    plus = RoPEViT(family="dinov3-plus", embed_dim=384, depth=1, num_heads=6)
    assert plus.blocks[0].mlp.fc1_g.out_features == 1536  # DINOv3 S+: int(384 * 6) * 2 / 3, a multiple of 8
    nobias = RoPEViT(family="dinov3", **TINY, qkv_bias=False)
    assert nobias.blocks[0].attn.qkv.bias is None


def test_eva02_backbone_structure():
    m = RoPEViT(family="eva02", **TINY).eval()
    assert m.patch_size == 14 and m.pretrain_grid == (16, 16) and m.pos_embed.shape == (1, 256, 64)
    assert m.blocks[0].gamma_1 is None and m.norm is None and m.register_tokens is None
    mlp = m.blocks[0].mlp
    assert mlp.fc1_g.out_features == int(64 * 4 * 2 / 3) and isinstance(mlp.norm, torch.nn.LayerNorm)
    assert m.rope.theta == 10000.0 and m.rope.y_first
    assert m(torch.randn(1, 3, 50, 29))[0].shape == (1, 64, 4, 3)
    assert RoPEViT(family="eva02", **TINY, rope_position="extrapolate").rope_position == "extrapolate"
    assert RoPEViT(family="eva02", **TINY, rope_type=None).rope is None  # the no-position floor
    with pytest.raises(ValueError, match="family 'eva02' has axial RoPE"):
        RoPEViT(family="eva02", **TINY, rope_type="mixed")


def test_register_tokens_take_the_embedding_layer_rate():
    assert vit_layer_id("backbone.register_tokens", 12) == 0
    assert vit_layer_id("backbone.cls_token", 12) == 0


def _eva_sd(model: RoPEViT) -> dict:
    """timm-layout EVA-02 weights of ``model`` (separate projections)."""
    sd = {}
    for k, v in model.state_dict().items():
        if k.endswith("attn.qkv.weight"):
            for name, part in zip("qkv", v.chunk(3)):
                sd[k.replace("qkv.weight", f"{name}_proj.weight")] = part
        elif k.endswith("attn.qkv.bias"):
            q, _, v_ = v.chunk(3)
            sd[k.replace("qkv.bias", "q_proj.bias")], sd[k.replace("qkv.bias", "v_proj.bias")] = q, v_
        else:
            sd[k] = v
    sd["pos_embed"] = torch.cat((torch.zeros(1, 1, 64), sd["pos_embed"]), dim=1)
    return sd


def test_converter_refuses_what_would_change_the_model():
    src = RoPEViT(family="eva02", **TINY)
    sd = _eva_sd(src)
    report = load_pretrained(RoPEViT(family="eva02", **TINY), sd)
    assert report.ok
    bad = dict(sd, **{"blocks.0.attn.k_proj.bias": torch.ones(64)})
    with pytest.raises(CheckpointError, match="non-zero key bias"):
        load_pretrained(RoPEViT(family="eva02", **TINY), bad)
    partial = {k: v for k, v in sd.items() if k != "blocks.1.attn.v_proj.weight"}
    with pytest.raises(CheckpointError, match="lacks"):
        load_pretrained(RoPEViT(family="eva02", **TINY), partial)
    with torch.no_grad():
        sd["blocks.0.attn.q_proj.bias"] += 1.0
    with pytest.raises(CheckpointError, match="build it with qkv_bias=True"):
        load_pretrained(RoPEViT(family="eva02", **TINY, qkv_bias=False), sd)


def test_name_table_of_the_families():
    assert len(DINOV3) == 15 and len(EVA02) == 9
    spec = pretrained_spec("vit_base_patch16_dinov3.lvd1689m")
    assert spec.backbone_kwargs() == dict(family="dinov3", embed_dim=768, depth=12, num_heads=12, qkv_bias=False)
    assert spec.source == "hf://timm/vit_base_patch16_dinov3.lvd1689m/model.safetensors"
    assert pretrained_spec("dinov3_vits16plus").backbone_kwargs()["family"] == "dinov3-plus"
    assert pretrained_spec("eva02_L_pt_m38m_p14").source == "hf://Yuxin-CV/EVA-02/eva02/pt/eva02_L_pt_m38m_p14.pt"
    assert pretrained_spec("eva02_B_pt_in21k_p14to16").backbone_kwargs()["patch_size"] == 16
    model, report = create_backbone("eva02_base_patch14_224.mim_in22k", pretrained=False, window_size=16,
                                    global_block_indexes=(2, 5, 8, 11))
    assert report is None and model.family.name == "eva02" and model.depth == 12 and model.cls_token is None
    with pytest.raises(ValueError, match="would change the architecture"):
        create_backbone("dinov3_vitb16", pretrained=False, family="eva02")
    with pytest.raises(ValueError, match=r"\['qkv_bias'\] would change the architecture"):
        create_backbone("vit_small_patch16_dinov3.lvd1689m", pretrained=False, qkv_bias=True)
    with pytest.raises(ValueError, match=r"\['patch_size'\] would change the architecture"):
        create_backbone("eva02_B_pt_in21k_p14", pretrained=False, patch_size=16)
    # restating what the name fixes is fine
    create_backbone("rope_mixed_deit_small_patch16_LS", pretrained=False, family="rope-vit", patch_size=16)


def test_create_backbone_reads_an_official_dinov3_file(tmp_path):
    src = RoPEViT(family="dinov3", **TINY)
    sd = {k.replace("register_tokens", "storage_tokens").replace("gamma_1", "ls1.gamma")
          .replace("gamma_2", "ls2.gamma"): v for k, v in src.state_dict().items()}
    sd["rope_embed.periods"] = (100.0 ** (torch.arange(8.0) / 8)).to(torch.bfloat16)
    sd["mask_token"] = torch.zeros(1, 64)
    path = tmp_path / "dinov3_tiny_pretrain.pth"
    torch.save(sd, path)
    model = RoPEViT(family="dinov3", **TINY)
    report = load_pretrained(model, path)
    assert report.ok and {"rope_embed.periods", "mask_token"} <= set(report.dropped)
    # the official q / k rows are rotate-half ordered: they were permuted on the way in
    head = 32
    q = sd["blocks.0.attn.qkv.weight"][:64]
    torch.testing.assert_close(model.blocks[0].attn.qkv.weight[:64], rotate_half_to_interleaved(q, head))


class _FakeResponse:
    def __init__(self, status_code: int) -> None:
        self.status_code = status_code


def test_gated_repository_message(monkeypatch):
    import huggingface_hub

    calls = []

    def gated(repo_id, filename, **kwargs):
        calls.append(kwargs)
        raise _gated_error()

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", gated)
    with pytest.raises(CheckpointError) as info:  # what create_backbone('vit_small_patch16_dinov3.lvd1689m') loads
        load_pretrained(RoPEViT(family="dinov3", **TINY), pretrained_spec("vit_small_patch16_dinov3.lvd1689m").source)
    text = str(info.value)
    assert "this repository is gated: accept its licence at https://huggingface.co/timm/vit_small_patch16_dinov3" \
           ".lvd1689m and log in with `huggingface-cli login`" in text and "HF_TOKEN" in text
    assert calls and "token" not in calls[0]  # huggingface_hub picks up HF_TOKEN / the stored login itself

    class Refused(Exception):
        response = _FakeResponse(401)

    def refused(repo_id, filename, **_):
        raise Refused("401 Client Error")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", refused)
    with pytest.raises(CheckpointError, match=r"access refused \(HTTP 401\); if this repository is gated: accept"):
        load_pretrained(RoPEViT(family="dinov3", **TINY), "hf://timm/some_gated_model/model.safetensors")

    def offline(repo_id, filename, **_):
        raise OSError("no network")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(CheckpointError) as info:
        load_pretrained(RoPEViT(family="eva02", **TINY), pretrained_spec("eva02_B_pt_in21k_p14").source)
    assert "gated" not in str(info.value) and "no network" in str(info.value)


def _gated_error() -> Exception:
    """huggingface_hub's own gated-repository error (built without its HTTP client's response type)."""
    from huggingface_hub.errors import GatedRepoError

    exc = GatedRepoError.__new__(GatedRepoError)
    Exception.__init__(exc, "403 Client Error. Cannot access gated repo for url https://huggingface.co/...")
    exc.response = _FakeResponse(403)
    return exc
