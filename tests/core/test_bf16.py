"""Both backbones under CPU bf16 autocast: RoPE state in float32, what the attention receives, closeness to fp32.

Tolerance: the backbone outputs stay within 3 % (relative Frobenius norm) of fp32 and the rotated queries / keys
within 2 % of their fp32 values. bf16 rounds to 8 significant bits (relative error 2^-9, about 0.2 %) at every
matmul input, and a few blocks add those errors up to about 1 %; angles computed in bf16 instead would be off by up
to 2^-9 x (position x frequency), i.e. by radians on a 64-token grid, and fail these bounds.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ropevit_dense import RoPESwin, RoPEViT
from ropevit_dense.rope import BlockRopeTable, RopeTable

# (backbone factory, the kinds of attention it exercises)
MODELS = {
    "vit-global-mixed": lambda: RoPEViT(embed_dim=64, depth=2, num_heads=2, rope_type="mixed"),
    "vit-global-axial-ape": lambda: RoPEViT(embed_dim=64, depth=2, num_heads=2, rope_type="axial", use_ape=True),
    "vit-window-mixed": lambda: RoPEViT(embed_dim=64, depth=3, num_heads=2, rope_type="mixed", window_size=4,
                                        global_block_indexes=(2,)),
    "vit-window-spherical": lambda: RoPEViT(embed_dim=96, depth=2, num_heads=2, rope_type="spherical",
                                            window_size=4, global_block_indexes=(1,)),
    "vit-global-comrope-ap": lambda: RoPEViT(embed_dim=64, depth=2, num_heads=2, rope_type="comrope-ap"),
    "vit-global-liere": lambda: RoPEViT(embed_dim=64, depth=2, num_heads=2, rope_type="liere"),
    "swin-mixed-rpb": lambda: RoPESwin(embed_dim=32, depths=(2, 2), num_heads=(1, 2), window_size=4,
                                       rope_type="mixed", use_rpb=True, out_indices=(0, 1)),
    "swin-axial": lambda: RoPESwin(embed_dim=32, depths=(2, 2), num_heads=(1, 2), window_size=4, rope_type="axial",
                                   out_indices=(0, 1)),
}


class _Recorder:
    """Wraps ``F.scaled_dot_product_attention`` and ``apply_rope`` to record what they receive."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import ropevit_dense.layers.attention as attention

        self.sdpa: list[tuple[torch.dtype, ...]] = []
        self.tables: list[dict[str, torch.dtype]] = []
        sdpa = F.scaled_dot_product_attention

        def recording_sdpa(q, k, v, attn_mask=None, **kwargs):
            mask = None if attn_mask is None else attn_mask.dtype
            self.sdpa.append((q.dtype, k.dtype, v.dtype, mask))
            return sdpa(q, k, v, attn_mask=attn_mask, **kwargs)

        monkeypatch.setattr(F, "scaled_dot_product_attention", recording_sdpa)
        for name in ("apply_rope", "apply_rope_"):
            fn = getattr(attention, name, None)
            if fn is not None:
                monkeypatch.setattr(attention, name, self._wrap(fn))

    def _wrap(self, fn):
        def recording(x, table, *args, **kwargs):
            if isinstance(table, (RopeTable, BlockRopeTable)):
                self.tables.append({k: v.dtype for k, v in table._asdict().items() if isinstance(v, torch.Tensor)})
            return fn(x, table, *args, **kwargs)

        return recording


@pytest.mark.parametrize("name", sorted(MODELS))
def test_bf16_autocast_keeps_rope_in_float32(name, monkeypatch):
    torch.manual_seed(0)
    model = MODELS[name]().train()
    x = torch.randn(2, 3, 72, 88)  # 18 x 22 tokens (ViT: 4 x 5 + padding in windows of 4; Swin: padded windows)
    ref = [r.detach() for r in model(x)]
    rec = _Recorder(monkeypatch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert rec.sdpa, "no attention call recorded"
    for q, k, v, mask in rec.sdpa:
        assert q == k == v == torch.bfloat16, (q, k, v)
        assert mask in (None, torch.bool, torch.bfloat16)
    assert rec.tables, "no RoPE table recorded"
    for table in rec.tables:
        # float32 everywhere; the eager complex rotation of a pair table is complex64 (float32 parts)
        assert table and all(d == (torch.complex64 if k == "rotation" else torch.float32)
                             for k, d in table.items()), table
    for rope in (m for m in model.modules() if hasattr(m, "freqs") or hasattr(m, "generators")):
        for p in rope.parameters(recurse=False):
            assert p.dtype == torch.float32
    for a, b in zip(out, ref):
        assert torch.isfinite(a).all()
        err = float((a.detach().float() - b).norm() / b.norm())
        assert err < 0.03, f"bf16 output differs from fp32 by {err:.2%}"

    sum(o.float().square().mean() for o in out).backward()
    for n, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), n
        assert p.grad.dtype == p.dtype, n


def test_rotation_under_autocast_matches_fp32():
    """The rotated bf16 queries / keys: angles and sin / cos in float32, the product rounded once to bf16; angles
    rounded to bf16 instead (what a matmul under autocast would give) miss the same bound on a 64 x 64 grid."""
    from ropevit_dense.rope import MixedRoPE, RopeTable, apply_rope, grid_coords, rope_angles

    torch.manual_seed(0)
    rope = MixedRoPE(head_dim=32, num_heads=2, theta=10.0)
    coords = grid_coords(64, 64, mode="extrapolate", ref_size=(14, 14))
    qk = torch.randn(2, 1, 2, 64 * 64, 32)
    with torch.no_grad():
        ref = apply_rope(qk, rope(coords))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            table = rope(coords)
            out = apply_rope(qk.bfloat16(), table)
        assert table.sin.dtype == table.cos.dtype == torch.float32 and out.dtype == torch.bfloat16
        err = float((out.float() - ref).norm() / ref.norm())
        assert err < 0.02, err

        rounded = rope_angles(rope.freqs, coords).bfloat16().float()
        bad = apply_rope(qk.bfloat16(), RopeTable(rounded.sin(), rounded.cos()))
        assert float((bad.float() - ref).norm() / ref.norm()) > 0.02
