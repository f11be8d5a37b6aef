"""RoPEOptimWrapperConstructor on tiny models: the rules, layer-wise decay of RoPE-Swin, bad configurations."""

from __future__ import annotations

import pytest
from torch import nn

pytest.importorskip("mmengine")

from ropevit_dense import RoPESwin, RoPEViT  # noqa: E402
from ropevit_dense.backbones.lr_decay import swin_layer_id  # noqa: E402


def _model(backbone: nn.Module) -> nn.Module:
    model = nn.Module()
    model.backbone = backbone
    model.head = nn.Sequential(nn.Conv2d(8, 8, 1), nn.GroupNorm(2, 8), nn.Embedding(3, 8))
    return model


def _tiny_swin() -> RoPESwin:
    return RoPESwin(embed_dim=16, depths=(2, 3), num_heads=(1, 2), window_size=4, rope_type="mixed", use_rpb=True)


def _groups(model: nn.Module, paramwise_cfg: dict, lr: float = 1.0, wd: float = 0.1):
    from ropevit_dense.adapters.optim import RoPEOptimWrapperConstructor

    ctor = RoPEOptimWrapperConstructor(
        dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=lr, weight_decay=wd)), paramwise_cfg)
    groups = {id(g["params"][0]): g for g in ctor(model).optimizer.param_groups}
    named = dict(model.named_parameters())
    return lambda name: (groups[id(named[name])]["lr"], groups[id(named[name])]["weight_decay"])


@pytest.mark.parametrize("rule", ["mmengine", "mask2former"])
def test_swin_layer_decay_scales_every_block(rule):
    """5 blocks: patch embedding id 0, blocks 1..5 across stages, stage 0's patch merging shares block 2's id,
    output norms and heads 6 (scale 1). Before RoPE-Swin had layer ids, only the patch embedding moved."""
    model = _model(_tiny_swin())
    extra = dict(backbone_multiplier=1.0) if rule == "mask2former" else {}
    group = _groups(model, dict(rule=rule, layer_decay_rate=0.5, num_layers=5, **extra))
    expected = {
        "backbone.patch_embed.proj.weight": 0.5 ** 6,
        "backbone.layers.0.blocks.0.attn.qkv.weight": 0.5 ** 5,
        "backbone.layers.0.blocks.1.attn.rope.freqs": 0.5 ** 4,
        "backbone.layers.0.downsample.reduction.weight": 0.5 ** 4,
        "backbone.layers.1.blocks.0.attn.relative_position_bias_table": 0.5 ** 3,
        "backbone.layers.1.blocks.2.mlp.fc1.weight": 0.5 ** 1,
        "backbone.norm1.weight": 1.0,
        "head.0.weight": 1.0,
    }
    for name, scale in expected.items():
        assert group(name)[0] == pytest.approx(scale), name


def test_swin_layer_ids_follow_the_block_order():
    depths = (2, 2, 6, 2)
    ids = [swin_layer_id(f"backbone.layers.{s}.blocks.{b}.attn.qkv.weight", depths)
           for s, d in enumerate(depths) for b in range(d)]
    assert ids == list(range(1, 13))
    assert swin_layer_id("backbone.layers.2.downsample.norm.weight", depths) == 10
    assert swin_layer_id("backbone.patch_embed.norm.bias", depths) == 0
    assert swin_layer_id("decode_head.conv_seg.weight", depths) == 13
    with pytest.raises(ValueError, match="block 6 is beyond the 6 blocks of stage 2"):
        swin_layer_id("backbone.layers.2.blocks.6.attn.qkv.weight", depths)


def test_layer_decay_refuses_a_wrong_depth_or_an_unknown_backbone():
    with pytest.raises(ValueError, match="num_layers=12, but the RoPE-Swin backbone has 5 blocks"):
        _groups(_model(_tiny_swin()), dict(layer_decay_rate=0.9, num_layers=12))
    vit = RoPEViT(embed_dim=32, depth=2, num_heads=2)
    with pytest.raises(ValueError, match="num_layers=3, but the RoPE-ViT backbone has 2 blocks"):
        _groups(_model(vit), dict(layer_decay_rate=0.9, num_layers=3))
    with pytest.raises(ValueError, match="needs a RoPEViT or RoPESwin at model.backbone"):
        _groups(_model(nn.Linear(2, 2)), dict(layer_decay_rate=0.9, num_layers=2))


def test_bad_paramwise_settings_are_named():
    model = _model(RoPEViT(embed_dim=32, depth=2, num_heads=2))
    with pytest.raises(ValueError, match="rule must be one of"):
        _groups(model, dict(rule="detectron"))
    with pytest.raises(ValueError, match=r"\['weight_decay_norm'\] are not options of rule 'beit'"):
        _groups(model, dict(rule="beit", layer_decay_rate=0.75, num_layers=2, weight_decay_norm=0.0))
    with pytest.raises(ValueError, match="rule 'beit' is a layer-decay rule"):
        _groups(model, dict(rule="beit"))
    with pytest.raises(ValueError, match="may only set lr_mult / decay_mult"):
        _groups(model, dict(rule="detectron2", custom_keys={"backbone": dict(lr=0.1)}))
    with pytest.raises(ValueError, match="lr_factors must map"):
        _groups(model, dict(rule="detectron2", lr_factors={"backbone": -1}))
    with pytest.raises(ValueError, match="needs optimizer.weight_decay"):
        from ropevit_dense.adapters.optim import RoPEOptimWrapperConstructor

        RoPEOptimWrapperConstructor(dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=1.0)),
                                    dict(rule="mask2former"))


def test_detectron2_rule_counts_torch_norms_only():
    """nn.LayerNorm / nn.GroupNorm take weight_decay_norm; the pyramid's channel-first LayerNorm2d (detectron2's
    own LayerNorm in detrex) and an nn.Embedding keep the optimizer's weight decay."""
    from timm.layers import LayerNorm2d

    model = _model(RoPEViT(embed_dim=32, depth=2, num_heads=2))
    model.neck = nn.Sequential(nn.Conv2d(8, 8, 1, bias=False), LayerNorm2d(8))
    group = _groups(model, dict(rule="detectron2", weight_decay_norm=0.0, lr_factors={"backbone": 0.1, "neck": 0.5},
                                custom_keys={"rope.freqs": dict(decay_mult=0.0)}))
    assert group("backbone.blocks.0.norm1.weight") == pytest.approx((0.1, 0.0))
    assert group("backbone.blocks.0.attn.qkv.bias") == pytest.approx((0.1, 0.1))
    assert group("backbone.blocks.1.attn.rope.freqs") == pytest.approx((0.1, 0.0))
    assert group("neck.1.weight") == pytest.approx((0.5, 0.1))
    assert group("head.1.weight") == pytest.approx((1.0, 0.0))
    assert group("head.2.weight") == pytest.approx((1.0, 0.1))


def test_beit_rule_exempts_1d_and_bias_only():
    model = _model(RoPEViT(embed_dim=32, depth=2, num_heads=2, use_ape=True))
    group = _groups(model, dict(rule="beit", layer_decay_rate=0.5, num_layers=2))
    assert group("backbone.cls_token") == pytest.approx((0.5 ** 3, 0.1))
    assert group("backbone.pos_embed") == pytest.approx((0.5 ** 3, 0.1))
    assert group("backbone.blocks.0.gamma_1") == pytest.approx((0.5 ** 2, 0.0))
    assert group("backbone.blocks.1.attn.rope.freqs") == pytest.approx((0.5, 0.1))  # 3-D: BEiT's rule decays it
    assert group("head.0.bias") == pytest.approx((1.0, 0.0))
    assert group("head.2.weight") == pytest.approx((1.0, 0.1))


def test_layer_decay_alone_is_applied():
    """Only layer_decay_rate / num_layers in paramwise_cfg (no rule, no other key) still gives per-block rates."""
    group = _groups(_model(_tiny_swin()), dict(layer_decay_rate=0.5, num_layers=5))
    assert group("backbone.layers.0.blocks.0.attn.qkv.weight")[0] == pytest.approx(0.5 ** 5)
    assert group("backbone.patch_embed.proj.weight")[0] == pytest.approx(0.5 ** 6)
    vit = _model(RoPEViT(embed_dim=32, depth=2, num_heads=2))
    group = _groups(vit, dict(layer_decay_rate=0.5, num_layers=2))
    assert group("backbone.blocks.0.attn.qkv.weight")[0] == pytest.approx(0.5 ** 2)
