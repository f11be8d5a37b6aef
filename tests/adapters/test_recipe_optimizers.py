"""The optimizer groups of each full-size recipe config against its original's optimizer code.

Each table row is a real parameter of the config's model with the learning rate and weight decay that the
original code gives the same parameter, worked out by hand from that code (file and line in the row's comment;
commits: detectron2 02b5c4e, detrex e244e6c, unilm 768a3c8, Mask2Former 9b0651c). Rows marked "RECIPES F" are the
project's decision for parameters the originals do not have (RoPE frequencies: no weight decay, their block's lr).
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("mmdet")
pytest.importorskip("mmseg")

ROOT = Path(__file__).resolve().parents[2]
DET = ROOT / "configs" / "detection" / "mmdet"
SEG = ROOT / "configs" / "segmentation" / "mmseg"

D2 = "detectron2 solver/build.py"  # get_default_optimizer_params, as detrex calls it
DX = "detrex projects/dino/configs/dino-vitdet/dino_vitdet_base_4scale_12ep.py"


def _groups(path: Path, scope: str):
    """``lookup(parameter name) -> (lr, weight_decay)`` from the config's own model and optim_wrapper."""
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope
    from mmengine.utils import import_modules_from_strings

    cfg = Config.fromfile(str(path))
    import_modules_from_strings(**cfg.custom_imports)
    cfg.model.backbone.init_cfg = None
    init_default_scope(scope)
    if scope == "mmdet":
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    model = MODELS.build(cfg.model)
    wrapper = dict(cfg.optim_wrapper)
    if wrapper["type"] == "AmpOptimWrapper":  # needs a GPU; the parameter groups do not depend on it
        wrapper["type"] = "OptimWrapper"
        wrapper.pop("loss_scale", None)
    groups = {id(g["params"][0]): g for g in build_optim_wrapper(model, wrapper).optimizer.param_groups}
    assert all(len(g["params"]) == 1 for g in groups.values())
    named = dict(model.named_parameters())
    assert {id(p) for p in named.values()} == set(groups), "every trainable parameter is in exactly one group"
    return lambda name: (groups[id(named[name])]["lr"], groups[id(named[name])]["weight_decay"])


def _check(lookup, table) -> None:
    wrong = []
    for name, lr, wd in table:
        got = lookup(name)
        if got != pytest.approx((lr, wd), rel=1e-9, abs=0.0):
            wrong.append(f"{name}: got lr={got[0]:.6g} wd={got[1]:.6g}, original lr={lr:.6g} wd={wd:.6g}")
    assert not wrong, "\n".join(wrong)


# -- A. DINO-ViTDet 12 ep (detrex): AdamW lr 1e-4, weight decay 1e-4 ----------------------------------------------
# detrex: optimizer.lr = 1e-4, weight_decay = 1e-4, lr_factor_func = 0.1 if "backbone" in name ({DX} L37-40);
# params = get_default_optimizer_params(base_lr, weight_decay_norm=0.0) (detrex configs/common/optim.py L18-28).
BB, HEAD, WD = 1e-5, 1e-4, 1e-4
DINO_VITDET_B = [
    ("backbone.patch_embed.proj.weight", BB, WD),  # D2 utils.py L178 nn.Conv2d; build.py L227 (default wd)
    ("backbone.patch_embed.proj.bias", BB, WD),  # build.py L194-195: no bias override without weight_decay_bias
    ("backbone.pos_embed", BB, WD),  # D2 vit.py L301 nn.Parameter of the ViT module, not a norm: decays
    ("backbone.blocks.3.attn.qkv.weight", BB, WD),  # D2 vit.py L52 nn.Linear; build.py L230-231 lr x0.1
    ("backbone.blocks.3.attn.qkv.bias", BB, WD),  # build.py L194-195
    ("backbone.blocks.3.norm1.weight", BB, 0.0),  # D2 vit.py L181 nn.LayerNorm; build.py L213, L228-229
    ("backbone.blocks.3.norm2.bias", BB, 0.0),  # D2 vit.py L194; build.py L228-229
    ("backbone.blocks.3.gamma_1", BB, WD),  # LayerScale (DeiT-III) lives in the block, not in a norm: build.py L227
    ("backbone.blocks.11.mlp.fc2.weight", BB, WD),  # build.py L227, L230-231
    ("backbone.blocks.3.attn.rope.freqs", BB, 0.0),  # RECIPES F (no such parameter in detrex)
    # the simple pyramid is model.backbone in detrex (dino_vitdet.py L15), so x0.1 ...
    ("neck.0.levels.0.resample.weight", BB, WD),  # D2 vit.py L421 ConvTranspose2d; build.py L230-231
    ("neck.0.levels.0.lateral.weight", BB, WD),  # D2 vit.py L432-437 Conv2d (bias=False, L409)
    # ... and its norm="LN" is detectron2.layers.LayerNorm (batch_norm.py L195, L333: an nn.Module), not in
    # build.py's norm list (L203-215): it decays
    ("neck.0.levels.0.lateral_norm.weight", BB, WD),
    ("neck.0.levels.2.output_norm.bias", BB, WD),
    ("neck.1.convs.0.conv.weight", HEAD, WD),  # detrex ChannelMapper conv (models/dino_r50.py L37-47)
    ("neck.1.convs.0.gn.weight", HEAD, 0.0),  # nn.GroupNorm (dino_r50.py L47); build.py L209, L228-229
    ("level_embed", HEAD, WD),  # detrex dino_transformer.py L265 nn.Parameter
    ("query_embedding.weight", HEAD, WD),  # detrex dino_transformer.py L268 nn.Embedding: no special case
    ("memory_trans_norm.weight", HEAD, 0.0),  # detrex dino_transformer.py L270 enc_output_norm nn.LayerNorm
    ("dn_query_generator.label_embedding.weight", HEAD, WD),  # detrex dino.py L105 label_enc nn.Embedding
    ("bbox_head.cls_branches.0.weight", HEAD, WD),  # detrex dino.py L96 class_embed nn.Linear
    ("bbox_head.cls_branches.0.bias", HEAD, WD),  # build.py L194-195
    ("encoder.layers.0.self_attn.sampling_offsets.weight", HEAD, WD),
    ("encoder.layers.0.norms.0.weight", HEAD, 0.0),  # nn.LayerNorm in detrex's encoder layers
    ("decoder.norm.weight", HEAD, 0.0),  # detrex dino_transformer.py L158 nn.LayerNorm
]
# detectron2 ViT's decomposed relative position tables (vit.py L58-59): parameters of Attention, they decay
VITDET_RELPOS = [("backbone.blocks.2.attn.rel_pos_h", BB, WD), ("backbone.blocks.3.attn.rel_pos_w", BB, WD)]


def test_dino_vitdet_b_matches_detrex():
    lookup = _groups(DET / "dino-4scale_ropevit-b16-mixed-ape_8xb2-90k_coco.py", "mmdet")
    _check(lookup, DINO_VITDET_B)


def test_dino_vitdet_baseline_relative_positions_match_detrex():
    rows = [r for r in DINO_VITDET_B if "rope" not in r[0]] + VITDET_RELPOS
    _check(_groups(DET / "dino-4scale_ropevit-b16-ape-relpos_8xb2-90k_coco.py", "mmdet"), rows)


@pytest.mark.slow
def test_dino_vitdet_l_matches_detrex():
    rows = [(n.replace("blocks.11.", "blocks.23."), lr, wd) for n, lr, wd in DINO_VITDET_B if "pos_embed" not in n]
    _check(_groups(DET / "dino-4scale_ropevit-l16-mixed_8xb2-90k_coco.py", "mmdet"), rows)


# -- B. DINO-Swin 12 ep (detrex, detectron2's SwinTransformer): same optimizer code as A --------------------------
DINO_SWIN_T = [
    ("backbone.patch_embed.proj.weight", BB, WD),  # build.py L227, L230-231
    ("backbone.patch_embed.norm.weight", BB, 0.0),  # D2 swin.py L487 nn.LayerNorm; build.py L228-229
    ("backbone.layers.2.blocks.1.attn.qkv.weight", BB, WD),
    ("backbone.layers.2.blocks.1.attn.relative_position_bias_table", BB, WD),  # D2 swin.py L112 nn.Parameter
    ("backbone.layers.2.blocks.1.attn.rope.freqs", BB, 0.0),  # RECIPES F
    ("backbone.layers.2.blocks.1.norm1.weight", BB, 0.0),  # D2 swin.py L220
    ("backbone.layers.0.downsample.norm.weight", BB, 0.0),  # D2 swin.py L320
    ("backbone.layers.0.downsample.reduction.weight", BB, WD),  # D2 swin.py L319
    ("backbone.norm3.weight", BB, 0.0),  # D2 swin.py L624 output norms
    ("neck.convs.0.conv.weight", HEAD, WD),  # detrex ChannelMapper
    ("neck.convs.0.gn.weight", HEAD, 0.0),
    ("neck.extra_convs.0.conv.weight", HEAD, WD),  # detrex ChannelMapper's 4th level (3x3 stride-2 conv)
    ("query_embedding.weight", HEAD, WD),
    ("memory_trans_norm.weight", HEAD, 0.0),
    ("bbox_head.cls_branches.0.weight", HEAD, WD),
]


def test_dino_swin_t_matches_detrex():
    _check(_groups(DET / "dino-4scale_ropeswin-t-p4-w7-mixed-rpb_8xb2-90k_coco.py", "mmdet"), DINO_SWIN_T)


# -- C. UperNet, BEiT v2 recipe: AdamW lr 5e-5, weight decay 0.05, layer decay 0.75 over 12 blocks ---------------
# unilm beit2/semantic_segmentation/mmcv_custom/layer_decay_optimizer_constructor.py (BEIT below):
# L35 num_layers = 12 + 2; L6-15 layer ids: backbone.cls_token / pos_embed / patch_embed 0, backbone.blocks.i i + 1,
# the rest 13; L54 lr scale 0.75 ** (14 - id - 1); L43-48 no weight decay for 1-D parameters and *.bias (the
# ('pos_embed', 'cls_token') test on L43 compares bare names with 'backbone.'-prefixed ones: it never matches).
LR_B, WD_B = 5e-5, 0.05


def _beit(layer_id: int) -> float:
    return LR_B * 0.75 ** (14 - layer_id - 1)


UPERNET_B = [
    ("backbone.cls_token", _beit(0), WD_B),  # L7-8 id 0; (1, 1, C), L43 name test never fires: decays
    ("backbone.pos_embed", _beit(0), WD_B),  # L7-8 id 0; 3-D: decays
    ("backbone.patch_embed.proj.weight", _beit(0), WD_B),  # L9-10
    ("backbone.patch_embed.proj.bias", _beit(0), 0.0),  # L43 *.bias
    ("backbone.blocks.3.attn.qkv.weight", _beit(4), WD_B),  # L11-13
    ("backbone.blocks.3.attn.qkv.bias", _beit(4), 0.0),
    ("backbone.blocks.3.gamma_1", _beit(4), 0.0),  # LayerScale (beit.py L168): 1-D
    ("backbone.blocks.3.norm1.weight", _beit(4), 0.0),  # 1-D
    ("backbone.blocks.3.attn.rope.freqs", _beit(4), 0.0),  # RECIPES F (BEiT would decay a 3-D tensor)
    ("backbone.blocks.11.mlp.fc2.weight", _beit(12), WD_B),
    # BEiT's fpn1-4 sit in its backbone (beit.py L337-350) but match no rule above: id 13, scale 1
    ("neck.upsample_4x.0.weight", _beit(13), WD_B),  # ConvTranspose2d, 4-D
    ("neck.upsample_4x.1.weight", _beit(13), 0.0),  # SyncBatchNorm (beit.py L339), 1-D
    ("decode_head.bottleneck.conv.weight", _beit(13), WD_B),
    ("decode_head.bottleneck.bn.weight", _beit(13), 0.0),
    ("decode_head.conv_seg.weight", _beit(13), WD_B),
    ("decode_head.conv_seg.bias", _beit(13), 0.0),
    ("auxiliary_head.convs.0.conv.weight", _beit(13), WD_B),
]


def test_upernet_b_matches_beit():
    _check(_groups(SEG / "upernet_ropevit-b16-mixed-ape_8xb2-amp-160k_ade20k-512x512.py", "mmseg"), UPERNET_B)


@pytest.mark.slow
def test_upernet_l_matches_beit():
    """ViT-L: lr 4e-5, layer decay 0.9 over 24 blocks (upernet_beit_large_24_512_slide_160k_ade20k.py L47-49)."""

    def lr(layer_id: int) -> float:
        return 4e-5 * 0.9 ** (26 - layer_id - 1)

    rows = [("backbone.cls_token", lr(0), WD_B), ("backbone.blocks.3.attn.qkv.weight", lr(4), WD_B),
            ("backbone.blocks.23.attn.rope.freqs", lr(24), 0.0), ("backbone.blocks.23.gamma_2", lr(24), 0.0),
            ("decode_head.conv_seg.weight", lr(25), WD_B)]
    _check(_groups(SEG / "upernet_ropevit-l16-mixed_8xb2-amp-160k_ade20k-512x512.py", "mmseg"), rows)


# -- D. Mask2Former Swin semantic 160k: AdamW lr 1e-4, weight decay 0.05 ------------------------------------------
# Mask2Former train_net.py build_optimizer (M2F below): L218-219 lr x BACKBONE_MULTIPLIER (0.1, config.py L27) for
# module names containing "backbone"; L220-225 weight decay 0 for relative_position_bias_table /
# absolute_pos_embed; L226-227 WEIGHT_DECAY_NORM (detectron2 default 0.0) for torch norms; L228-229
# WEIGHT_DECAY_EMBED (0.0, config.py L24) for nn.Embedding; otherwise 0.05 (Base-ADE20K yaml WEIGHT_DECAY).
LR_M, BB_M, WD_M = 1e-4, 1e-5, 0.05
M2F_SWIN_T = [
    ("backbone.patch_embed.proj.weight", BB_M, WD_M),  # L218-219
    ("backbone.patch_embed.norm.weight", BB_M, 0.0),  # M2F swin.py L475 nn.LayerNorm; L226-227
    ("backbone.layers.2.blocks.1.attn.qkv.weight", BB_M, WD_M),
    ("backbone.layers.2.blocks.1.attn.qkv.bias", BB_M, WD_M),  # no bias rule in build_optimizer
    ("backbone.layers.2.blocks.1.attn.relative_position_bias_table", BB_M, 0.0),  # L220-225
    ("backbone.layers.2.blocks.1.attn.rope.freqs", BB_M, 0.0),  # RECIPES F
    ("backbone.layers.2.blocks.1.norm2.weight", BB_M, 0.0),
    ("backbone.layers.1.downsample.norm.weight", BB_M, 0.0),  # M2F swin.py L309
    ("backbone.layers.1.downsample.reduction.weight", BB_M, WD_M),  # M2F swin.py L308
    ("backbone.norm3.weight", BB_M, 0.0),  # M2F swin.py L612
    ("decode_head.pixel_decoder.input_convs.0.conv.weight", LR_M, WD_M),  # msdeformattn.py L217 nn.Conv2d
    ("decode_head.pixel_decoder.input_convs.0.gn.weight", LR_M, 0.0),  # msdeformattn.py L218 nn.GroupNorm
    # Mask2Former's level embedding is a bare nn.Parameter (msdeformattn.py L39): it decays
    ("decode_head.pixel_decoder.level_encoding.weight", LR_M, WD_M),
    ("decode_head.pixel_decoder.encoder.layers.0.self_attn.value_proj.weight", LR_M, WD_M),
    ("decode_head.pixel_decoder.encoder.layers.0.norms.1.weight", LR_M, 0.0),  # msdeformattn.py L102-110
    ("decode_head.pixel_decoder.lateral_convs.0.gn.weight", LR_M, 0.0),  # get_norm("GN") -> nn.GroupNorm
    ("decode_head.pixel_decoder.mask_feature.weight", LR_M, WD_M),  # msdeformattn.py L245
    ("decode_head.pixel_decoder.mask_feature.bias", LR_M, WD_M),
    # mask2former_transformer_decoder.py L316-322: nn.Embedding -> L228-229
    ("decode_head.query_feat.weight", LR_M, 0.0),
    ("decode_head.query_embed.weight", LR_M, 0.0),
    ("decode_head.level_embed.weight", LR_M, 0.0),
    ("decode_head.transformer_decoder.layers.0.cross_attn.attn.in_proj_weight", LR_M, WD_M),
    ("decode_head.transformer_decoder.layers.0.norms.2.weight", LR_M, 0.0),
    ("decode_head.transformer_decoder.post_norm.weight", LR_M, 0.0),  # L312 decoder_norm nn.LayerNorm
    ("decode_head.cls_embed.weight", LR_M, WD_M),  # L333 nn.Linear
    ("decode_head.cls_embed.bias", LR_M, WD_M),
    ("decode_head.mask_embed.0.weight", LR_M, WD_M),  # L334 MLP
]


def test_mask2former_swin_t_matches_mask2former():
    lookup = _groups(SEG / "mask2former_ropeswin-t-p4-w7-mixed-rpb_8xb2-amp-160k_ade20k-512x512.py", "mmseg")
    _check(lookup, M2F_SWIN_T)


@pytest.mark.slow
def test_mask2former_swin_b_matches_mask2former():
    rows = [(n.replace("layers.2.blocks.1.", "layers.2.blocks.17."), lr, wd) for n, lr, wd in M2F_SWIN_T]
    _check(_groups(SEG / "mask2former_ropeswin-b-p4-w7-mixed-rpb_8xb2-amp-160k_ade20k-512x512.py", "mmseg"), rows)
