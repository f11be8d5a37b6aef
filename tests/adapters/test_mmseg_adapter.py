"""mmseg adapter: registration into mmseg's own registry, a UperNet on RoPE-ViT, layer-wise lr decay."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("mmseg")

TINY_VIT = dict(type="RoPEViT", embed_dim=64, depth=4, num_heads=4, rope_type="mixed", out_indices=(0, 1, 2, 3),
                init_values=1.0)


def _upernet():
    return dict(
        type="EncoderDecoder",
        data_preprocessor=dict(type="SegDataPreProcessor", mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                               bgr_to_rgb=True, pad_val=0, seg_pad_val=255, size=(64, 64)),
        backbone=TINY_VIT,
        neck=dict(type="Feature2Pyramid", embed_dim=64, rescales=[4, 2, 1, 0.5], norm_cfg=dict(type="BN")),
        decode_head=dict(type="UPerHead", in_channels=[64] * 4, in_index=[0, 1, 2, 3], pool_scales=(1, 2, 3, 6),
                         channels=32, dropout_ratio=0.1, num_classes=150, norm_cfg=dict(type="BN"),
                         align_corners=False, loss_decode=dict(type="CrossEntropyLoss", loss_weight=1.0)),
        train_cfg=dict(), test_cfg=dict(mode="whole"))


def test_registered_in_mmseg_not_only_mmdet():
    from mmseg.registry import MODELS

    import ropevit_dense.adapters.mmseg  # noqa: F401

    assert MODELS.get("RoPEViT") is not None and MODELS.get("RoPESwin") is not None
    import ropevit_dense.adapters.mmseg as again  # noqa: F401 - idempotent re-import
    from ropevit_dense.adapters.openmmlab import MMRoPEViT

    assert MODELS.get("RoPEViT") is MMRoPEViT


def test_upernet_on_rope_vit_runs_at_odd_sizes():
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    import ropevit_dense.adapters.mmseg  # noqa: F401

    init_default_scope("mmseg")
    model = MODELS.build(_upernet()).eval()
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 80, 112), mode="tensor")
    assert logits.shape == (1, 150, 80 // 4, 112 // 4)


def test_layer_decay_scales_patch_embed_blocks_and_head_and_freqs_get_no_decay():
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS

    import ropevit_dense.adapters.mmseg  # noqa: F401

    init_default_scope("mmseg")
    model = MODELS.build(_upernet())
    ctor = OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
        type="RoPEOptimWrapperConstructor",
        optim_wrapper_cfg=dict(type="OptimWrapper", optimizer=dict(type="AdamW", lr=1.0, weight_decay=0.05)),
        paramwise_cfg=dict(layer_decay_rate=0.75, num_layers=4, norm_decay_mult=0.0,
                           custom_keys={"rope.freqs": dict(decay_mult=0.0), "pos_embed": dict(decay_mult=0.0),
                                        "cls_token": dict(decay_mult=0.0)})))
    groups = {id(g["params"][0]): g for g in ctor(model).optimizer.param_groups}
    named = dict(model.named_parameters())

    def g(name):
        return groups[id(named[name])]

    assert g("backbone.patch_embed.proj.weight")["lr"] == pytest.approx(0.75 ** 5)
    assert g("backbone.cls_token")["lr"] == pytest.approx(0.75 ** 5) and g("backbone.cls_token")["weight_decay"] == 0
    for i in range(4):
        scale = 0.75 ** (4 - i)
        assert g(f"backbone.blocks.{i}.attn.qkv.weight")["lr"] == pytest.approx(scale)
        assert g(f"backbone.blocks.{i}.attn.rope.freqs")["lr"] == pytest.approx(scale)
        assert g(f"backbone.blocks.{i}.attn.rope.freqs")["weight_decay"] == 0.0
        assert g(f"backbone.blocks.{i}.norm1.weight")["weight_decay"] == 0.0
        assert g(f"backbone.blocks.{i}.mlp.fc1.weight")["weight_decay"] == pytest.approx(0.05)
    for name in ("decode_head.conv_seg.weight", "neck.upsample_4x.0.weight"):
        assert g(name)["lr"] == pytest.approx(1.0)
