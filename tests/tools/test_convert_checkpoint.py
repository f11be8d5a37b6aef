"""tools/convert_checkpoint.py: every input layout becomes our layout and reproduces the source model exactly."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import pytest
import torch

from ropevit_dense import RoPESwin, RoPEViT, load_pretrained

TINY_VIT = dict(embed_dim=64, depth=2, num_heads=2, init_values=1.0)
TINY_SWIN = dict(embed_dim=32, depths=(2, 2), num_heads=(2, 4), window_size=4)


@pytest.fixture(scope="module")
def conv(load_tool):
    return load_tool("convert_checkpoint")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _randomize(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Weights far from initialisation, so that every tensor changes the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p + 0.05 * torch.randn(p.shape, generator=g))
    return model.eval()


def _outputs(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    with torch.no_grad():
        return model.eval()(x)


def _naver_vit(model: RoPEViT) -> dict:
    """A naver RoPE-ViT file: flat ``freqs`` (2, depth, heads * head_dim / 2), position buffers, classifier keys."""
    sd = {k: v.clone() for k, v in model.state_dict().items() if ".attn.rope." not in k}
    if model.rope_type == "mixed":
        sd["freqs"] = torch.stack([b.attn.rope.freqs.detach() for b in model.blocks], 1).reshape(2, model.depth, -1)
        sd["freqs_t_x"], sd["freqs_t_y"] = torch.arange(196.0) % 14, torch.arange(196.0) // 14
    sd["norm.weight"], sd["norm.bias"] = torch.ones(model.embed_dim), torch.zeros(model.embed_dim)
    sd["head.weight"], sd["head.bias"] = torch.zeros(10, model.embed_dim), torch.zeros(10)
    return {"model": sd, "epoch": 300}


def _naver_swin(model: RoPESwin) -> dict:
    """A naver RoPE-Swin file: Microsoft names, ``attn.rope_freqs``, derived buffers, one final ``norm``, head."""
    last = model.num_stages - 1
    sd = {}
    for k, v in model.state_dict().items():
        if k.startswith("norm"):
            if k.startswith(f"norm{last}."):
                sd[k.replace(f"norm{last}.", "norm.")] = v.clone()
            continue
        sd[k.replace("attn.rope.freqs", "attn.rope_freqs")] = v.clone()
    n = model.window_size ** 2
    for s, stage in enumerate(model.layers):
        for j, blk in enumerate(stage.blocks):
            sd[f"layers.{s}.blocks.{j}.attn.rope_t_x"] = torch.arange(float(n)) % model.window_size
            if blk.shift_size:
                sd[f"layers.{s}.blocks.{j}.attn_mask"] = torch.zeros(4, n, n)
            if blk.attn.relative_position_bias_table is not None:
                sd[f"layers.{s}.blocks.{j}.attn.relative_position_index"] = torch.zeros(n, n, dtype=torch.long)
    sd["head.weight"], sd["head.bias"] = torch.zeros(10, model.num_features[-1]), torch.zeros(10)
    return {"model": sd}


@pytest.mark.parametrize("rope_type,use_ape", [("mixed", True), ("axial", False), (None, True)])
def test_naver_vit_file_converts_to_a_file_that_reproduces_the_model(conv, tmp_path, capsys, rope_type, use_ape):
    src = _randomize(RoPEViT(**TINY_VIT, rope_type=rope_type, use_ape=use_ape), seed=1)
    inp, out = tmp_path / "pytorch_model.bin", tmp_path / "ours.pth"
    torch.save(_naver_vit(src), inp)
    before = _digest(inp)
    assert conv.main([str(inp), str(out), "--num-heads", "2"]) == 0
    printed = capsys.readouterr().out
    assert "head.weight" in printed and "tensors loaded" in printed  # the load report is shown
    assert _digest(inp) == before
    dst = RoPEViT(**TINY_VIT, rope_type=rope_type, use_ape=use_ape)
    report = load_pretrained(dst, out)
    assert report.ok and not report.dropped  # our layout: nothing left to drop
    x = torch.randn(1, 3, 80, 112)
    torch.testing.assert_close(_outputs(dst, x), _outputs(src, x), rtol=0, atol=0)
    meta = torch.load(out, weights_only=True)["meta"]
    assert meta["kwargs"]["rope_type"] == (rope_type or None) and meta["kwargs"]["num_heads"] == 2


def test_timm_state_dict_needs_no_hints_and_matches_timm(conv, tmp_path):
    timm = pytest.importorskip("timm")
    ref = timm.create_model("vit_small_patch16_rope_mixed_224", pretrained=False, dynamic_img_size=True,
                            embed_dim=64, depth=2, num_heads=2)
    _randomize(ref, seed=2)
    inp, out = tmp_path / "timm.pth", tmp_path / "ours.pth"
    torch.save(ref.state_dict(), inp)
    assert conv.main([str(inp), str(out)]) == 0  # heads read off rope.freqs (2, depth, heads, head_dim / 2)
    dst = RoPEViT(embed_dim=64, depth=2, num_heads=2, rope_type="mixed")
    assert load_pretrained(dst, out).ok
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        expected = ref.forward_features(x)[:, 1:]
        feat = dst.eval()(x)[0].flatten(2).transpose(1, 2)
        got = torch.nn.functional.layer_norm(feat, (64,), ref.norm.weight, ref.norm.bias, eps=1e-6)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)


def test_our_layout_round_trips_through_safetensors(conv, tmp_path):
    src = _randomize(RoPEViT(**TINY_VIT, rope_type="mixed"), seed=3)
    inp, out = tmp_path / "ours.pth", tmp_path / "ours.safetensors"
    torch.save(src.state_dict(), inp)
    assert conv.main([str(inp), str(out), "--safetensors"]) == 0
    from safetensors.torch import load_file

    written = load_file(str(out))
    assert written.keys() == src.state_dict().keys()
    for k, v in src.state_dict().items():
        assert torch.equal(written[k], v), k


@pytest.mark.parametrize("arch", ["vit", "swin"])
def test_spherical_frequencies_are_told_apart_from_mixed_ones(conv, tmp_path, capsys, arch):
    """Spherical RoPE also names its parameter ``rope.freqs``, with head_dim / 3 instead of head_dim / 2 entries."""
    if arch == "vit":
        src = _randomize(RoPEViT(**TINY_VIT, rope_type="spherical"), seed=8)
        x = torch.randn(1, 3, 48, 64)
    else:
        src = _randomize(RoPESwin(**TINY_SWIN, rope_type="spherical"), seed=8)
        x = torch.randn(1, 3, 72, 104)
    inp, out = tmp_path / "sph.pth", tmp_path / "sph_out.pth"
    torch.save(src.state_dict(), inp)
    assert conv.main([str(inp), str(out)]) == 0
    assert "rope=spherical" in capsys.readouterr().out
    dst = (RoPEViT(**TINY_VIT, rope_type="spherical") if arch == "vit"
           else RoPESwin(**TINY_SWIN, rope_type="spherical"))
    assert load_pretrained(dst, out).ok
    for a, b in zip(_outputs(dst, x), _outputs(src, x)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_mmengine_detector_checkpoint_keeps_only_the_backbone(conv, tmp_path, capsys):
    pytest.importorskip("mmengine")
    from mmengine.logging import MessageHub

    from ropevit_dense.adapters.openmmlab import MMRoPEViT

    kw = dict(**TINY_VIT, rope_type="mixed", window_size=2, global_block_indexes=(1,))
    src = _randomize(RoPEViT(**kw), seed=4)
    hub = MessageHub.get_instance("convert_test")
    hub.update_scalar("train/loss", 1.0)
    state = {f"backbone.{k}": v for k, v in src.state_dict().items()}
    state |= {"neck.0.conv.weight": torch.randn(8, 64, 1, 1), "bbox_head.cls.weight": torch.randn(3, 8)}
    inp, out = tmp_path / "iter_100.pth", tmp_path / "backbone.pth"
    torch.save({"meta": {"iter": 100, "mmengine_version": "0.10.7"}, "state_dict": state,
                "message_hub": hub.state_dict(), "optimizer": {"state": {}, "param_groups": []}}, inp)
    assert conv.main([str(inp), str(out), "--num-heads", "2"]) == 0
    assert torch.load(out, weights_only=True)["state_dict"].keys() == src.state_dict().keys()
    # what init_cfg=dict(type='Pretrained', checkpoint=...) does in an mmdet / mmseg config
    dst = MMRoPEViT(**kw, init_cfg=dict(type="Pretrained", checkpoint=str(out)))
    dst.init_weights()
    x = torch.randn(1, 3, 64, 96)
    torch.testing.assert_close(_outputs(dst, x), _outputs(src, x), rtol=0, atol=0)


def test_naver_swin_file_infers_window_and_position_and_reproduces_the_stages(conv, tmp_path, capsys):
    src = _randomize(RoPESwin(**TINY_SWIN, rope_type="mixed", use_rpb=True), seed=5)
    inp, out = tmp_path / "swin.bin", tmp_path / "swin.pth"
    torch.save(_naver_swin(src), inp)
    assert conv.main([str(inp), str(out)]) == 0  # heads, window (RPB table), mixed: all read off the tensors
    printed = capsys.readouterr().out
    assert "window=4, rope=mixed, rpb=True" in printed and "new in this layout" in printed
    written = torch.load(out, weights_only=True)["state_dict"]
    assert "norm1.weight" in written and "norm0.weight" not in written  # classification file: one final norm
    dst = RoPESwin(**TINY_SWIN, rope_type="mixed", use_rpb=True)
    report = load_pretrained(dst, out)
    assert report.ok and report.initialized == ["norm0.weight", "norm0.bias"]
    x = torch.randn(1, 3, 72, 104)
    with torch.no_grad():
        for a, b in zip(dst.eval().stage_outputs(x), src.stage_outputs(x)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        torch.testing.assert_close(dst(x)[1], src(x)[1], rtol=0, atol=0)


def test_naver_axial_swin_is_recognised_from_its_frequency_buffers(conv, tmp_path, capsys):
    src = _randomize(RoPESwin(**TINY_SWIN, rope_type="axial"), seed=6)
    naver = _naver_swin(src)
    from ropevit_dense.rope import axial_frequencies

    for s, stage in enumerate(src.layers):  # naver keeps the fixed axial frequencies as a buffer per block
        heads = stage.blocks[0].attn.num_heads
        for j in range(len(stage.blocks)):
            naver["model"][f"layers.{s}.blocks.{j}.attn.rope_freqs"] = axial_frequencies(32 * 2 ** s // heads, 50.0,
                                                                                         heads)
    inp, out = tmp_path / "swin_axial.bin", tmp_path / "swin_axial.pth"
    torch.save(naver, inp)
    assert conv.main([str(inp), str(out)]) == 0
    assert "rope=axial" in capsys.readouterr().out
    assert not any("rope" in k for k in torch.load(out, weights_only=True)["state_dict"])


def test_detectron2_format_holds_prefixed_arrays(conv, tmp_path):
    src = _randomize(RoPEViT(**TINY_VIT, rope_type="mixed", use_cls_token=False), seed=7)
    inp, out = tmp_path / "ours.pth", tmp_path / "d2.pkl"
    torch.save(src.state_dict(), inp)
    assert conv.main([str(inp), str(out), "--format", "d2", "--prefix", "backbone.bottom_up.net."]) == 0
    with open(out, "rb") as fh:
        data = pickle.load(fh)
    assert data["__author__"] == "ropevit_dense"
    assert set(data["model"]) == {f"backbone.bottom_up.net.{k}" for k in src.state_dict()}
    for k, v in src.state_dict().items():
        assert torch.equal(torch.from_numpy(data["model"][f"backbone.bottom_up.net.{k}"]), v), k


@pytest.mark.detectron2
def test_detectron2_checkpointer_loads_the_pkl_by_exact_names(conv, tmp_path):
    pytest.importorskip("detectron2", reason="detectron2 is not installed (install it from its source)")
    from detectron2.checkpoint import DetectionCheckpointer

    src = _randomize(RoPEViT(**TINY_VIT, rope_type="mixed", use_cls_token=False), seed=8)
    inp, out = tmp_path / "ours.pth", tmp_path / "d2.pkl"
    torch.save(src.state_dict(), inp)
    assert conv.main([str(inp), str(out), "--format", "d2"]) == 0

    class Detector(torch.nn.Module):  # the ViTDet nesting: model.backbone.net is the ViT
        def __init__(self) -> None:
            super().__init__()
            self.backbone = torch.nn.Module()
            self.backbone.net = RoPEViT(**TINY_VIT, rope_type="mixed", use_cls_token=False)
            self.head = torch.nn.Linear(4, 2)

    model = Detector()
    DetectionCheckpointer(model).load(str(out))
    for k, v in src.state_dict().items():
        assert torch.equal(model.backbone.net.state_dict()[k], v), k


def _no_temporaries(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_bad_inputs_give_clear_errors_and_touch_nothing(conv, tmp_path, capsys):
    src = RoPEViT(**TINY_VIT, rope_type="mixed")
    good = tmp_path / "ours.pth"
    torch.save(src.state_dict(), good)
    existing = tmp_path / "existing.pth"
    existing.write_bytes(b"keep me")

    assert conv.main([str(tmp_path / "missing.pth"), str(tmp_path / "o.pth")]) == 2
    assert "checkpoint file not found" in capsys.readouterr().err
    assert conv.main([str(good), str(existing)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err and existing.read_bytes() == b"keep me"
    assert conv.main([str(good), str(good), "--force"]) == 2
    assert "is the input file" in capsys.readouterr().err
    assert conv.main([str(good), str(tmp_path / "no_dir" / "o.pth")]) == 2
    assert "does not exist" in capsys.readouterr().err

    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert conv.main([str(truncated), str(tmp_path / "o.pth")]) == 2
    assert "corrupt or not a torch file" in capsys.readouterr().err
    cnn = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(8, 3, 7, 7), "layer1.0.conv1.weight": torch.zeros(8, 8, 1, 1)}, cnn)
    assert conv.main([str(cnn), str(tmp_path / "o.pth")]) == 2
    assert "ResNet-like CNN" in capsys.readouterr().err
    assert conv.main([str(good), str(tmp_path / "o.pth"), "--arch", "vit-b"]) == 2
    assert "embed_dim=768 but the checkpoint has 64" in capsys.readouterr().err
    assert conv.main([str(good), str(tmp_path / "o.pth"), "--arch", "swin-t"]) == 2
    assert "is a Swin but the checkpoint holds a ViT" in capsys.readouterr().err
    assert conv.main([str(good), str(tmp_path / "o.pth"), "--num-heads", "4"]) == 2  # ours: (2, heads, hd/2)
    assert "shape mismatch" in capsys.readouterr().err
    assert not (tmp_path / "o.pth").exists() and _no_temporaries(tmp_path)

    for argv, message in [([str(good), str(tmp_path / "o.pth"), "--format", "d2"], "writes a detectron2 .pkl"),
                          ([str(good), str(tmp_path / "o.pth"), "--safetensors"], "needs an output ending in"),
                          ([str(good), str(tmp_path / "o.safetensors")], "add --safetensors")]:
        with pytest.raises(SystemExit):
            conv.main(argv)
        assert message in capsys.readouterr().err


@pytest.mark.parametrize("arch", ["vit", "swin"])
@pytest.mark.parametrize("mode", ["liere", "liere-per-layer", "comrope-ld"])
def test_generator_modes_need_their_rope_type_named(conv, tmp_path, capsys, arch, mode):
    """LieRE / ComRoPE parameters (the backbone's shared ``rope.generators`` or per-block ones) cannot be told apart
    reliably from the tensors: without --rope-type the tool names the problem and writes nothing; with it the
    written file reproduces the model."""
    cls, kw = (RoPEViT, dict(TINY_VIT)) if arch == "vit" else (RoPESwin, dict(TINY_SWIN))
    src = _randomize(cls(**kw, rope_type=mode), seed=5)
    inp, out = tmp_path / "src.pth", tmp_path / "out.pth"
    torch.save(src.state_dict(), inp)
    assert conv.main([str(inp), str(out)]) == 2
    assert "pass --rope-type" in capsys.readouterr().err and not out.exists()
    heads = ["--num-heads", ",".join(str(h) for h in ([kw["num_heads"]] if arch == "vit" else kw["num_heads"]))]
    assert conv.main([str(inp), str(out), "--rope-type", mode, *heads]) == 0
    dst = cls(**kw, rope_type=mode)
    assert load_pretrained(dst, str(out)).ok
    x = torch.randn(1, 3, 64, 64)
    for a, b in zip(_outputs(src, x), _outputs(dst, x)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
