"""SimplePyramid: strides, shapes at odd sizes, configuration errors."""

import pytest
import torch

from ropevit_dense import RoPEViT, SimplePyramid


@pytest.mark.parametrize("scales, strides", [
    ((2.0, 1.0, 0.5), (8, 16, 32, 64)),
    ((4.0, 2.0, 1.0, 0.5), (4, 8, 16, 32, 64)),
])
def test_levels_follow_the_strides(scales, strides):
    vit = RoPEViT(embed_dim=64, depth=2, num_heads=4, window_size=4, global_block_indexes=(1,)).eval()
    neck = SimplePyramid(in_channels=64, out_channels=32, scale_factors=scales).eval()
    assert neck.strides == strides
    h, w = 33 * 16, 47 * 16
    with torch.no_grad():
        outs = neck(vit(torch.randn(1, 3, h, w)))
    assert len(outs) == len(strides)
    for out, s in zip(outs, strides):
        assert out.shape[:2] == (1, 32)
        if s <= 16:
            assert out.shape[2:] == (h // s, w // s)
        else:  # pooling floors odd sizes and the top block takes every other position
            assert abs(out.shape[2] - h / s) < 1 and abs(out.shape[3] - w / s) < 1


def test_without_top_block_and_bad_configs():
    assert SimplePyramid(in_channels=64, scale_factors=(1.0, 0.5), top_block=False).strides == (16, 32)
    with pytest.raises(ValueError, match="unsupported pyramid scale factor 3.0"):
        SimplePyramid(in_channels=64, scale_factors=(3.0,))
    with pytest.raises(ValueError, match="decreasing"):
        SimplePyramid(in_channels=64, scale_factors=(0.5, 1.0))
    with pytest.raises(ValueError, match="log2-contiguous"):
        SimplePyramid(in_channels=64, scale_factors=(4.0, 1.0))
