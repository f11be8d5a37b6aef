"""Plain-pickle (``.pkl``) checkpoints through the restricted unpickler, and the backbone prefixes of detector
checkpoints (``backbone.``, ``backbone.net.``, ``backbone.bottom_up.``); neither needs detectron2."""

from __future__ import annotations

import collections
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from ropevit_dense import RoPESwin, RoPEViT, load_pretrained
from ropevit_dense.checkpoints import CheckpointError, UnsafeCheckpointError, unwrap
from ropevit_dense.checkpoints.pickle_safe import load_any, load_pickle

TINY_VIT = dict(embed_dim=32, depth=2, num_heads=2, init_values=1.0, use_cls_token=False)
TINY_SWIN = dict(embed_dim=16, depths=(1, 1), num_heads=(1, 2), window_size=4)


class Payload:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _model_zoo_dict() -> dict:
    """The layout of detectron2's model-zoo files: numpy arrays under 'model', '__author__', matching flag."""
    rng = np.random.default_rng(0)
    weights = collections.OrderedDict(
        [("backbone.bottom_up.stem.conv1.weight", rng.standard_normal((8, 3, 7, 7)).astype(np.float32)),
         ("roi_heads.box_predictor.cls_score.bias", rng.standard_normal(81).astype(np.float32)),
         ("proposal_generator.anchor_generator.cell_anchors.0", np.zeros((3, 4), np.float64)),
         ("step", np.array(7, np.int64)), ("half", np.ones(3, np.float16)), ("flags", np.array([1, 0], np.uint8))])
    return {"model": weights, "__author__": "Detectron2 Model Zoo", "matching_heuristics": True,
            "scale": np.float32(0.5), "tags": {"coco", "lsj"}}


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_model_zoo_pickles_of_every_protocol_load(tmp_path, protocol):
    data = _model_zoo_dict()
    path = tmp_path / "model_final_abc.pkl"
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    out = load_pickle(path)
    assert out["__author__"] == data["__author__"] and out["matching_heuristics"] is True
    assert out["scale"] == np.float32(0.5) and out["tags"] == {"coco", "lsj"}
    assert list(out["model"]) == list(data["model"])
    for k, v in data["model"].items():
        assert out["model"][k].dtype == v.dtype and np.array_equal(out["model"][k], v), k
    tensors = load_any(path)["model"]  # the loader for pretrained= / the converter: numpy -> torch
    assert all(isinstance(v, torch.Tensor) for v in tensors.values())
    assert torch.equal(tensors["step"], torch.tensor(7))


def test_numpy_1_module_names_still_load(tmp_path):
    """Published files were written with numpy 1 (``numpy.core.multiarray``); numpy 2 renamed it ``numpy._core``."""
    raw = pickle.dumps(_model_zoo_dict(), protocol=2)
    old = raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert old != raw
    path = tmp_path / "old.pkl"
    path.write_bytes(old)
    assert np.array_equal(load_pickle(path)["model"]["step"], np.array(7))


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_a_pickle_that_would_run_code_is_refused_and_nothing_runs(tmp_path, protocol):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"model": {"w": np.zeros(2)}, "__author__": "x", "p": Payload(marker)},
                                  protocol=protocol))
    for reader in (load_pickle, load_any):
        with pytest.raises(UnsafeCheckpointError, match=r"refusing to load '.*evil.pkl'.*\(posix.system\)"):
            reader(path)
    assert not marker.exists(), "unpickling ran code"
    # the same rule for any callable outside the allowlist, e.g. a harmless-looking builtin
    path.write_bytes(pickle.dumps({"f": getattr}, protocol=protocol))
    with pytest.raises(UnsafeCheckpointError, match="builtins.getattr"):
        load_pickle(path)


def test_corrupt_and_missing_pickles_name_the_problem(tmp_path):
    good = tmp_path / "good.pkl"
    good.write_bytes(pickle.dumps(_model_zoo_dict(), protocol=4))
    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(good.read_bytes()[:300])
    with pytest.raises(CheckpointError, match=r"'.*truncated.pkl': it is corrupt or not a pickle file"):
        load_pickle(truncated)
    with pytest.raises(CheckpointError, match="checkpoint file not found"):
        load_pickle(tmp_path / "missing.pkl")
    text = tmp_path / "notes.pkl"
    text.write_text("not a pickle")
    with pytest.raises(CheckpointError, match="corrupt or not a pickle file"):
        load_pickle(text)


# -- backbone prefixes of detector checkpoints ------------------------------------------------------------------------
def _detector(backbone_sd: dict, prefix: str, neck: str) -> dict:
    sd = {f"{prefix}{k}": v for k, v in backbone_sd.items()}
    sd[f"{neck}.weight"] = torch.zeros(4, 4, 1, 1)  # pyramid / FPN / neck convs beside the backbone
    sd["roi_heads.box_predictor.cls_score.weight"] = torch.zeros(4, 8)
    sd["pixel_mean"] = torch.zeros(3, 1, 1)
    return {"model": sd, "iteration": 99, "trainer": {"iteration": 99}}


@pytest.mark.parametrize("family,prefix,neck", [
    ("vit", "backbone.net.", "backbone.simfp_2.0"),  # ViTDet: SimpleFeaturePyramid(net=RoPEViT)
    ("swin", "backbone.bottom_up.", "backbone.fpn_lateral2"),  # FPN(bottom_up=RoPESwin)
    ("vit", "backbone.bottom_up.net.", "backbone.fpn_lateral2"),  # a ViT nested one level deeper
    ("vit", "backbone.", "neck.lateral_convs.0.conv"),  # OpenMMLab
    ("vit", "", ""),  # a bare state dict
])
def test_unwrap_finds_the_backbone_under_each_detector_prefix(family, prefix, neck):
    torch.manual_seed(0)
    src = RoPEViT(**TINY_VIT, rope_type="mixed") if family == "vit" else RoPESwin(**TINY_SWIN, rope_type="mixed")
    ckpt = _detector(src.state_dict(), prefix, neck) if prefix else {"model": src.state_dict()}
    assert set(unwrap(ckpt)) == set(src.state_dict())
    dst = RoPEViT(**TINY_VIT, rope_type="mixed") if family == "vit" else RoPESwin(**TINY_SWIN, rope_type="mixed")
    report = load_pretrained(dst, ckpt)
    assert report.ok and report.architecture == ("ViT" if family == "vit" else "Swin")
    for k, v in dst.state_dict().items():
        assert torch.equal(v, src.state_dict()[k]), k


def test_detector_checkpoint_in_a_pkl_loads_as_pretrained(tmp_path):
    src = RoPEViT(**TINY_VIT, rope_type="mixed")
    ckpt = _detector(src.state_dict(), "backbone.net.", "backbone.simfp_2.0")
    arrays = {"model": {k: v.numpy() for k, v in ckpt["model"].items()}, "__author__": "ropevit_dense"}
    path = tmp_path / "detector.pkl"
    path.write_bytes(pickle.dumps(arrays, protocol=4))
    dst = RoPEViT(**TINY_VIT, rope_type="mixed")
    assert load_pretrained(dst, load_any(path)).ok
    for k, v in dst.state_dict().items():
        assert torch.equal(v, src.state_dict()[k]), k
