"""detectron2 adapter: backbone contracts (shapes, strides, padding) at odd sizes, yacs registration, pretrained
loading, every LazyConfig, Mask R-CNN training + COCO evaluation on a generated dataset, DetectionCheckpointer
round trips, the detrex DINO config, and a clean skip / clear error without detectron2.

Tests that need detectron2 take the ``adapter`` fixture, which skips them (with the reason) when it is absent.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import math
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs" / "detection" / "detectron2"
TINY_CONFIG = CONFIGS / "tiny" / "mask_rcnn_vitdet_tiny_rope_mixed_tinycoco.py"
DINO_CONFIG = CONFIGS / "dino_vitdet_b_rope_mixed_4scale_12ep.py"
TOOL = REPO / "tools" / "train_net_d2.py"
SKIP_REASON = ("detectron2 is not installed (it is not on PyPI): install it from its source, "
               "see configs/detection/detectron2/README.md")
TINY_VIT = dict(embed_dim=64, depth=2, num_heads=2, window_size=4, global_block_indexes=(1,), init_values=1.0)
ODD_SIZES = [(75, 101), (33, 47), (128, 97)]
# the ViTDet recipes (projects/ViTDet/configs/COCO/*_vitdet_{b,l}_100ep.py)
RECIPE = {"b": dict(embed_dim=768, depth=12, num_heads=12, global_block_indexes=(2, 5, 8, 11), drop_path_rate=0.1,
                    lr_decay_rate=0.7),
          "l": dict(embed_dim=1024, depth=24, num_heads=16, global_block_indexes=(5, 11, 17, 23), drop_path_rate=0.4,
                    lr_decay_rate=0.8)}
# every test file that needs detectron2 (all skip cleanly without it)
D2_TEST_FILES = sorted(Path(__file__).parent.glob("test_detectron2*.py"))
# Makes `import detectron2` (and detrex) fail in a subprocess, as on a machine without them.
BLOCKER = """
import importlib.abc, sys
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('detectron2', 'detrex'):
            raise ModuleNotFoundError(f"No module named '{name}'", name=name)
sys.meta_path.insert(0, _Block())
"""


@pytest.fixture(scope="module")
def adapter():
    pytest.importorskip("detectron2", reason=SKIP_REASON)
    from ropevit_dense.adapters import detectron2 as module

    return module


def _tool():
    spec = importlib.util.spec_from_file_location("train_net_d2", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _batch(backbone, sizes):
    """Random images of ``sizes`` batched as detectron2's meta-architectures do (ImageList + padding constraints)."""
    from detectron2.structures import ImageList

    torch.manual_seed(0)
    images = [torch.randn(3, h, w) for h, w in sizes]
    return ImageList.from_tensors(images, backbone.size_divisibility,
                                  padding_constraints=backbone.padding_constraints).tensor


def _check_forward_matches_output_shape(backbone, batch):
    with torch.no_grad():
        feats = backbone(batch)
    shapes = backbone.output_shape()
    assert list(feats) == list(shapes)
    H, W = batch.shape[-2:]
    for name, spec in shapes.items():
        assert H % spec.stride == 0 and W % spec.stride == 0, (name, spec.stride, (H, W))
        assert tuple(feats[name].shape) == (batch.shape[0], spec.channels, H // spec.stride, W // spec.stride), name


# -- without detectron2 ----------------------------------------------------------------------------------------------
def test_without_detectron2_the_package_imports_the_adapter_explains_and_the_tests_skip():
    code = BLOCKER + f"""
import ropevit_dense  # the core never imports a framework
try:
    import ropevit_dense.adapters.detectron2
except ImportError as exc:
    print('IMPORT-ERROR:', exc)
import pytest
sys.exit(pytest.main([*{[str(p) for p in D2_TEST_FILES]!r}, '-m', 'detectron2', '-q', '-rs', '-p', 'no:cacheprovider']))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "IMPORT-ERROR: ropevit_dense.adapters.detectron2 needs detectron2" in out.stdout
    assert "https://detectron2.readthedocs.io/en/latest/tutorials/install.html" in out.stdout
    summary = out.stdout.strip().splitlines()[-1]
    assert " skipped" in summary and "passed" not in summary and "failed" not in summary and "error" not in summary
    skips = [line for line in out.stdout.splitlines() if line.startswith("SKIPPED")]
    assert skips and all("detectron2 is not installed (it is not on PyPI)" in line or "--run-slow" in line
                         for line in skips), skips


# -- backbone contracts ----------------------------------------------------------------------------------------------
@pytest.mark.detectron2
def test_vitdet_output_shape_matches_forward_at_odd_sizes(adapter):
    from detectron2.modeling.backbone.fpn import LastLevelMaxPool

    net = adapter.RoPEViTBackbone(**TINY_VIT)
    assert net.output_shape()["last_feat"].channels == 64 and net.output_shape()["last_feat"].stride == 16
    with torch.no_grad():
        single = net(torch.randn(1, 3, 75, 101))["last_feat"]
    assert single.shape == (1, 64, math.ceil(75 / 16), math.ceil(101 / 16))

    pyramid = adapter.RoPEViTDetBackbone(net, top_block=LastLevelMaxPool())
    assert list(pyramid.output_shape()) == ["p2", "p3", "p4", "p5", "p6"]
    # the exact keys ImageList.from_tensors reads; the pyramid's largest stride (p6: 64) and the patch divide it
    assert set(pyramid.padding_constraints) == {"size_divisibility", "square_size"}
    div = pyramid.padding_constraints["size_divisibility"]
    assert div == pyramid.size_divisibility and div % 64 == 0 and div % 16 == 0
    batch = _batch(pyramid, ODD_SIZES)
    assert batch.shape[-2:] == (math.ceil(128 / div) * div, math.ceil(101 / div) * div)
    _check_forward_matches_output_shape(pyramid, batch)

    dino = adapter.RoPEViTDetBackbone(adapter.RoPEViTBackbone(**TINY_VIT), scale_factors=(2.0, 1.0, 0.5),
                                      top_block=LastLevelMaxPool(), square_pad=192)
    assert [s.stride for s in dino.output_shape().values()] == [8, 16, 32, 64]
    batch = _batch(dino, ODD_SIZES)
    assert batch.shape[-2:] == (192, 192)  # square padding, already a multiple of 64
    _check_forward_matches_output_shape(dino, batch)


@pytest.mark.detectron2
def test_pad_to_window_makes_windows_tile_the_padded_image(adapter):
    net = adapter.RoPEViTBackbone(**{**TINY_VIT, "window_size": 3}, pad_to_window=True)
    assert net.size_divisibility % (16 * 3) == 0
    pyramid = adapter.RoPEViTDetBackbone(net, scale_factors=(2.0, 1.0, 0.5))  # strides 8, 16, 32
    div = pyramid.size_divisibility
    assert div % (16 * 3) == 0 and div % 32 == 0
    batch = _batch(pyramid, ODD_SIZES)
    tokens = [s // 16 for s in batch.shape[-2:]]
    assert all(t % 3 == 0 for t in tokens)  # whole windows, nothing padded inside the blocks
    _check_forward_matches_output_shape(pyramid, batch)


@pytest.mark.detectron2
def test_swin_output_shape_matches_forward_at_odd_sizes(adapter):
    swin = adapter.RoPESwinBackbone(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8), window_size=7)
    shapes = swin.output_shape()
    assert {k: (v.channels, v.stride) for k, v in shapes.items()} == {
        "res2": (16, 4), "res3": (32, 8), "res4": (64, 16), "res5": (128, 32)}
    assert swin.padding_constraints == {"size_divisibility": 32, "square_size": 0}
    _check_forward_matches_output_shape(swin, _batch(swin, ODD_SIZES))
    # unpadded odd input: patch embedding and every patch merging round up
    with torch.no_grad():
        feats = swin(torch.randn(1, 3, 75, 101))
    h, w = math.ceil(75 / 4), math.ceil(101 / 4)
    for name in ("res2", "res3", "res4", "res5"):
        assert feats[name].shape[-2:] == (h, w), name
        h, w = math.ceil(h / 2), math.ceil(w / 2)

    partial_swin = adapter.RoPESwinBackbone(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8),
                                            out_indices=(1, 2, 3))
    assert list(partial_swin.output_shape()) == ["res3", "res4", "res5"]
    _check_forward_matches_output_shape(partial_swin, _batch(partial_swin, ODD_SIZES))


@pytest.mark.detectron2
def test_yacs_build_functions_are_registered_and_build(adapter):
    from detectron2.config import get_cfg
    from detectron2.modeling import BACKBONE_REGISTRY, build_backbone

    for name in ("build_ropevit_sfp_backbone", "build_ropeswin_backbone", "build_ropeswin_fpn_backbone"):
        assert BACKBONE_REGISTRY.get(name) is getattr(adapter, name)

    cfg = get_cfg()
    cfg.MODEL.BACKBONE.NAME = "build_ropevit_sfp_backbone"
    with pytest.raises(KeyError, match="add_ropevit_config"):
        build_backbone(cfg)
    adapter.add_ropevit_config(cfg)
    cfg.MODEL.ROPEVIT.merge_from_list(["EMBED_DIM", 64, "DEPTH", 2, "NUM_HEADS", 2, "WINDOW_SIZE", 4,
                                       "GLOBAL_BLOCK_INDEXES", [1], "ROPE_TYPE", "axial"])
    vit = build_backbone(cfg)
    assert isinstance(vit, adapter.RoPEViTDetBackbone) and vit.net.rope_type == "axial"
    _check_forward_matches_output_shape(vit, _batch(vit, ODD_SIZES))

    cfg.MODEL.BACKBONE.NAME = "build_ropeswin_fpn_backbone"
    cfg.MODEL.FPN.IN_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.ROPESWIN.merge_from_list(["EMBED_DIM", 16, "DEPTHS", [1, 1, 1, 1], "NUM_HEADS", [1, 2, 4, 8]])
    fpn = build_backbone(cfg)
    assert {k: v.stride for k, v in fpn.output_shape().items()} == {"p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64}
    _check_forward_matches_output_shape(fpn, _batch(fpn, ODD_SIZES))

    cfg.MODEL.BACKBONE.NAME = "build_ropeswin_backbone"
    cfg.MODEL.ROPESWIN.OUT_FEATURES = ["res4", "res5"]
    assert list(build_backbone(cfg).output_shape()) == ["res4", "res5"]
    cfg.MODEL.ROPESWIN.OUT_FEATURES = ["res6"]
    with pytest.raises(ValueError, match=r"outputs \['res6'\] do not exist"):
        build_backbone(cfg)
    cfg.MODEL.ROPESWIN.OUT_FEATURES = ["res5"]
    cfg.MODEL.ROPESWIN.ROPE_TYPE = "spiral"
    with pytest.raises(ValueError, match="unknown RoPE mode rope_type='spiral'"):
        build_backbone(cfg)


@pytest.mark.detectron2
def test_pretrained_naver_checkpoint_loads_through_the_backbone_argument(adapter, tmp_path):
    from ropevit_dense import RoPEViT
    from ropevit_dense.checkpoints import CheckpointError

    torch.manual_seed(0)
    src = RoPEViT(**{k: v for k, v in TINY_VIT.items() if k not in ("window_size", "global_block_indexes")},
                  rope_type="mixed")  # an all-global classification ViT with a cls token, as naver's
    sd = {k: v.clone() for k, v in src.state_dict().items() if ".attn.rope.freqs" not in k}
    sd["freqs"] = torch.stack([b.attn.rope.freqs.detach() for b in src.blocks], dim=1).reshape(2, src.depth, -1)
    sd["freqs_t_x"], sd["freqs_t_y"] = torch.arange(196.0) % 14, torch.arange(196.0) // 14
    sd["head.weight"], sd["head.bias"] = torch.zeros(10, 64), torch.zeros(10)
    sd["norm.weight"], sd["norm.bias"] = torch.ones(64), torch.zeros(64)
    path = tmp_path / "pytorch_model.bin"
    torch.save({"model": sd, "epoch": 400}, path)

    net = adapter.RoPEViTBackbone(**TINY_VIT, rope_type="mixed", pretrained=str(path))
    assert net.load_report.ok and "cls_token" in net.load_report.dropped
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, src.state_dict()[k], rtol=0, atol=0, msg=k)

    with pytest.raises(CheckpointError, match=r"unexpected in checkpoint \(2\): blocks.0.attn.rope.freqs"):
        adapter.RoPEViTBackbone(**TINY_VIT, rope_type="axial", pretrained=str(path))
    # a published name is checked against the backbone before anything is downloaded
    with pytest.raises(ValueError, match=r"'rope_mixed_deit_base_patch16_LS' does not fit .*embed_dim: checkpoint 768"):
        adapter.RoPEViTBackbone(**TINY_VIT, rope_type="mixed", pretrained="rope_mixed_deit_base_patch16_LS")
    with pytest.raises(ValueError, match=r"rope_type: checkpoint 'mixed' vs backbone 'axial'"):
        adapter.RoPESwinBackbone(rope_type="axial", pretrained="swin_rope_mixed_tiny_patch4_window7_224")


# -- LazyConfigs -----------------------------------------------------------------------------------------------------
def _lazy_configs() -> list[Path]:
    return sorted(p for p in CONFIGS.rglob("*.py") if p.parent.name != "common" and not p.name.startswith("dino_"))


@pytest.mark.detectron2
def test_every_lazyconfig_loads_follows_the_recipe_and_its_backbone_builds(adapter):
    from detectron2.config import LazyConfig, instantiate
    from detectron2.modeling.backbone.vit import get_vit_lr_decay_rate

    from ropevit_dense import PRETRAINED

    configs = _lazy_configs()
    assert len(configs) == 17  # {mask, cascade} x {B, L} x {rope_mixed, rope_axial, rope_mixed_ape, ape} + tiny
    for path in configs:
        cfg = LazyConfig.load(str(path))
        net = cfg.model.backbone.net
        if path.parent.name != "tiny":
            size = path.stem.split("_vitdet_")[1][0]
            recipe = RECIPE[size]
            for key in ("embed_dim", "depth", "num_heads", "drop_path_rate"):
                assert net[key] == recipe[key], (path.name, key)
            assert tuple(net.global_block_indexes) == recipe["global_block_indexes"] and net.window_size == 14
            factor = cfg.optimizer.params.lr_factor_func
            assert factor.func is get_vit_lr_decay_rate
            assert factor.keywords == dict(num_layers=recipe["depth"], lr_decay_rate=recipe["lr_decay_rate"])
            assert cfg.model.backbone.square_pad == 1024 and cfg.train.max_iter == 184375
            # the named checkpoint is the backbone's architecture and position encoding
            spec = PRETRAINED[net.pretrained]
            for key, value in spec.backbone_kwargs().items():
                assert net[key] == value, (path.name, key)
            tag = "ape" if spec.rope_type is None else f"rope_{spec.rope_type}{'_ape' if spec.use_ape else ''}"
            assert path.stem.split(f"_vitdet_{size}_")[1] == f"{tag}_100ep", path.name
        assert cfg.optimizer.params.overrides == {"pos_embed": {"weight_decay": 0.0}, "freqs": {"weight_decay": 0.0}}
        # build a narrow copy (4 channels per head): same depth, windows, position encoding and pyramid
        net.update(pretrained=None, embed_dim=4 * net.num_heads)
        backbone = instantiate(cfg.model.backbone)
        assert isinstance(backbone, adapter.RoPEViTDetBackbone) and backbone.net.depth == net.depth
        assert backbone.net.rope_type == net.rope_type and (backbone.net.pos_embed is not None) == net.use_ape
        assert {k: v.stride for k, v in backbone.output_shape().items()} == {
            "p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64}
        assert backbone.padding_constraints == {"size_divisibility": 64,
                                                "square_size": cfg.model.backbone.square_pad}


@pytest.mark.detectron2
def test_cascade_model_and_layer_decay_of_a_full_config(adapter):
    from detectron2.config import LazyConfig, instantiate
    from detectron2.modeling.roi_heads import CascadeROIHeads
    from detectron2.solver.build import get_default_optimizer_params

    from ropevit_dense.backbones.lr_decay import vit_lr_scale

    cfg = LazyConfig.load(str(CONFIGS / "cascade_mask_rcnn_vitdet_b_rope_mixed_100ep.py"))
    cfg.model.backbone.net.update(pretrained=None, embed_dim=48)
    model = instantiate(cfg.model)
    assert isinstance(model.roi_heads, CascadeROIHeads) and model.roi_heads.num_cascade_stages == 3
    assert [p.box2box_transform.weights for p in model.roi_heads.box_predictor] == [
        (10, 10, 5, 5), (20, 20, 10, 10), (30, 30, 15, 15)]
    # detectron2's layer ids and ours agree on every parameter; RoPE-Mixed frequencies follow their block
    d2_rate = cfg.optimizer.params.lr_factor_func
    ours = partial(vit_lr_scale, depth=12, decay_rate=0.7, backbone_prefix="backbone.net.")
    names = [n for n, _ in model.named_parameters()]
    assert any(n.endswith("blocks.3.attn.rope.freqs") for n in names)
    for name in names:
        assert math.isclose(d2_rate(name), ours(name)), name
    groups = get_default_optimizer_params(model, base_lr=1e-4, weight_decay=0.1, weight_decay_norm=0.0,
                                          overrides=dict(cfg.optimizer.params.overrides),
                                          lr_factor_func=d2_rate)
    freqs = {id(b.attn.rope.freqs): i for i, b in enumerate(model.backbone.net.blocks)}
    seen = 0
    for group in groups:
        for p in group["params"]:
            if id(p) in freqs:
                seen += 1
                assert group["weight_decay"] == 0.0
                assert math.isclose(group["lr"], 1e-4 * 0.7 ** (12 - freqs[id(p)]))
    assert seen == 12


@pytest.mark.slow
@pytest.mark.detectron2
def test_every_lazyconfig_backbone_builds_at_full_size(adapter):
    from detectron2.config import LazyConfig, instantiate

    for path in _lazy_configs():
        cfg = LazyConfig.load(str(path))
        cfg.model.backbone.net.pretrained = None
        backbone = instantiate(cfg.model.backbone)
        assert backbone.net.embed_dim == cfg.model.backbone.net.embed_dim, path.name


@pytest.mark.detectron2
def test_dino_detrex_config_parses_and_its_backbone_builds(adapter):
    from detectron2.config import instantiate

    from ropevit_dense import PRETRAINED

    source = DINO_CONFIG.read_text()
    tree = ast.parse(source, filename=str(DINO_CONFIG))
    compile(tree, str(DINO_CONFIG), "exec")
    imports = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    modules = {n.module if isinstance(n, ast.ImportFrom) else n.names[0].name for n in imports}
    assert "detrex.config" in modules and "ropevit_dense.adapters.detectron2" in modules
    # evaluate the backbone and neck assignments with the config's own imports, all but detrex's
    namespace: dict = {}
    framework_free = [n for n in imports if not (isinstance(n, ast.ImportFrom) and n.module.startswith("detrex"))]
    exec(compile(ast.Module(body=framework_free, type_ignores=[]), str(DINO_CONFIG), "exec"), namespace)
    wanted = {"model.backbone", "model.neck.input_shapes", "model.neck.in_features",
              "optimizer.params.lr_factor_func", "optimizer.params.overrides"}
    assigned = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) in wanted:
            assigned[ast.unparse(node.targets[0])] = eval(compile(ast.Expression(node.value), str(DINO_CONFIG),
                                                                  "eval"), namespace)
    assert set(assigned) == wanted
    assert assigned["optimizer.params.overrides"] == {"pos_embed": {"weight_decay": 0.0},
                                                      "freqs": {"weight_decay": 0.0}}
    backbone_cfg = assigned["model.backbone"]
    net = backbone_cfg.net
    spec = PRETRAINED[net.pretrained]
    assert all(net[k] == v for k, v in spec.backbone_kwargs().items())
    assert tuple(net.global_block_indexes) == (2, 5, 8, 11) and net.window_size == 14
    net.update(pretrained=None, embed_dim=48)
    backbone = instantiate(backbone_cfg)
    shapes = backbone.output_shape()
    assert list(shapes) == assigned["model.neck.in_features"] == ["p3", "p4", "p5", "p6"]
    assert {k: v.channels for k, v in shapes.items()} == {
        k: v.channels for k, v in assigned["model.neck.input_shapes"].items()}
    assert assigned["optimizer.params.lr_factor_func"]("backbone.net.blocks.0.mlp.fc1.weight") == 0.1
    assert assigned["optimizer.params.lr_factor_func"]("transformer.encoder.layers.0.weight") == 1.0
    with torch.no_grad():
        feats = backbone(torch.randn(1, 3, 75, 101))  # DINO pads without constraints: any size runs
    assert [f.shape[1] for f in feats.values()] == [256] * 4


@pytest.mark.detectron2
def test_dino_config_loads_with_detrex(adapter):
    pytest.importorskip("detrex", reason="detrex is not installed (optional: DINO configs only)")
    from detectron2.config import LazyConfig, instantiate

    cfg = LazyConfig.load(str(DINO_CONFIG))
    cfg.model.backbone.net.pretrained = None
    assert isinstance(instantiate(cfg.model.backbone), adapter.RoPEViTDetBackbone)


# -- checkpoints and training ----------------------------------------------------------------------------------------
@pytest.mark.detectron2
def test_detection_checkpointer_round_trip(adapter, tmp_path):
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import LazyConfig, instantiate

    cfg = LazyConfig.load(str(TINY_CONFIG))
    torch.manual_seed(0)
    model = instantiate(cfg.model).eval()
    DetectionCheckpointer(model, save_dir=str(tmp_path)).save("model_final", iteration=7)
    torch.manual_seed(1)
    other = instantiate(cfg.model).eval()
    assert not torch.equal(other.backbone.net.blocks[0].attn.qkv.weight, model.backbone.net.blocks[0].attn.qkv.weight)
    extra = DetectionCheckpointer(other).load(str(tmp_path / "model_final.pth"))
    assert extra["iteration"] == 7
    reference = model.state_dict()
    assert set(other.state_dict()) == set(reference)
    for k, v in other.state_dict().items():
        assert torch.equal(v, reference[k]), k
    image = [{"image": torch.randint(0, 255, (3, 75, 101)).float(), "height": 75, "width": 101}]
    with torch.no_grad():
        a, b = model(image)[0]["instances"], other(image)[0]["instances"]
    assert torch.equal(a.pred_boxes.tensor, b.pred_boxes.tensor) and torch.equal(a.scores, b.scores)


@pytest.mark.detectron2
def test_tiny_mask_rcnn_trains_resumes_and_coco_evaluates(adapter, tiny_coco, tmp_path):
    tool = _tool()
    out = tmp_path / "run"
    datasets = []
    for split in ("train", "val"):
        datasets += ["--coco-dataset", f"tiny_coco_{split}", str(tiny_coco / "annotations" / f"instances_{split}.json"),
                     str(tiny_coco / split)]
    args = ["--config-file", str(TINY_CONFIG), *datasets]
    overrides = [f"train.output_dir={out}", "model.roi_heads.box_predictor.test_score_thresh=0.0", "train.log_period=1"]
    parser = tool.build_parser()  # flags first: everything after the first a.b=c is an override
    assert tool.main(parser.parse_args([*args, *overrides, "train.max_iter=2", "train.eval_period=2"])) is None
    assert (out / "model_final.pth").is_file() and (out / "last_checkpoint").is_file()
    logged = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    during = next(entry for entry in reversed(logged) if "bbox/AP" in entry)

    with pytest.raises(FileExistsError, match="already holds checkpoints: pass --resume"):
        tool.main(parser.parse_args([*args, *overrides, "train.max_iter=2"]))

    results = tool.main(parser.parse_args([*args, "--eval-only", *overrides,
                                           f"train.init_checkpoint={out / 'model_final.pth'}"]))
    for task in ("bbox", "segm"):
        ap = results[task]["AP"]
        assert math.isfinite(ap) and 0.0 <= ap <= 100.0, (task, ap)
        # the reloaded checkpoint reproduces the evaluation at the end of training
        assert math.isclose(ap, during[f"{task}/AP"], rel_tol=1e-6, abs_tol=1e-9), task

    tool.main(parser.parse_args([*args, "--resume", *overrides, "train.max_iter=3", "train.eval_period=0"]))
    final = torch.load(out / "model_final.pth", map_location="cpu", weights_only=True)  # torch's safe unpickler
    assert final["iteration"] == 2
    # continued at iteration 2 from the checkpoint of iteration 1: the resumed run logged iteration 2 only
    resumed = (out / "metrics.json").read_text().splitlines()[len(logged):]
    assert [json.loads(line)["iteration"] for line in resumed] == [2]


@pytest.mark.detectron2
def test_entry_point_rejects_bad_paths(adapter, tmp_path):
    tool = _tool()
    parser = tool.build_parser()
    with pytest.raises(FileNotFoundError, match="config file not found: '.*missing.py'"):
        tool.main(parser.parse_args(["--config-file", str(tmp_path / "missing.py")]))
    with pytest.raises(FileNotFoundError, match="annotation file not found"):
        tool.main(parser.parse_args(["--config-file", str(TINY_CONFIG), "--coco-dataset", "x", "nope.json",
                                     str(tmp_path)]))
