"""tools/analyze_attention.py against brute-force attention statistics written out independently here.

The oracles rotate queries and keys with complex numbers (not the package's sin / cos rotation), form windows and
distances with explicit loops, and preprocess images with PIL + numpy directly.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ropevit_dense import RoPESwin, RoPEViT

MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


@pytest.fixture(scope="module")
def tool(load_tool):
    return load_tool("analyze_attention")


def _images(folder: Path, h: int, w: int) -> torch.Tensor:
    out = []
    for p in sorted(folder.iterdir()):
        if p.suffix not in (".png", ".jpg"):
            continue
        img = Image.open(p).convert("RGB").resize((w, h), Image.Resampling.BICUBIC)
        a = (np.asarray(img, dtype=np.float64) / 255.0 - MEAN) / STD
        out.append(torch.from_numpy(a).permute(2, 0, 1).float())
    return torch.stack(out)


def _sharpen(model: torch.nn.Module) -> torch.nn.Module:
    """Random projections strong enough that attention is far from uniform."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("attn.qkv.weight"):
                p.copy_(0.4 * torch.randn(p.shape, generator=g))
            elif name.endswith("rope.freqs"):
                p.mul_(3.0)
    return model.eval()


def _block_input(model: torch.nn.Module, block: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    seen = []
    handle = block.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    with torch.no_grad():
        model(x)
    handle.remove()
    return seen[0]


def _rotate(t: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """``t`` (heads, N, hd) rotated pair-wise by ``angles`` (heads or 1, N, hd / 2), with complex numbers."""
    c = torch.view_as_complex(t.double().reshape(*t.shape[:-1], -1, 2).contiguous())
    return c * torch.polar(torch.ones_like(angles.double()), angles.double())


def _stats(q: torch.Tensor, k: torch.Tensor, dist: torch.Tensor, keys: list[int]) -> tuple[torch.Tensor, ...]:
    """Per-(head, query) distance and entropy over the allowed ``keys``; q, k complex (heads, N, hd/2)."""
    hd = 2 * q.shape[-1]
    logits = torch.einsum("hnc,hmc->hnm", q, k.conj()).real / math.sqrt(hd)
    p = torch.zeros_like(logits)
    p[:, :, keys] = torch.softmax(logits[:, :, keys], dim=-1)
    ent = -(p[:, :, keys] * torch.log(p[:, :, keys])).sum(-1)
    return (p * dist).sum(-1), ent


def _read(path: Path) -> dict[tuple[int, str], dict]:
    return {(int(r["layer"]), r["resolution"]): r for r in csv.DictReader(path.open())}


def test_global_layer_with_cls_matches_brute_force(tool, tmp_path, image_folder, capsys):
    model = _sharpen(RoPEViT(embed_dim=32, depth=3, num_heads=2, rope_type="mixed", init_values=1.0))
    ckpt = tmp_path / "tiny.pth"
    torch.save(model.state_dict(), ckpt)
    out, png = tmp_path / "attn.csv", tmp_path / "attn.png"
    assert tool.main(["--backbone", "vit-s", "--embed-dim", "32", "--depth", "3", "--num-heads", "2",
                      "--checkpoint", str(ckpt), "--images", str(image_folder), "--resolutions", "48x64,64",
                      "--batch-size", "2", "--csv", str(out), "--plot", str(png)]) == 0
    rows = _read(out)
    assert sorted(rows) == sorted((i, r) for i in range(3) for r in ("48x64", "64x64"))
    assert {r["unit"] for r in rows.values()} == {"patches"}

    layer, (h, w) = 1, (48, 64)
    blk = model.blocks[layer]
    x = _block_input(model, blk, _images(image_folder, h, w))
    gh, gw = h // 16, w // 16
    pos = [(n % gw, n // gw) for n in range(gh * gw)]
    n_tok = 1 + gh * gw
    dist = torch.zeros(n_tok, n_tok, dtype=torch.float64)  # the cls row / column stay 0
    for i, (xi, yi) in enumerate(pos):
        for j, (xj, yj) in enumerate(pos):
            dist[1 + i, 1 + j] = math.hypot(xi - xj, yi - yj)
    freqs = blk.attn.rope.freqs.detach().double()  # (2, heads, hd/2): x then y frequencies
    coords = torch.tensor(pos, dtype=torch.float64)
    patch_angles = coords[None, :, :1] * freqs[0][:, None] + coords[None, :, 1:] * freqs[1][:, None]
    angles = torch.cat((torch.zeros_like(patch_angles[:, :1]), patch_angles), dim=1)  # cls: not rotated
    d_sum = e_sum = count = 0.0
    with torch.no_grad():
        for img in x:
            qkv = blk.attn.qkv(blk.norm1(img)).view(n_tok, 3, 2, -1).permute(1, 2, 0, 3)
            d, e = _stats(_rotate(qkv[0], angles), _rotate(qkv[1], angles), dist, list(range(n_tok)))
            d_sum, e_sum, count = d_sum + float(d.sum()), e_sum + float(e.sum()), count + d.numel()
    row = rows[(layer, "48x64")]
    assert float(row["distance"]) == pytest.approx(d_sum / count, abs=2e-6)
    assert float(row["entropy"]) == pytest.approx(e_sum / count, abs=2e-6)
    assert e_sum / count < 0.9 * math.log(n_tok)  # not uniform: the check has teeth

    img = Image.open(png)
    img.load()
    assert img.size[0] > 100 and img.size[1] > 100 and np.asarray(img.convert("L")).std() > 5
    assert "layers 0-1; the last layer is left out" in capsys.readouterr().out


def test_window_layer_with_padding_matches_brute_force(tool, tmp_path, image_folder):
    model = _sharpen(RoPEViT(embed_dim=32, depth=2, num_heads=2, rope_type="axial", window_size=3,
                             global_block_indexes=(1,), init_values=1.0))
    ckpt, out = tmp_path / "tiny.pth", tmp_path / "attn.csv"
    torch.save(model.state_dict(), ckpt)
    assert tool.main(["--backbone", "vit-s", "--embed-dim", "32", "--depth", "2", "--num-heads", "2",
                      "--rope-type", "axial", "--window-size", "3", "--global-blocks", "1", "--checkpoint", str(ckpt),
                      "--images", str(image_folder), "--resolutions", "64x80", "--csv", str(out)]) == 0
    row = _read(out)[(0, "64x80")]

    blk = model.blocks[0]
    x = _block_input(model, blk, _images(image_folder, 64, 80))  # (B, 4*5, C): grid 4 x 5, windows of 3
    gh, gw, w = 4, 5, 3
    local = [(n % w, n // w) for n in range(w * w)]
    dist = torch.tensor([[math.hypot(a[0] - b[0], a[1] - b[1]) for b in local] for a in local], dtype=torch.float64)
    f = model.rope.freqs.detach().double()  # the shared axial frequencies (2, 1, hd/2)
    coords = torch.tensor(local, dtype=torch.float64)
    angles = coords[None, :, :1] * f[0][:, None] + coords[None, :, 1:] * f[1][:, None]
    d_sum = e_sum = count = 0.0
    with torch.no_grad():
        for img in x:
            grid = blk.norm1(img).view(gh, gw, -1)
            for oy in range(0, gh, w):
                for ox in range(0, gw, w):
                    tokens, real = [], []
                    for ly in range(w):
                        for lx in range(w):
                            y, xx = oy + ly, ox + lx
                            inside = y < gh and xx < gw
                            tokens.append(grid[y, xx] if inside else torch.zeros(grid.shape[-1]))
                            real.append(inside)
                    qkv = blk.attn.qkv(torch.stack(tokens)).view(w * w, 3, 2, -1).permute(1, 2, 0, 3)
                    keys = [i for i, r in enumerate(real) if r]
                    d, e = _stats(_rotate(qkv[0], angles), _rotate(qkv[1], angles), dist, keys)
                    d_sum += float(d[:, keys].sum())
                    e_sum += float(e[:, keys].sum())
                    count += d[:, keys].numel()
    assert count == x.shape[0] * 2 * gh * gw  # every real query once per head
    assert float(row["distance"]) == pytest.approx(d_sum / count, abs=2e-6)
    assert float(row["entropy"]) == pytest.approx(e_sum / count, abs=2e-6)


def test_uniform_swin_attention_gives_the_mean_window_distance_in_pixels(tool, tmp_path, image_folder):
    model = RoPESwin(embed_dim=32, depths=(2, 2), num_heads=(2, 4), window_size=4, rope_type="mixed")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "attn.qkv" in name:
                p.zero_()  # q = k = 0: uniform attention over the allowed keys
    ckpt, out = tmp_path / "swin.pth", tmp_path / "attn.csv"
    torch.save(model.state_dict(), ckpt)
    assert tool.main(["--backbone", "swin-t", "--embed-dim", "32", "--depths", "2,2", "--num-heads", "2,4",
                      "--window-size", "4", "--checkpoint", str(ckpt), "--images", str(image_folder),
                      "--resolutions", "64", "--unit", "pixels", "--csv", str(out)]) == 0
    rows = _read(out)
    cells = [(i % 4, i // 4) for i in range(16)]
    mean_pair = sum(math.hypot(a[0] - b[0], a[1] - b[1]) for a in cells for b in cells) / 256
    # unshifted blocks at a size with no padding: each query sees its whole 4 x 4 window
    assert float(rows[(0, "64x64")]["distance"]) == pytest.approx(4 * mean_pair, abs=1e-5)  # stage 0: stride 4
    assert float(rows[(2, "64x64")]["distance"]) == pytest.approx(8 * mean_pair, abs=1e-5)  # stage 1: stride 8
    assert float(rows[(0, "64x64")]["entropy"]) == pytest.approx(math.log(16), abs=1e-5)
    # shifted blocks: the masked regions leave fewer keys, so less entropy
    assert float(rows[(1, "64x64")]["entropy"]) < math.log(16) - 0.05
    assert rows[(3, "64x64")]["block"] == "layers.1.blocks.1"


def test_bad_arguments_are_named(tool, tmp_path, image_folder, capsys):
    base = ["--backbone", "vit-s", "--embed-dim", "32", "--depth", "2", "--num-heads", "2", "--random-weights"]
    out = tmp_path / "a.csv"
    assert tool.main([*base, "--images", str(tmp_path / "nope"), "--csv", str(out)]) == 2
    assert "image folder not found" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert tool.main([*base, "--images", str(empty), "--csv", str(out)]) == 2
    assert "no .jpg / .jpeg / .png images" in capsys.readouterr().err
    out.write_text("mine")
    assert tool.main([*base, "--images", str(image_folder), "--csv", str(out)]) == 2
    assert "exists; pass --force" in capsys.readouterr().err and out.read_text() == "mine"
    for argv, message in [(["--resolutions", "224,abc"], "bad image size 'abc'"),
                          (["--plot", str(tmp_path / "a.jpg")], "--plot must be a .png")]:
        with pytest.raises(SystemExit):
            tool.main([*base, "--images", str(image_folder), "--csv", str(tmp_path / "b.csv"), *argv])
        assert message in capsys.readouterr().err


@pytest.mark.parametrize("build", [
    lambda: RoPESwin(embed_dim=32, depths=(2, 2), num_heads=(2, 4), window_size=4, rope_type="mixed", use_rpb=True),
    lambda: RoPEViT(embed_dim=32, depth=2, num_heads=2, rope_type="mixed", window_size=3, global_block_indexes=(1,)),
])
def test_chunked_computation_gives_the_same_statistics(tool, monkeypatch, build):
    model = _sharpen(build())
    x = torch.randn(2, 3, 72, 88)

    def run() -> list:
        with tool.AttentionStatistics(model) as stats, torch.no_grad():
            model(x)
        return stats.results()

    whole = run()
    monkeypatch.setattr(tool, "CHUNK_ELEMENTS", 50)  # one window / image and one head at a time
    chunked = run()
    assert [r[:2] for r in chunked] == [r[:2] for r in whole]
    for a, b in zip(chunked, whole):
        assert a[2:] == pytest.approx(b[2:], rel=1e-6)  # float32 projections of other batch sizes
