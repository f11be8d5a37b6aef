"""Shared helpers of the tool tests: import a script of ``tools/`` as a module, write small test images."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

TOOLS = Path(__file__).resolve().parents[2] / "tools"


def _load_tool(name: str):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def load_tool():
    """``load_tool(name)`` imports ``tools/<name>.py`` as a module (the scripts are not a package)."""
    return _load_tool


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """Three small images of different sizes and formats (png and jpg) with smooth random content."""
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate([(40, 56), (64, 48), (50, 50)]):
        coarse = rng.random((4, 4, 3))
        img = np.kron(coarse, np.ones((h // 4 + 1, w // 4 + 1, 1)))[:h, :w]
        img = (255 * (0.6 * img + 0.4 * rng.random((h, w, 3)))).astype(np.uint8)
        Image.fromarray(img).save(folder / f"img{i}.{'png' if i % 2 else 'jpg'}")
    (folder / "notes.txt").write_text("not an image")
    return folder
