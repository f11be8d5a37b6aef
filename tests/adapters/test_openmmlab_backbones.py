"""The OpenMMLab backbone wrappers as users build them: initialisation from scratch, ``init_cfg`` options, and the
probability-average test-time augmentation of the mmseg adapter."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("mmdet")
pytest.importorskip("mmseg")

TINY = dict(embed_dim=64, depth=2, num_heads=4)


def _mm_vit(**kwargs):
    from mmdet.registry import MODELS

    import ropevit_dense.adapters.mmdet  # noqa: F401

    return MODELS.build(dict(type="RoPEViT", **TINY, **kwargs))


def _check_vit_init(model) -> None:
    """The ViT recipe's random init: trunc-normal(0.02) linears, zero biases, unit norms, trunc-normal tokens."""
    for blk in model.blocks:
        assert blk.attn.qkv.weight.std().item() == pytest.approx(0.02, rel=0.15)
        assert blk.attn.qkv.bias.abs().max().item() == 0.0 and blk.mlp.fc1.bias.abs().max().item() == 0.0
        assert torch.equal(blk.norm1.weight, torch.ones_like(blk.norm1.weight))
    for p in (model.cls_token, model.pos_embed):
        if p is not None:
            assert p.abs().max().item() > 0.01 and p.std().item() == pytest.approx(0.02, rel=0.3)


@pytest.mark.parametrize("kwargs", [dict(use_ape=True), dict(window_size=4, global_block_indexes=(1,))])
def test_mm_vit_from_scratch_gets_the_core_initialisation(kwargs):
    """Built through the registry without init_cfg, and after the runner's init_weights(), the ViT is initialised
    as the core class is (not left at PyTorch's default layer init with zero cls / position tokens)."""
    torch.manual_seed(0)
    model = _mm_vit(**kwargs)
    _check_vit_init(model)
    model.init_weights()  # what mmengine's runner calls before training
    _check_vit_init(model)
    assert model.is_init


def test_mm_swin_from_scratch_gets_the_core_initialisation():
    from mmdet.registry import MODELS

    import ropevit_dense.adapters.mmdet  # noqa: F401

    model = MODELS.build(dict(type="RoPESwin", embed_dim=32, depths=(2, 2), num_heads=(2, 4), use_rpb=True))
    model.init_weights()
    qkv = model.layers[0].blocks[0].attn.qkv
    assert qkv.weight.std().item() == pytest.approx(0.02, rel=0.15) and qkv.bias.abs().max().item() == 0.0
    assert model.layers[0].blocks[0].attn.relative_position_bias_table.abs().max().item() > 0


def test_init_cfg_prefix_selects_the_weights_under_it(tmp_path):
    """``init_cfg=dict(type='Pretrained', checkpoint=..., prefix='teacher.')`` loads exactly the teacher's weights."""
    from ropevit_dense import RoPEViT

    teacher, student = RoPEViT(**TINY, rope_type="mixed"), RoPEViT(**TINY, rope_type="mixed")
    sd = {f"teacher.{k}": v for k, v in teacher.state_dict().items()}
    sd.update({f"student.{k}": v for k, v in student.state_dict().items()})
    path = tmp_path / "distill.pth"
    torch.save({"state_dict": sd}, path)
    model = _mm_vit(rope_type="mixed", init_cfg=dict(type="Pretrained", checkpoint=str(path), prefix="teacher."))
    model.init_weights()
    for k, v in teacher.state_dict().items():
        torch.testing.assert_close(model.state_dict()[k], v, msg=k)
    bad = _mm_vit(rope_type="mixed", init_cfg=dict(type="Pretrained", checkpoint=str(path), prefix="ema."))
    from ropevit_dense.checkpoints import CheckpointError

    with pytest.raises(CheckpointError, match="no key starts with prefix 'ema.'"):
        bad.init_weights()


def _views(maps):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    out = []
    for m in maps:
        sample = SegDataSample(metainfo=dict(img_shape=m.shape[-2:], ori_shape=m.shape[-2:]))
        sample.seg_logits = PixelData(data=m)
        out.append(sample)
    return out


def test_probability_average_tta_thresholds_single_channel_heads():
    """A binary head (``out_channels == 1``) averages its probabilities and thresholds them at the decode head's
    threshold, as mmseg does; several channels take the argmax of the average."""
    from torch import nn

    from ropevit_dense.adapters.mmseg import ProbabilityAverageSegTTAModel

    class _Head(nn.Module):
        threshold = 0.3

    class _Seg(nn.Module):
        def __init__(self):
            super().__init__()
            self.decode_head = _Head()

        def test_step(self, data):  # required by mmengine's TTA wrapper; merge_preds alone is tested
            raise NotImplementedError

    tta = ProbabilityAverageSegTTAModel(module=_Seg())
    binary = tta.merge_preds([_views([torch.tensor([[[0.2, 0.5]]]), torch.tensor([[[0.5, 0.0]]])])])[0]
    assert binary.pred_sem_seg.data.tolist() == [[[1, 0]]]  # means 0.35 > 0.3, 0.25 < 0.3
    multi = tta.merge_preds([_views([torch.tensor([[[0.6]], [[0.4]]]), torch.tensor([[[0.1]], [[0.9]]])])])[0]
    assert multi.pred_sem_seg.data.tolist() == [[[1]]]
