"""DINOv3 and EVA-02 in RoPEViT against timm's own implementations (code we did not write), real sizes.

Every size of both families (DINOv3 S, S+, B, L; EVA-02 B, L; real widths and depths) with random weights:

* all-global layout: the timm model's state dict, converted by our loader, gives timm's patch tokens
  (``forward_intermediates``; with DINOv3's final norm) at three input sizes (square, non-square, and a grid larger
  than the 16 x 16 pretraining grid), in the family's pretrained position convention ('interpolate') and in the
  'extrapolate' option;
* ViTDet layout (timm has no windows), two statements: (1) a window as large as the grid, with the ViTDet global
  blocks, equals timm's global model run without its prefix tokens (a windowed backbone has none); (2) with every
  block windowed, each window's output equals timm's model without prefix tokens run on that window's image crop
  (EVA-02's APE is zero here, as ViTDet resizes it to the whole map, not to each window);
* the official layout (facebookresearch/dinov3, baaivision/EVA) and the timm layout of the same random model, read
  from files, load to identical weights and outputs (and timm's own converter reads the official file back to the
  timm model).

DINOv3 S, S+ and EVA-02 B run every comparison by default; DINOv3 S without q / v bias (timm's non-``qkvb`` file),
DINOv3 B and both L models (seconds to a minute per comparison on a loaded 2-core CPU) run one small global-layout
comparison by default and the rest with --run-slow.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
from family_checkpoints import MODELS, official_dinov3, official_eva02, timm_model, without_prefix

from ropevit_dense.backbones import RoPEViT
from ropevit_dense.checkpoints import load_pretrained

timm = pytest.importorskip("timm")

ATOL = 1e-4  # fp32; the same math in another order (SDPA vs SDPA on other layouts, fused vs separate qkv)
SIZES = {"dinov3": [(128, 128), (96, 176), (288, 288)], "eva02": [(112, 112), (98, 168), (252, 252)]}
SLOW = {"dinov3-s-nobias", "dinov3-b", "dinov3-l", "eva02-l"}
IDS = [pytest.param(i, marks=pytest.mark.slow) if i in SLOW else i for i in MODELS]


def _kind(model_id: str) -> str:
    return "eva02" if model_id.startswith("eva02") else "dinov3"


@pytest.fixture(scope="module", params=IDS)
def pair(request):
    """(id, random timm model, our RoPEViT loaded from its state dict)."""
    name, family, kwargs = MODELS[request.param]
    ref = timm_model(name, seed=len(request.param))
    ours = RoPEViT(family=family, **kwargs, out_indices=(kwargs["depth"] // 2 - 1, kwargs["depth"] - 1)).eval()
    report = load_pretrained(ours, ref.state_dict())
    assert report.ok and not report.missing, report
    return request.param, ref, ours


def _timm_maps(ref: torch.nn.Module, x: torch.Tensor, indices: tuple[int, ...], norm: bool) -> list[torch.Tensor]:
    with torch.no_grad():
        return ref.forward_intermediates(x, indices=list(indices), norm=norm, intermediates_only=True)


def _assert_close(got: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    assert got.shape == expected.shape, f"{what}: {tuple(got.shape)} vs {tuple(expected.shape)}"
    diff = (got - expected).abs().max().item()
    assert diff <= ATOL, f"{what}: max abs diff {diff:.2e}"


def test_global_layout_matches_timm(pair):
    model_id, ref, ours = pair
    g = torch.Generator().manual_seed(0)
    for h, w in SIZES[_kind(model_id)]:
        x = torch.randn(1, 3, h, w, generator=g)
        expected = _timm_maps(ref, x, ours.out_indices, norm=_kind(model_id) == "dinov3")
        with torch.no_grad():
            got = ours(x)
        for i, (a, b) in enumerate(zip(got, expected)):
            _assert_close(a, b, f"{model_id} {h}x{w} output {i}")


@pytest.mark.parametrize("model_id", sorted(SLOW))
def test_every_size_matches_timm_at_one_small_input(model_id):
    """The sizes whose full comparison is slow, in the default run too: real width and depth, random weights, the
    global layout in the pretrained convention at one small non-square input (a grid of 2 x 3 patches)."""
    name, family, kwargs = MODELS[model_id]
    ref = timm_model(name, seed=len(model_id))
    ours = RoPEViT(family=family, **kwargs, out_indices=(kwargs["depth"] - 1,)).eval()
    report = load_pretrained(ours, ref.state_dict())
    assert report.ok and not report.missing, report
    patch = 14 if _kind(model_id) == "eva02" else 16
    x = torch.randn(1, 3, 2 * patch, 3 * patch, generator=torch.Generator().manual_seed(0))
    expected = _timm_maps(ref, x, ours.out_indices, norm=_kind(model_id) == "dinov3")
    with torch.no_grad():
        got = ours(x)
    _assert_close(got[0], expected[0], f"{model_id} {tuple(x.shape[-2:])}")


def test_extrapolate_option_matches_timm(pair):
    """'extrapolate': EVA-02's integer coordinates are timm's grid without the reference rescale; DINOv3's centred
    coordinates with the step of the 16 x 16 pretraining grid are timm's normalised ones with periods x 16 / grid."""
    model_id, ref, ours = pair
    _, family, kwargs = MODELS[model_id]
    extra = RoPEViT(family=family, **kwargs, rope_position="extrapolate").eval()
    assert load_pretrained(extra, ref.state_dict()).ok
    g = torch.Generator().manual_seed(1)
    patch = ours.patch_size
    for side in (10, 18):
        other = copy.deepcopy(ref)
        if _kind(model_id) == "eva02":
            other.rope.ref_feat_shape = None
        else:
            other.rope.periods.mul_(16 / side)
        x = torch.randn(1, 3, side * patch, side * patch, generator=g)
        expected = _timm_maps(other, x, ours.out_indices, norm=_kind(model_id) == "dinov3")
        with torch.no_grad():
            got = extra(x)
        _assert_close(got[-1], expected[-1], f"{model_id} extrapolate {side}x{side}")
        if side != 16:  # the convention matters: 'interpolate' differs off the pretraining grid
            with torch.no_grad():
                assert (ours(x)[-1] - got[-1]).abs().max() > 10 * ATOL


def _windowed(model_id: str, ref: torch.nn.Module, *, window: int, global_blocks: tuple[int, ...],
              zero_ape: bool = False) -> RoPEViT:
    _, family, kwargs = MODELS[model_id]
    model = RoPEViT(family=family, **kwargs, window_size=window, global_block_indexes=global_blocks).eval()
    sd = ref.state_dict()
    if zero_ape:
        sd = {**sd, "pos_embed": torch.zeros_like(sd["pos_embed"])}
    report = load_pretrained(model, sd)
    assert model.cls_token is None and model.register_tokens is None
    assert "cls_token" in report.dropped
    return model


def test_window_as_large_as_the_grid_equals_timm_without_prefix_tokens(pair):
    model_id, ref, _ = pair
    depth = MODELS[model_id][2]["depth"]
    global_blocks = tuple(range(depth // 4 - 1, depth, depth // 4))  # ViTDet: 2, 5, 8, 11 / 5, 11, 17, 23
    side = 8
    model = _windowed(model_id, ref, window=side, global_blocks=global_blocks)
    bare = without_prefix(ref)
    x = torch.randn(2, 3, side * model.patch_size, side * model.patch_size, generator=torch.Generator().manual_seed(2))
    expected = _timm_maps(bare, x, (depth - 1,), norm=_kind(model_id) == "dinov3")[0]
    with torch.no_grad():
        got = model(x)[0]
    _assert_close(got, expected, f"{model_id} window = grid")


def test_window_blocks_are_the_model_run_on_each_window(pair):
    model_id, ref, _ = pair
    depth = MODELS[model_id][2]["depth"]
    w = 4
    zero_ape = _kind(model_id) == "eva02"
    model = _windowed(model_id, ref, window=w, global_blocks=(), zero_ape=zero_ape)
    bare = without_prefix(ref)
    if zero_ape:
        bare.pos_embed.data.zero_()
    p = model.patch_size
    x = torch.randn(1, 3, 2 * w * p, 3 * w * p, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        got = model(x)[0]
    for r in range(2):
        for c in range(3):
            crop = x[..., r * w * p:(r + 1) * w * p, c * w * p:(c + 1) * w * p]
            expected = _timm_maps(bare, crop, (depth - 1,), norm=_kind(model_id) == "dinov3")[0]
            _assert_close(got[..., r * w:(r + 1) * w, c * w:(c + 1) * w], expected, f"{model_id} window ({r}, {c})")


def test_official_and_timm_files_give_identical_models(pair, tmp_path):
    from safetensors.torch import save_file
    from timm.models.eva import checkpoint_filter_fn

    model_id, ref, ours = pair
    _, family, kwargs = MODELS[model_id]
    timm_sd = {k: v.detach().clone() for k, v in ref.state_dict().items() if k != "blocks.0.attn.k_bias"}
    if _kind(model_id) == "dinov3":
        official = official_dinov3(timm_sd, kwargs["embed_dim"] // kwargs["num_heads"], seed=4)
        if kwargs.get("qkv_bias") is False:  # the official files keep zero q / v biases that timm drops
            dim = kwargs["embed_dim"]
            for i in range(kwargs["depth"]):
                official[f"blocks.{i}.attn.qkv.bias"] = torch.cat((torch.zeros(dim), torch.randn(dim),
                                                                   torch.zeros(dim)))
        flat = official
    else:
        official = official_eva02(timm_sd)
        flat = official["module"]
    timm_path, official_path = tmp_path / "model.safetensors", tmp_path / "official.pth"
    save_file({k: v.contiguous() for k, v in timm_sd.items() if not k.endswith("k_bias")}, str(timm_path))
    torch.save(official, official_path)

    # timm's own converter reads our official-layout file back into the same timm model
    check = copy.deepcopy(ref)
    check.load_state_dict(checkpoint_filter_fn(dict(flat), check), strict=False)
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(check.state_dict()[k], v, msg=k, rtol=0, atol=0)

    models = []
    for path in (timm_path, official_path):
        model = RoPEViT(family=family, **kwargs, out_indices=ours.out_indices).eval()
        report = load_pretrained(model, path)
        assert report.ok and not report.missing, report
        models.append(model)
    a, b = (m.state_dict() for m in models)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    x = torch.randn(1, 3, 4 * ours.patch_size, 6 * ours.patch_size, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        for u, v in zip(models[0](x), models[1](x)):
            assert torch.equal(u, v)


def test_dinov3_periods_are_recomputed_and_checked(tmp_path):
    """The bf16-saved periods are not loaded (float32 ones are derived); periods of another setting are refused."""
    from ropevit_dense.checkpoints import CheckpointError

    name, family, kwargs = MODELS["dinov3-s"]
    ref = timm_model(name, seed=7)
    model = RoPEViT(family=family, **kwargs).eval()
    official = official_dinov3(ref.state_dict(), head_dim=64, seed=8)
    report = load_pretrained(model, official)
    assert "rope_embed.periods" in report.dropped
    assert model.rope.freqs.dtype == torch.float32
    torch.testing.assert_close(2 * math.pi / model.rope.freqs[1, 0, :16],
                               100.0 ** (torch.arange(16, dtype=torch.float32) / 16), rtol=1e-6, atol=0)
    official["rope_embed.periods"] = (official["rope_embed.periods"].float() * 1.5).to(torch.bfloat16)
    with pytest.raises(CheckpointError, match="rope_embed.periods"):
        load_pretrained(RoPEViT(family=family, **kwargs), official)
