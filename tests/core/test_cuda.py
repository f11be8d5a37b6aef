"""On a CUDA device (skipped without one; ``tools/gpu_check.py`` runs them): the backbones match the CPU, half
precision stays finite and close to fp32 with RoPE in float32, fused SDPA kernels are used, and mmengine's
``AmpOptimWrapper`` trains the tiny Mask2Former."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ropevit_dense import RoPESwin, RoPEViT

pytestmark = pytest.mark.cuda
ROOT = Path(__file__).resolve().parents[2]


def _models():
    return {
        "vitdet-mixed": RoPEViT(embed_dim=128, depth=3, num_heads=2, rope_type="mixed", window_size=4,
                                global_block_indexes=(2,)),
        "vit-global-axial-ape": RoPEViT(embed_dim=128, depth=2, num_heads=2, rope_type="axial", use_ape=True),
        "swin-mixed-rpb": RoPESwin(embed_dim=64, depths=(2, 2), num_heads=(2, 4), window_size=7, rope_type="mixed",
                                   use_rpb=True, out_indices=(0, 1)),
    }


@pytest.fixture(autouse=True)
def _no_tf32():
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


@pytest.mark.parametrize("name", ["vitdet-mixed", "vit-global-axial-ape", "swin-mixed-rpb"])
def test_cuda_matches_cpu(name):
    torch.manual_seed(0)
    model = _models()[name].eval()
    x = torch.randn(2, 3, 72, 88)
    with torch.no_grad():
        want = model(x)
        got = model.cuda()(x.cuda())
    for a, b in zip(got, want):
        torch.testing.assert_close(a.cpu(), b, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("name", ["vitdet-mixed", "swin-mixed-rpb"])
def test_half_precision_autocast(name, dtype):
    """Within 3 % of fp32 (8 / 11 significant bits: see tests/core/test_bf16.py); finite gradients in float32."""
    torch.manual_seed(0)
    model = _models()[name].cuda().train()
    x = torch.randn(2, 3, 72, 88, device="cuda")
    ref = [o.detach() for o in model(x)]
    with torch.autocast("cuda", dtype=dtype):
        out = model(x)
    for a, b in zip(out, ref):
        assert float((a.detach().float() - b).norm() / b.norm()) < 0.03
    sum(o.float().square().mean() for o in out).backward()
    for n, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.dtype == torch.float32, n


def _sdpa_ops(fn) -> set[str]:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return {e.key for e in prof.key_averages() if "scaled_dot_product" in e.key}


def test_fused_attention_kernels_are_used():
    """Unmasked global attention and boolean-masked window attention both get a fused kernel, not the math path."""
    torch.manual_seed(0)
    model = RoPEViT(embed_dim=256, depth=2, num_heads=4, rope_type="mixed", window_size=14,
                    global_block_indexes=(1,), use_cls_token=False).cuda().eval()
    x = torch.randn(1, 3, 16 * 20, 16 * 20, device="cuda")  # 20 tokens: windows of 14 are padded (masked keys)
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16):
        ops = _sdpa_ops(lambda: model(x))
    assert ops and not any("math" in op for op in ops), ops


def test_amp_optim_wrapper_trains_tiny_mask2former():
    pytest.importorskip("mmseg")
    from mmengine.optim import build_optim_wrapper

    from ropevit_dense.diagnostics import mm_models as mm

    cfg = mm.load_config(ROOT / "configs/segmentation/mmseg/tiny/"
                         "mask2former_ropeswin-tiny-mixed_1xb4-400i_tinyade20k-64x64.py")
    torch.manual_seed(0)
    model = mm.build_model(cfg).cuda()
    wrapper = build_optim_wrapper(model, dict(cfg.optim_wrapper, type="AmpOptimWrapper", loss_scale="dynamic"))
    batch = mm.synthetic_batch(model, "mmseg", size=(64, 64))
    losses = [float(model.train_step(batch, wrapper)["loss"]) for _ in range(3)]
    assert all(torch.isfinite(torch.tensor(losses))), losses
