"""torch.compile (inductor, CPU) of both backbones: parity with eager to 1e-4 at two input sizes, one graph without
breaks, and no recompilation for a new size with ``dynamic=True``.

Traced, the pair rotation (axial, mixed) is one out-of-place expression (``apply_rope`` under
``torch.compiler.is_compiling()``): the eager kernels write into views of a fresh buffer with ``out=`` and rotate
queries and keys in place inside the qkv buffer, which dynamo cannot trace (a graph break per rotation with static
shapes, a failure with ``dynamic=True``). ``test_rotation_compiles_with_dynamic_shapes`` pins that on the function
itself.

Default run: the rotation itself and a ViTDet layout (window and global blocks); the Swin (shifted windows, RPB),
a no-RoPE control and every layout x position mode with --run-slow (Swin with static shapes only, see
SWIN_DYNAMIC). Inductor takes 5-30 s per graph on 2 cores.
"""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters

from ropevit_dense import RoPESwin, RoPEViT

# 5 x 6 and 7 x 10 ViT tokens: windows of 4 pad both sides of both sizes (by different amounts). A grid that needs
# window padding and one that does not are two graphs (a key mask, a copy after cropping), even with dynamic=True.
SIZES = ((80, 96), (112, 160))
SWIN_DYNAMIC = ("Swin with dynamic=True: inductor's code generation of the shifted-window graph with symbolic sizes "
                "had spent 7 minutes in sympy's simplification of strides on 2 CPU cores when stopped; compile "
                "Swin with static shapes")
ALL_MODES = (None, "axial", "mixed", "spherical", "liere", "comrope-ap", "comrope-ld")


def _vit(mode, layout):
    window = dict(window_size=4, global_block_indexes=(1,)) if layout == "window" else {}
    dim = 96 if mode == "spherical" else 64  # spherical rotates blocks of 3 channels: head_dim 48
    return RoPEViT(embed_dim=dim, depth=2, num_heads=2, rope_type=mode, **window)


def _swin(mode, rpb=False):
    heads = (1, 2)
    dim = 48 if mode == "spherical" else 32
    return RoPESwin(embed_dim=dim, depths=(2, 2), num_heads=heads, window_size=4, rope_type=mode, use_rpb=rpb,
                    out_indices=(0, 1))


def _graphs() -> int:
    return int(counters["stats"]["unique_graphs"])


def _compiled_parity(model: torch.nn.Module, dynamic: bool) -> list[int]:
    """Compile ``model`` (eval, no grad), check it against eager at both sizes; graphs compiled after each size."""
    torch._dynamo.reset()
    counters.clear()
    model.eval()
    compiled = torch.compile(model, backend="inductor", dynamic=dynamic)
    graphs = []
    with torch.no_grad():
        for hw in SIZES:
            x = torch.randn(2, 3, *hw)
            for got, want in zip(compiled(x), model(x)):
                torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
            graphs.append(_graphs())
    return graphs


def test_rotation_compiles_with_dynamic_shapes():
    """apply_rope with learned angles, compiled with symbolic sizes: eager values and angle gradients, one graph."""
    from ropevit_dense.rope import RopeTable, apply_rope

    def rotate(x, angles):
        return apply_rope(x, RopeTable(angles.detach().sin(), angles.detach().cos(), angles))

    torch._dynamo.reset()
    counters.clear()
    fn = torch.compile(rotate, dynamic=True)
    for n in (16, 24):
        x, angles = torch.randn(2, 1, 2, n, 8), torch.randn(2, n, 4, requires_grad=True)
        x0, x1 = x.unflatten(-1, (-1, 2)).unbind(-1)
        sin, cos = angles.sin(), angles.cos()
        want = torch.stack((x0 * cos - x1 * sin, x1 * cos + x0 * sin), -1).flatten(-2)
        got = fn(x, angles)
        torch.testing.assert_close(got, want)
        g = torch.randn_like(want)
        torch.testing.assert_close(torch.autograd.grad(got, angles, g)[0], torch.autograd.grad(want, angles, g)[0])
    assert _graphs() == 1


@pytest.mark.parametrize("name", ["vit-window-mixed", pytest.param("swin-mixed-rpb", marks=pytest.mark.slow)])
def test_static_compile_matches_eager(name):
    torch.manual_seed(0)
    model = _vit("mixed", "window") if name.startswith("vit") else _swin("mixed", rpb=True)
    _compiled_parity(model, dynamic=False)


def _named(name):
    return {"vit-window-none": lambda: _vit(None, "window"), "vit-window-mixed": lambda: _vit("mixed", "window"),
            "swin-mixed-rpb": lambda: _swin("mixed", rpb=True)}[name]()


@pytest.mark.parametrize("name", [
    pytest.param("vit-window-none"),
    pytest.param("vit-window-mixed"),
    pytest.param("swin-mixed-rpb", marks=pytest.mark.slow),
])
def test_one_graph_without_breaks(name):
    torch.manual_seed(0)
    model = _named(name).eval()
    torch._dynamo.reset()
    with torch.no_grad():
        explained = torch._dynamo.explain(model)(torch.randn(1, 3, *SIZES[0]))
    reasons = sorted({str(r.reason).splitlines()[0] for r in explained.break_reasons})
    assert explained.graph_break_count == 0 and explained.graph_count == 1, reasons


@pytest.mark.parametrize("name", [
    pytest.param("vit-window-none", marks=pytest.mark.slow),
    pytest.param("vit-window-mixed"),
    pytest.param("swin-mixed-rpb", marks=[pytest.mark.slow, pytest.mark.skip(reason=SWIN_DYNAMIC)]),
])
def test_dynamic_compile_does_not_recompile_for_a_new_size(name):
    torch.manual_seed(0)
    first, second = _compiled_parity(_named(name), dynamic=True)
    assert first >= 1 and second == first, f"graphs compiled: {first} for the first size, {second} after the second"


MATRIX = [(kind, mode) for kind in ("vit-global", "vit-window", "swin") for mode in ALL_MODES]


def _build(kind, mode):
    return _swin(mode) if kind == "swin" else _vit(mode, kind.split("-")[1])


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "mode"), MATRIX, ids=[f"{k}-{m}" for k, m in MATRIX])
def test_every_mode_compiles_statically(kind, mode):
    torch.manual_seed(0)
    _compiled_parity(_build(kind, mode), dynamic=False)


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "mode"), [
    pytest.param(k, m, id=f"{k}-{m}", marks=[pytest.mark.skip(reason=SWIN_DYNAMIC)] if k == "swin" else [])
    for k, m in MATRIX])
def test_every_mode_compiles_dynamically(kind, mode):
    torch.manual_seed(0)
    first, second = _compiled_parity(_build(kind, mode), dynamic=True)
    assert second == first


@pytest.mark.slow
def test_training_step_compiles_and_matches_eager():
    """Forward and backward of a windowed RoPE-Mixed ViT (learned frequencies: the angle-gradient path)."""
    torch.manual_seed(0)
    model = _vit("mixed", "window").train()
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="inductor")
    x = torch.randn(2, 3, *SIZES[0])
    sum(o.square().mean() for o in model(x)).backward()
    want = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    sum(o.square().mean() for o in compiled(x)).backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad, want[n], atol=1e-4, rtol=1e-4, msg=n)
