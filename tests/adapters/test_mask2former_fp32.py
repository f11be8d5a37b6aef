"""Mask2Former's pixel decoder runs in float32 under mixed precision, the backbone and the transformer decoder do
not: a CPU bfloat16 autocast run of the recipe's model (shrunk), with forward hooks recording output dtypes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("mmseg")
pytest.importorskip("mmdet")

CONFIG = (Path(__file__).resolve().parents[2] / "configs" / "segmentation" / "mmseg"
          / "mask2former_ropeswin-t-p4-w7-mixed_8xb2-amp-160k_ade20k-512x512.py")


def _model(pixel_decoder_type: str | None = None):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.utils import import_modules_from_strings
    from mmseg.registry import MODELS

    cfg = Config.fromfile(str(CONFIG))
    import_modules_from_strings(**cfg.custom_imports)
    dims = 32
    head = cfg.model.decode_head
    cfg.model.backbone.update(init_cfg=None, embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8), window_size=4,
                              drop_path_rate=0.0)
    head.update(in_channels=[16, 32, 64, 128], feat_channels=dims, out_channels=dims, num_queries=8)
    enc = head.pixel_decoder.encoder
    enc.num_layers = 1
    enc.layer_cfg.self_attn_cfg.update(embed_dims=dims, num_heads=2)
    enc.layer_cfg.ffn_cfg.update(embed_dims=dims, feedforward_channels=dims)
    head.pixel_decoder.positional_encoding.num_feats = dims // 2
    head.positional_encoding.num_feats = dims // 2
    head.pixel_decoder.norm_cfg.num_groups = 8
    dec = head.transformer_decoder
    dec.num_layers = 1
    for key in ("self_attn_cfg", "cross_attn_cfg"):
        dec.layer_cfg[key].update(embed_dims=dims, num_heads=2)
    dec.layer_cfg.ffn_cfg.update(embed_dims=dims, feedforward_channels=dims)
    if pixel_decoder_type is not None:
        head.pixel_decoder.type = pixel_decoder_type
    init_default_scope("mmseg")
    return MODELS.build(cfg.model).eval()


def _dtypes_under_bf16_autocast(model) -> dict[str, torch.dtype]:
    from mmseg.structures import SegDataSample

    head = model.decode_head
    watched = {
        "backbone qkv": model.backbone.layers[0].blocks[0].attn.qkv,
        "pixel decoder input projection": head.pixel_decoder.input_convs[0].conv,
        "pixel decoder deformable encoder": head.pixel_decoder.encoder.layers[0].ffn,
        "pixel decoder mask features": head.pixel_decoder.mask_feature,
        "transformer decoder ffn linear": head.transformer_decoder.layers[0].ffn.layers[0][0],
        "class head": head.cls_embed,
    }
    seen: dict[str, torch.dtype] = {}

    def record(key):
        def hook(_module, _inputs, output) -> None:
            seen.setdefault(key, output.dtype)
        return hook

    hooks = [m.register_forward_hook(record(k)) for k, m in watched.items()]
    torch.manual_seed(0)
    images = torch.randn(1, 3, 64, 96)
    sample = SegDataSample(metainfo=dict(img_shape=(64, 96), ori_shape=(64, 96), pad_shape=(64, 96),
                                         batch_input_shape=(64, 96)))
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            out = model.predict(images, [sample])
    finally:
        for h in hooks:
            h.remove()
    assert out[0].seg_logits.data.shape[-2:] == (64, 96)
    assert set(seen) == set(watched)
    return seen


def test_pixel_decoder_runs_in_float32_under_bf16_autocast():
    model = _model()
    assert type(model.decode_head.pixel_decoder).__name__ == "FP32MSDeformAttnPixelDecoder"
    dtypes = _dtypes_under_bf16_autocast(model)
    assert dtypes == {
        "backbone qkv": torch.bfloat16,
        "pixel decoder input projection": torch.float32,
        "pixel decoder deformable encoder": torch.float32,
        "pixel decoder mask features": torch.float32,
        "transformer decoder ffn linear": torch.bfloat16,
        "class head": torch.bfloat16,
    }


def test_mmdets_own_pixel_decoder_would_run_in_bf16():
    """The control: the parent class under the same autocast computes in bfloat16."""
    dtypes = _dtypes_under_bf16_autocast(_model("mmdet.MSDeformAttnPixelDecoder"))
    assert dtypes["pixel decoder input projection"] == torch.bfloat16
    assert dtypes["pixel decoder mask features"] == torch.bfloat16


def test_float32_decoder_matches_the_parent_outside_autocast():
    from mmdet.models.layers import MSDeformAttnPixelDecoder

    decoder = _model().decode_head.pixel_decoder
    feats = [torch.randn(1, c, 16 // s, 24 // s) for c, s in ((16, 1), (32, 2), (64, 4), (128, 8))]
    with torch.no_grad():
        ours = decoder(feats)
        parent = MSDeformAttnPixelDecoder.forward(decoder, feats)
        low = decoder([f.bfloat16() for f in feats])  # half-precision inputs are promoted, as Mask2Former's .float()
    torch.testing.assert_close(ours[0], parent[0])
    assert low[0].dtype == torch.float32 and all(f.dtype == torch.float32 for f in low[1])
    with pytest.raises(ValueError, match="at least one feature map"):
        decoder([])
