"""Environment report: ``python -m ropevit_dense.env``.

Prints the versions of the stack and checks that the compiled pieces actually work (torchvision's C++ ops,
mmcv's ops). Exits with status 1 when a required piece is missing or broken, so it can gate a set-up script.
"""

from __future__ import annotations

import importlib
import platform
import sys
from dataclasses import dataclass
from typing import Callable, Optional

DETECTRON2_HINT = (
    "optional; install it from its source following "
    "https://detectron2.readthedocs.io/en/latest/tutorials/install.html (build it against this torch, "
    "e.g. `pip install --no-build-isolation <detectron2 checkout>`)"
)


@dataclass
class Check:
    """One line of the report."""

    name: str
    ok: bool
    detail: str
    required: bool = True


def _version(module_name: str, dist_name: Optional[str] = None) -> str:
    module = importlib.import_module(module_name)
    version = getattr(module, "__version__", None)
    if version is None:
        from importlib.metadata import version as dist_version

        version = dist_version(dist_name or module_name)
    return str(version)


def _check(name: str, probe: Callable[[], str], required: bool = True, hint: Optional[str] = None) -> Check:
    try:
        return Check(name, True, probe(), required)
    except Exception as exc:  # noqa: BLE001 - any failure of an import or op probe is what we report
        detail = f"{type(exc).__name__}: {exc}".strip()
        if hint:
            detail = f"{detail} -- {hint}"
        return Check(name, False, detail, required)


def _quiet_version(module_name: str, dist_name: str) -> str:
    import warnings

    with warnings.catch_warnings():  # openmim imports the deprecated pkg_resources
        warnings.simplefilter("ignore")
        return _version(module_name, dist_name)


def _torch() -> str:
    import torch

    cuda = torch.cuda.is_available()
    gpu = f", {torch.cuda.get_device_name(0)}" if cuda else ""
    return f"{torch.__version__} (CUDA available: {cuda}{gpu}; built for CUDA {torch.version.cuda})"


def _torchvision() -> str:
    import torch
    import torchvision
    from torchvision.ops import nms, roi_align

    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0], [50.0, 50.0, 60.0, 60.0]])
    keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5)
    if keep.tolist() != [0, 2]:
        raise RuntimeError(f"torchvision.ops.nms returned {keep.tolist()}, expected [0, 2]")
    roi_align(torch.rand(1, 1, 8, 8), [boxes[:1]], output_size=2)
    return f"{torchvision.__version__} (ops: nms, roi_align work)"


def _mmcv() -> str:
    import mmcv
    import torch
    from mmcv.ops import MultiScaleDeformableAttention, nms

    dets, keep = nms(torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 11.0, 11.0]]), torch.tensor([0.9, 0.8]), 0.5)
    if keep.tolist() != [0]:
        raise RuntimeError(f"mmcv.ops.nms returned {keep.tolist()}, expected [0]")
    attn = MultiScaleDeformableAttention(embed_dims=32, num_heads=2, num_levels=1, num_points=2, batch_first=True)
    query = torch.rand(1, 4, 32)
    value = torch.rand(1, 4, 32)
    out = attn(
        query,
        value=value,
        reference_points=torch.rand(1, 4, 1, 2),
        spatial_shapes=torch.tensor([[2, 2]]),
        level_start_index=torch.tensor([0]),
    )
    if out.shape != (1, 4, 32):
        raise RuntimeError(f"MultiScaleDeformableAttention gave shape {tuple(out.shape)}")
    return f"{mmcv.__version__} (ops compiled: MultiScaleDeformableAttention, nms work)"


def _detectron2() -> str:
    import detectron2
    from detectron2 import _C  # noqa: F401 - the compiled ops

    return f"{detectron2.__version__} (ops compiled)"


def collect() -> list[Check]:
    """Run every probe and return the report lines."""
    return [
        Check("python", True, f"{platform.python_version()} ({sys.executable})"),
        _check("torch", _torch),
        _check("torchvision", _torchvision, hint="install the standard build: pip install 'torchvision===0.28.0'"),
        _check("mmcv", _mmcv, hint="build mmcv from source against this torch: see README 'Environment'"),
        _check("mmengine", lambda: _version("mmengine")),
        _check("mmdet", lambda: _version("mmdet")),
        _check("mmseg", lambda: _version("mmseg")),
        _check("openmim", lambda: _quiet_version("mim", "openmim"),
               hint="`mim` imports pkg_resources: install 'setuptools>=77.0.3,<81'"),
        _check("timm", lambda: _version("timm")),
        _check("pycocotools", lambda: _version("pycocotools")),
        _check("ropevit_dense", lambda: _version("ropevit_dense")),
        _check("detectron2", _detectron2, required=False, hint=DETECTRON2_HINT),
    ]


def main(argv: Optional[list[str]] = None) -> int:
    """Print the report; return 1 when a required component is missing or broken."""
    checks = collect()
    width = max(len(c.name) for c in checks)
    for c in checks:
        status = "ok" if c.ok else ("MISSING/BROKEN" if c.required else "not installed")
        print(f"{c.name:<{width}}  {status:<14}  {c.detail}")  # noqa: T201 - this is a CLI report
    broken = [c.name for c in checks if c.required and not c.ok]
    if broken:
        print(f"\nrequired components missing or broken: {', '.join(broken)}")  # noqa: T201
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
