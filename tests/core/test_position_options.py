"""Backbone options that reproduce the original dense recipes: window padding as ViTDet / Swin do it, ViTDet's
decomposed relative positions, the APE held at the fine-tuning grid, and EVA-02's interpolated window positions.

The oracles are mmdet's own ``SwinTransformer`` (installed with the toolkit) and, where detectron2 is installed,
detectron2's ViT; plus the definitions written out here."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ropevit_dense import RoPESwin, RoPEViT, load_pretrained
from ropevit_dense.layers import decomposed_rel_pos_bias
from ropevit_dense.rope import axial_frequencies, rope_table


# -- window padding ------------------------------------------------------------------------------------------------
def _mmdet_swin_from(ours: RoPESwin, depths, num_heads, embed_dim):
    """mmdet's SwinTransformer with our weights (converted by mmdet's own Microsoft-layout converter)."""
    mmdet_swin = pytest.importorskip("mmdet.models.backbones.swin")
    ref = mmdet_swin.SwinTransformer(embed_dims=embed_dim, depths=depths, num_heads=num_heads, window_size=7,
                                     out_indices=(0, 1, 2, 3), qkv_bias=True, drop_path_rate=0.0)
    ref.eval()  # mmdet's Swin overrides train() without returning the module
    sd = {k: v for k, v in ours.state_dict().items() if not k.startswith("norm")}
    converted = {k[len("backbone."):]: v for k, v in mmdet_swin.swin_converter(sd).items()}
    converted.update({k: v for k, v in ours.state_dict().items() if k.startswith("norm")})
    missing, unexpected = ref.load_state_dict(converted, strict=False)
    assert not unexpected and all(k.endswith("relative_position_index") for k in missing), (missing, unexpected)
    return ref


@pytest.mark.parametrize("hw", [(75, 101), (224, 224)])
def test_swin_zero_padding_equals_mmdet_swin(hw):
    """'zero' is the Swin of mmdet (and detectron2 / Mask2Former): padded tokens attend as keys, shifted windows
    are always rolled. At 75x101 the stages are 19x26, 10x13, 5x7 (one padded window) and 3x4."""
    kw = dict(embed_dim=32, depths=(2, 2, 2, 2), num_heads=(2, 4, 8, 16))
    torch.manual_seed(0)
    ours = RoPESwin(**kw, rope_type=None, use_rpb=True, window_padding="zero").eval()
    for p in ours.parameters():  # LayerNorms away from identity, so every path matters
        p.data.add_(0.05 * torch.randn_like(p))
    ref = _mmdet_swin_from(ours, kw["depths"], kw["num_heads"], kw["embed_dim"])
    x = torch.randn(2, 3, *hw)
    with torch.no_grad():
        got, want = ours(x), ref(x)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
        masked = RoPESwin(**kw, rope_type=None, use_rpb=True, window_padding="mask").eval()
        masked.load_state_dict(ours.state_dict())
        differs = [(a - b).abs().max().item() > 1e-3 for a, b in zip(masked(x), want)]
    # 'mask' differs wherever a window is padded (all stages at 75x101, as padding reaches every stage through the
    # residual stream) and where a stage fits in one window (7x7 at 224: no roll under 'mask')
    assert differs == ([True] * 4 if hw == (75, 101) else [False, False, False, True])


@pytest.mark.parametrize("rope_type", ["axial", "mixed"])
def test_vit_zero_padding_lets_padded_tokens_attend(rope_type):
    """Both modes agree when the grid tiles into windows; on a padded grid 'zero' equals attention over windows that
    hold zero tokens after the first norm (the definition, computed here for the first block), 'mask' does not."""
    torch.manual_seed(0)
    kw = dict(embed_dim=64, depth=2, num_heads=4, init_values=1.0, rope_type=rope_type, window_size=4,
              global_block_indexes=(1,))
    zero = RoPEViT(**kw, window_padding="zero").eval()
    mask = RoPEViT(**kw, window_padding="mask").eval()
    mask.load_state_dict(zero.state_dict())
    with torch.no_grad():
        tiled = torch.randn(1, 3, 128, 128)  # 8x8 tokens: 2x2 whole windows
        torch.testing.assert_close(zero(tiled)[0], mask(tiled)[0])
        x = torch.randn(1, 3, 96, 80)  # 6x5 tokens: padded to 8x8
        assert (zero(x)[0] - mask(x)[0]).abs().max() > 1e-3
        # the first block by definition: zero-pad after norm1, attend within windows without any mask
        blk = zero.blocks[0]
        tokens = zero.patch_embed(x)  # (1, 6, 5, C)
        y = F.pad(blk.norm1(tokens), (0, 0, 0, 3, 0, 2))  # (1, 8, 8, C)
        win = y.view(1, 2, 4, 2, 4, 64).permute(0, 1, 3, 2, 4, 5).reshape(4, 16, 64)
        table = next(iter(zero._rope_tables((6, 5), x.device)))
        attn = blk.attn(win, table).view(1, 2, 2, 4, 4, 64).permute(0, 1, 3, 2, 4, 5).reshape(1, 8, 8, 64)
        expected = tokens + attn[:, :6, :5]
        got = blk(tokens.reshape(1, 30, 64), (6, 5), table, None).view(1, 6, 5, 64)
        h = expected + blk.mlp(blk.norm2(expected))
        torch.testing.assert_close(got, h)


@pytest.mark.detectron2
def test_vit_zero_padding_and_rel_pos_equal_detectron2_vit():
    """APE + decomposed relative positions + zero-padded windows: the ViTDet backbone of detectron2, same weights,
    on a 6x9 token grid (windows of 4 padded; global tables sized for 8x8 and resampled)."""
    from detectron2.modeling.backbone.vit import ViT

    torch.manual_seed(0)
    ref = ViT(img_size=128, patch_size=16, embed_dim=64, depth=4, num_heads=4, drop_path_rate=0.0,
              norm_layer=functools.partial(nn.LayerNorm, eps=1e-6), use_abs_pos=True, use_rel_pos=True,
              window_size=4, window_block_indexes=(0, 2), pretrain_img_size=224).eval()
    for name, p in ref.named_parameters():
        if "rel_pos" in name or "pos_embed" in name:
            nn.init.trunc_normal_(p, std=0.2)
    ours = RoPEViT(embed_dim=64, depth=4, num_heads=4, init_values=None, rope_type=None, use_ape=True,
                   ape_antialias=False, use_rel_pos=True, rel_pos_img_size=128, window_size=4,
                   global_block_indexes=(1, 3), window_padding="zero").eval()
    report = load_pretrained(ours, ref.state_dict())
    assert report.ok, report
    x = torch.randn(2, 3, 96, 144)
    with torch.no_grad():
        torch.testing.assert_close(ours(x)[0], ref(x)["last_feat"], rtol=1e-4, atol=1e-4)


def test_bad_window_padding_is_named():
    with pytest.raises(ValueError, match="unknown window_padding 'pad'"):
        RoPEViT(embed_dim=64, depth=2, num_heads=4, window_size=4, window_padding="pad")
    with pytest.raises(ValueError, match="unknown window_padding 'none'"):
        RoPESwin(embed_dim=32, depths=(2,), num_heads=(2,), window_padding="none")


# -- decomposed relative positions -------------------------------------------------------------------------------
def test_decomposed_rel_pos_bias_is_the_definition():
    """bias[q, k] = q . Rh[qy - ky + H - 1] + q . Rw[qx - kx + W - 1], tables linearly resampled to 2H-1 / 2W-1."""
    torch.manual_seed(0)
    H, W, C = 3, 5, 8
    q = torch.randn(2, 3, H * W, C, dtype=torch.float64)
    rh, rw = torch.randn(7, C, dtype=torch.float64), torch.randn(7, C, dtype=torch.float64)  # sized for 4x4
    rh_r = F.interpolate(rh.T[None], size=2 * H - 1, mode="linear", align_corners=False)[0].T
    rw_r = F.interpolate(rw.T[None], size=2 * W - 1, mode="linear", align_corners=False)[0].T
    want = torch.zeros(2, 3, H * W, H * W, dtype=torch.float64)
    for i in range(H * W):
        for j in range(H * W):
            qy, qx, ky, kx = i // W, i % W, j // W, j % W
            want[:, :, i, j] = q[:, :, i] @ rh_r[qy - ky + H - 1] + q[:, :, i] @ rw_r[qx - kx + W - 1]
    torch.testing.assert_close(decomposed_rel_pos_bias(q, rh, rw, (H, W)), want)


def test_rel_pos_tables_zero_init_load_report_and_resize():
    torch.manual_seed(0)
    kw = dict(embed_dim=64, depth=2, num_heads=4, init_values=1.0, rope_type="mixed", window_size=4,
              global_block_indexes=(1,))
    plain = RoPEViT(**kw).eval()
    rel = RoPEViT(**kw, use_rel_pos=True, rel_pos_img_size=128).eval()
    assert rel.blocks[0].attn.rel_pos_h.shape == (7, 16) and rel.blocks[1].attn.rel_pos_w.shape == (15, 16)
    report = load_pretrained(rel, plain.state_dict())  # a checkpoint without tables: zero-initialised, reported
    assert report.ok and sorted(report.initialized) == sorted(
        f"blocks.{i}.attn.rel_pos_{a}" for i in (0, 1) for a in "hw")
    x = torch.randn(1, 3, 96, 80)
    with torch.no_grad():
        torch.testing.assert_close(rel(x)[0], plain(x)[0])  # zero tables: no change
        rel.blocks[1].attn.rel_pos_h.normal_()
        assert (rel(x)[0] - plain(x)[0]).abs().max() > 1e-3
    other = RoPEViT(**kw, use_rel_pos=True, rel_pos_img_size=256)  # 31-row global tables
    report = load_pretrained(other, rel.state_dict())
    assert report.ok and "blocks.1.attn.rel_pos_h (15, 16) -> (31, 16)" in report.resized
    with pytest.raises(ValueError, match="no entry for a cls token"):
        RoPEViT(embed_dim=64, depth=2, num_heads=4, use_rel_pos=True, use_cls_token=True)


# -- APE at the fine-tuning grid -----------------------------------------------------------------------------------
def test_ape_held_at_the_fine_tuning_grid():
    """ape_img_size=64 keeps a 4x4 table: a 14x14 pretrained table is resized to it once, on load; at 64x64 inputs
    the forward adds the table as it is, other inputs resize it from 4x4."""
    torch.manual_seed(0)
    src = RoPEViT(embed_dim=64, depth=2, num_heads=4, rope_type=None, use_ape=True)
    dst = RoPEViT(embed_dim=64, depth=2, num_heads=4, rope_type=None, use_ape=True, ape_img_size=64)
    assert dst.pos_embed.shape == (1, 16, 64)
    report = load_pretrained(dst, src.state_dict())
    assert report.ok and report.resized == ["pos_embed (1, 196, 64) -> (1, 16, 64)"]
    assert dst._abs_pos((4, 4)) is dst.pos_embed
    resized = F.interpolate(dst.pos_embed.detach().reshape(1, 4, 4, 64).permute(0, 3, 1, 2), size=(6, 3),
                            mode="bicubic", align_corners=False, antialias=True).permute(0, 2, 3, 1).reshape(1, 18, 64)
    torch.testing.assert_close(dst._abs_pos((6, 3)), resized)
    with pytest.raises(ValueError, match="ape_img_size must be None or an image side"):
        RoPEViT(embed_dim=64, depth=2, num_heads=4, use_ape=True, ape_img_size=8)


# -- EVA-02's interpolated positions -------------------------------------------------------------------------------
def test_interpolate_mode_maps_each_window_onto_the_pretraining_grid():
    """EVA-02 (``VisionRotaryEmbeddingFast(pt, ft)``): positions ``t = arange(ft) / ft * pt``, with ``ft`` the window
    in window blocks and the whole grid in global blocks; pt is the pretraining grid (here 224 / 16 = 14)."""
    model = RoPEViT(embed_dim=64, depth=2, num_heads=4, rope_type="axial", rope_position="interpolate",
                    window_size=8, global_block_indexes=(1,))
    win_table, glob_table = list(model._rope_tables((40, 24), torch.device("cpu")))

    def eva(ft_h: int, ft_w: int) -> torch.Tensor:
        ty = torch.arange(ft_h) / ft_h * 14
        tx = torch.arange(ft_w) / ft_w * 14
        return torch.stack((tx.repeat(ft_h), ty.repeat_interleave(ft_w)), dim=-1)

    freqs = axial_frequencies(16, theta=100.0)
    torch.testing.assert_close(win_table.sin, rope_table(freqs, eva(8, 8)).sin)
    torch.testing.assert_close(glob_table.sin, rope_table(freqs, eva(40, 24)).sin)
