"""Helpers of the tools: atomic writes, output checks, sizes, image folders, backbones from arguments."""

from __future__ import annotations

import argparse
import os

import numpy as np
import pytest
import torch

from ropevit_dense import RoPESwin, RoPEViT
from ropevit_dense.tools_utils import (
    ToolError,
    add_backbone_arguments,
    atomic_output,
    build_backbone,
    check_output,
    list_images,
    load_image,
    parse_size,
)


def test_atomic_output_replaces_only_on_success(tmp_path):
    target = tmp_path / "model.pth"
    target.write_text("old")
    with pytest.raises(RuntimeError, match="interrupted"), atomic_output(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert target.read_text() == "old" and sorted(os.listdir(tmp_path)) == ["model.pth"]
    with atomic_output(target) as tmp:
        assert tmp.parent == tmp_path and tmp != target
        tmp.write_text("new")
    assert target.read_text() == "new" and sorted(os.listdir(tmp_path)) == ["model.pth"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_check_output_refuses_existing_files_inputs_and_missing_folders(tmp_path):
    f = tmp_path / "a.pth"
    f.write_text("x")
    with pytest.raises(ToolError, match="exists; pass --force"):
        check_output(f, force=False)
    assert check_output(f, force=True) == f
    with pytest.raises(ToolError, match="is the input file"):
        check_output(f, force=True, inputs=[tmp_path / "." / "a.pth"])
    with pytest.raises(ToolError, match="does not exist"):
        check_output(tmp_path / "missing" / "b.pth", force=False)
    with pytest.raises(ToolError, match="is a directory"):
        check_output(tmp_path, force=True)


def test_parse_size():
    assert parse_size("224") == (224, 224)
    assert parse_size("320x256") == (320, 256)
    for bad in ("0", "224x", "x", "12x34x56", "a"):
        with pytest.raises(ValueError, match="bad image size"):
            parse_size(bad)


def test_images_are_listed_resized_and_normalised(image_folder):
    files = list_images(image_folder)
    assert [p.name for p in files] == ["img0.jpg", "img1.png", "img2.jpg"]
    x = load_image(files[1], (32, 24))
    from PIL import Image

    raw = np.asarray(Image.open(files[1]).convert("RGB").resize((24, 32), Image.Resampling.BICUBIC)) / 255.0
    expected = (raw - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    assert x.shape == (3, 32, 24)
    np.testing.assert_allclose(x.permute(1, 2, 0).numpy(), expected, atol=1e-5)
    with pytest.raises(ToolError, match="cannot read image"):
        (image_folder / "broken.png").write_bytes(b"not a png")
        load_image(image_folder / "broken.png", (8, 8))


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    add_backbone_arguments(p)
    return p.parse_args(list(argv))


def test_backbones_from_presets_overrides_and_names(tmp_path):
    model, report = build_backbone(_args("--backbone", "vit-s", "--embed-dim", "64", "--depth", "2", "--num-heads",
                                         "2", "--rope-type", "axial", "--ape", "--window-size", "2",
                                         "--global-blocks", "1"))
    assert isinstance(model, RoPEViT) and report is None and not model.training
    assert (model.embed_dim, model.depth, model.rope_type, model.pos_embed is not None) == (64, 2, "axial", True)
    assert [b.window_size for b in model.blocks] == [2, 0]
    swin, _ = build_backbone(_args("--backbone", "swin-t", "--embed-dim", "32", "--depths", "1,1", "--num-heads",
                                   "2,4", "--rope-type", "none", "--rpb"))
    assert isinstance(swin, RoPESwin) and swin.rope_type is None

    ckpt = tmp_path / "w.pth"
    torch.save(model.state_dict(), ckpt)
    again, report = build_backbone(_args("--backbone", "vit-s", "--embed-dim", "64", "--depth", "2", "--num-heads",
                                         "2", "--rope-type", "axial", "--ape", "--window-size", "2", "--global-blocks",
                                         "1", "--checkpoint", str(ckpt)))
    assert report.ok and torch.equal(again.pos_embed, model.pos_embed)

    named, report = build_backbone(_args("--backbone", "rope_mixed_deit_small_patch16_LS", "--random-weights",
                                         "--window-size", "14", "--global-blocks", "2,5,8,11"))
    assert report is None and named.embed_dim == 384 and named.rope_type == "mixed"
    for argv, message in [(("--backbone", "rope_mixed_deit_small_patch16_LS", "--depth", "2"), "would change"),
                          (("--backbone", "vit-z"), "unknown backbone"),
                          (("--backbone", "vit-s", "--depths", "2,2"), "Swin options"),
                          (("--backbone", "vit-s", "--num-heads", "5"), "not divisible")]:
        with pytest.raises(ToolError, match=message):
            build_backbone(_args(*argv))
