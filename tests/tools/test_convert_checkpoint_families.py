"""tools/convert_checkpoint.py on DINOv3 and EVA-02 files, official and timm layouts: the family is read off the key
names, the output reproduces the source model exactly, and what cannot be told is asked for."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from ropevit_dense import RoPEViT, load_pretrained

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))
from family_checkpoints import official_dinov3, official_eva02, timm_model  # noqa: E402

pytest.importorskip("timm")
TINY = dict(embed_dim=64, depth=2, num_heads=2)


@pytest.fixture(scope="module")
def conv(load_tool):
    return load_tool("convert_checkpoint")


def _sources(tmp_path: Path) -> dict[str, tuple[Path, str, dict]]:
    """Tiny random DINOv3 (S+-style SwiGLU too) and EVA-02 models written in their official and timm layouts."""
    from safetensors.torch import save_file

    out = {}
    for name, timm_name, family in (("dinov3", "vit_small_patch16_dinov3_qkvb", "dinov3"),
                                    ("dinov3plus", "vit_small_plus_patch16_dinov3_qkvb", "dinov3-plus"),
                                    ("eva02", "eva02_base_patch14_224", "eva02")):
        ref = timm_model(timm_name, seed=len(name), **TINY)
        sd = {k: v.detach().clone() for k, v in ref.state_dict().items() if not k.endswith("k_bias")}
        timm_path = tmp_path / f"{name}_timm.safetensors"
        save_file(sd, str(timm_path))
        official = official_dinov3(sd, head_dim=32, seed=1) if family != "eva02" else official_eva02(sd, head_dim=32)
        official_path = tmp_path / f"{name}_official.pth"
        torch.save(official, official_path)
        out[f"{name}-timm"] = (timm_path, family, sd)
        out[f"{name}-official"] = (official_path, family, sd)
    return out


def test_family_files_convert_to_models_that_reproduce_them(conv, tmp_path, capsys):
    x = torch.randn(1, 3, 70, 84)
    for key, (src, family, _) in _sources(tmp_path).items():
        out = tmp_path / f"{key}.pth"
        # timm files do not tell the head width (official ones do: DINOv3's periods, EVA-02's RoPE tables); every
        # published model has head_dim 64, these tiny ones 32
        heads = ["--num-heads", "2"] if key.endswith("timm") else []
        assert conv.main([str(src), str(out), *heads]) == 0, key
        printed = capsys.readouterr().out
        assert f"RoPEViT(family={family}, embed_dim=64, depth=2, num_heads=2" in printed, printed
        meta = torch.load(out, weights_only=True)["meta"]
        kwargs = meta["kwargs"]
        assert kwargs["family"] == family
        direct, converted = RoPEViT(**kwargs).eval(), RoPEViT(**kwargs).eval()
        assert load_pretrained(direct, src).ok and load_pretrained(converted, out).ok
        with torch.no_grad():
            torch.testing.assert_close(direct(x)[0], converted(x)[0], rtol=0, atol=0)


def test_both_layouts_of_one_model_give_the_same_file(conv, tmp_path):
    sources = _sources(tmp_path)
    for name in ("dinov3", "eva02"):
        written = []
        for layout in ("timm", "official"):
            out = tmp_path / f"same_{name}_{layout}.safetensors"
            assert conv.main([str(sources[f"{name}-{layout}"][0]), str(out), "--safetensors", "--num-heads", "2"]) == 0
            from safetensors.torch import load_file

            written.append(load_file(str(out)))
        assert written[0].keys() == written[1].keys()
        for k in written[0]:
            assert torch.equal(written[0][k], written[1][k]), (name, k)


def test_family_is_checked_and_asked_for(conv, tmp_path, capsys):
    sources = _sources(tmp_path)
    dinov3 = str(sources["dinov3-official"][0])
    assert conv.main([dinov3, str(tmp_path / "a.pth"), "--family", "eva02"]) == 2
    assert "holds a 'dinov3' ViT" in capsys.readouterr().err
    assert conv.main([dinov3, str(tmp_path / "b.pth"), "--arch", "dinov3_vitb16"]) == 2
    assert "embed_dim=768 but the checkpoint has 64" in capsys.readouterr().err
    # a windowed DINOv3 trained here keeps neither cls nor registers: its names do not tell the family
    windowed = RoPEViT(family="dinov3", **TINY, window_size=4, global_block_indexes=(1,))
    path = tmp_path / "windowed.pth"
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in windowed.state_dict().items()}}, path)
    assert conv.main([str(path), str(tmp_path / "c.pth")]) == 0
    assert "pass --family" in capsys.readouterr().out
    assert conv.main([str(path), str(tmp_path / "d.pth"), "--family", "dinov3"]) == 0
    kwargs = torch.load(tmp_path / "d.pth", weights_only=True)["meta"]["kwargs"]
    assert kwargs["family"] == "dinov3" and kwargs["use_cls_token"] is False
