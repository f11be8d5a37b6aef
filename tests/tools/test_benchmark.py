"""tools/benchmark.py runs end to end on a small configuration and writes its tables."""

import csv
import importlib.util
import platform
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[2] / "tools" / "benchmark.py"


def _load():
    spec = importlib.util.spec_from_file_location("benchmark_tool", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_writes_markdown_and_csv(tmp_path, capsys):
    bench = _load()
    md, table = tmp_path / "bench.md", tmp_path / "bench.csv"
    assert bench.main(["--arch", "vit-s", "--sizes", "64", "--modes", "timm,none,mixed", "--layouts",
                       "global,vitdet", "--repeats", "1", "--md", str(md), "--csv", str(table)]) == 0
    lines = md.read_text().splitlines()
    assert lines[0].startswith("| backbone | layout | position | input | step | median (s) | min (s) | x none "
                               "| x timm |")
    body = [[c.strip() for c in line.split("|")[1:-1]] for line in lines[2:]]
    # timm's ViT has no window blocks: no timm row (and no 'x timm' ratio) in the ViTDet layout
    assert [(r[1], r[2], r[3], r[4]) for r in body] == [
        ("global", "timm", "64x64", "forward"), ("global", "none", "64x64", "forward"),
        ("global", "mixed", "64x64", "forward"), ("vitdet", "none", "64x64", "forward"),
        ("vitdet", "mixed", "64x64", "forward")]
    assert body[1][7] == "1.000" and body[0][8] == "1.000" and body[1][8] != "-" and body[4][8] == "-"
    rows = list(csv.DictReader(table.open()))
    assert len(rows) == 5 and all(float(r["median_s"]) > 0 and float(r["peak_increase_mb"]) >= 0 for r in rows)


def test_timm_floor_is_timms_model_of_the_same_size():
    import timm.models.swin_transformer as timm_swin
    import timm.models.vision_transformer as timm_vit

    from ropevit_dense.benchmark import build

    vit = build(dict(arch="vit-s", mode="timm", layout="global", size=64, device="cpu"))
    assert isinstance(vit.model, timm_vit.VisionTransformer) and vit.model.pos_embed is None
    assert vit.model.embed_dim == 384 and len(vit.model.blocks) == 12 and vit.model.cls_token is not None
    swin = build(dict(arch="swin-t", mode="timm", layout="global", size=64, device="cpu"))
    assert isinstance(swin.model, timm_swin.SwinTransformer)
    with pytest.raises(ValueError, match="timm's ViT has no window blocks"):
        build(dict(arch="vit-s", mode="timm", layout="vitdet", size=64, device="cpu"))


def test_training_step_rows(tmp_path):
    bench = _load()
    md = tmp_path / "train.md"
    assert bench.main(["--arch", "vit-s", "--sizes", "64", "--modes", "none,mixed", "--train", "--repeats", "1",
                       "--threads", "1", "--md", str(md)]) == 0
    body = [[c.strip() for c in line.split("|")[1:-1]] for line in md.read_text().splitlines()[2:]]
    assert [(r[2], r[4]) for r in body] == [("none", "train"), ("mixed", "train")]
    assert float(body[1][5]) > 0 and float(body[1][9]) > 0


def test_benchmark_rejects_bad_arguments(capsys):
    bench = _load()
    with pytest.raises(SystemExit):
        bench.main(["--modes", "spiral"])
    assert "unknown position mode 'spiral'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--sizes", "224,abc"])
    assert "--sizes must be a comma list of integers" in capsys.readouterr().err


SEG_CONFIG = """
default_scope = 'mmseg'
custom_imports = dict(imports=['ropevit_dense.adapters.mmseg'], allow_failed_imports=False)
model = dict(
    type='EncoderDecoder',
    data_preprocessor=dict(type='SegDataPreProcessor', mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                           bgr_to_rgb=True, pad_val=0, seg_pad_val=255, size=(64, 64)),
    backbone=dict(type='RoPEViT', embed_dim=64, depth=4, num_heads=2, rope_type='mixed', use_ape=True,
                  out_indices=(0, 1, 2, 3), init_values=1.0),
    neck=dict(type='Feature2Pyramid', embed_dim=64, rescales=[4, 2, 1, 0.5], norm_cfg=dict(type='BN')),
    decode_head=dict(type='UPerHead', in_channels=[64] * 4, in_index=[0, 1, 2, 3], pool_scales=(1, 2, 3, 6),
                     channels=32, dropout_ratio=0.1, num_classes=5, norm_cfg=dict(type='BN'), align_corners=False,
                     loss_decode=dict(type='CrossEntropyLoss', loss_weight=1.0)),
    train_cfg=dict(), test_cfg=dict(mode='whole'))
"""
DET_CONFIG = (Path(__file__).resolve().parents[2] / "configs" / "detection" / "mmdet" / "tiny"
              / "dino-4scale_ropevit-tiny-mixed_1xb4-800i_tinycoco.py")


def test_whole_model_rows_for_mmdet_and_mmseg_configs_against_their_floor(tmp_path):
    pytest.importorskip("mmdet")
    pytest.importorskip("mmseg")
    bench = _load()
    seg = tmp_path / "upernet_tiny.py"
    seg.write_text(SEG_CONFIG)
    md, table, png = tmp_path / "bench.md", tmp_path / "bench.csv", tmp_path / "bench.png"
    assert bench.main(["--config", str(DET_CONFIG), "--config", str(seg), "--sizes", "96", "--repeats", "1",
                       "--batch", "2", "--threads", "1", "--md", str(md), "--csv", str(table), "--plot", str(png)]) == 0
    rows = list(csv.DictReader(table.open()))
    assert [(r["arch"], r["layout"], r["mode"]) for r in rows] == [
        (DET_CONFIG.stem, "model", "none"), (DET_CONFIG.stem, "model", "mixed"),
        ("upernet_tiny", "model", "none"), ("upernet_tiny", "model", "mixed-ape")]
    for r in rows:
        assert float(r["throughput"]) == pytest.approx(2 / float(r["median_s"]))
        assert float(r["peak_increase_mb"]) > 0
    lines = md.read_text().splitlines()
    assert lines[0].endswith("| throughput (img/s) |") and lines[2].split("|")[8].strip() == "1.000"
    from PIL import Image

    with Image.open(png) as img:
        assert img.size[0] > 100 and img.size[1] > 100

    # the floor is the same model without any position encoding
    from ropevit_dense.benchmark import build

    spec = dict(config=str(seg), device="cpu", mode="none")
    floor, full = build(spec), build({**spec, "mode": "mixed-ape"})
    assert floor.backbone.rope_type is None and floor.backbone.pos_embed is None
    assert full.backbone.rope_type == "mixed" and full.backbone.pos_embed is not None
    assert type(floor.decode_head) is type(full.decode_head)
    rope_params = {n for n, _ in full.named_parameters() if "rope" in n or "pos_embed" in n}
    assert {n for n, _ in floor.named_parameters()} == {n for n, _ in full.named_parameters()} - rope_params


def test_backbone_rows_give_throughput_and_a_plot_and_outputs_are_not_overwritten(tmp_path, capsys):
    bench = _load()
    png, table = tmp_path / "bench.png", tmp_path / "bench.csv"
    assert bench.main(["--arch", "vit-s", "--sizes", "64,96", "--modes", "axial", "--repeats", "1", "--batch", "3",
                       "--threads", "1", "--plot", str(png), "--csv", str(table)]) == 0
    rows = list(csv.DictReader(table.open()))
    assert [(r["mode"], r["size"]) for r in rows] == [("axial", "64"), ("axial", "96")]
    assert all(float(r["throughput"]) == pytest.approx(3 / float(r["median_s"])) for r in rows)
    from PIL import Image

    with Image.open(png) as img:
        assert img.format == "PNG" and img.size[0] > 100
    before = png.read_bytes()
    with pytest.raises(SystemExit):
        bench.main(["--arch", "vit-s", "--sizes", "64", "--plot", str(png)])
    assert "exists; pass --force" in capsys.readouterr().err and png.read_bytes() == before
    with pytest.raises(SystemExit):
        bench.main(["--config", str(tmp_path / "missing.py")])
    assert "is not an existing .py config file" in capsys.readouterr().err


HEAP_PROBE = """
import ctypes, ctypes.util, sys

def rss_kb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

applied = None
if sys.argv[1] == "keep":
    from ropevit_dense.benchmark import keep_heap
    applied = keep_heap()
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
size = 16 * 2**20  # kept: below the mmap threshold, from the heap; default: mmapped, unmapped when freed
p = libc.malloc(size)
ctypes.memset(p, 1, size)
before_free = rss_kb()
libc.free(p)
print(applied, (before_free - rss_kb()) // 1024)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists() or platform.libc_ver()[0] != "glibc",
                    reason="glibc on Linux only")
def test_keep_heap_keeps_freed_memory_in_the_process():
    """With keep_heap, 16 MiB freed stay resident (the next step reuses them without page faults); by default glibc
    gives them back to the system (and the next step faults them in again)."""
    import subprocess
    import sys

    def probe(mode):
        out = subprocess.run([sys.executable, "-c", HEAP_PROBE, mode], capture_output=True, text=True, check=True)
        applied, released_mb = out.stdout.split()
        return applied, int(released_mb)

    applied, released = probe("keep")
    assert applied == "True" and released < 2
    _, released = probe("default")
    assert released >= 14


def test_default_malloc_flag():
    bench = _load()
    assert not bench.parse_args(["--sizes", "64"]).default_malloc
    assert bench.parse_args(["--sizes", "64", "--default-malloc"]).default_malloc
