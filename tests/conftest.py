"""Shared pytest set-up: markers, opt-in slow tests, tiny dataset fixtures."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", default=False,
                     help="also run tests marked 'slow' (minutes each on a CPU)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    run_slow = config.getoption("--run-slow") or os.environ.get("ROPEVIT_RUN_SLOW") == "1"
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover
        has_cuda = False
    skip_slow = pytest.mark.skip(reason="slow CPU training run: enable with --run-slow or ROPEVIT_RUN_SLOW=1")
    skip_cuda = pytest.mark.skip(reason="needs a CUDA device; none is available")
    try:
        has_d2 = importlib.util.find_spec("detectron2") is not None
    except (ImportError, ValueError):  # a broken install, or an import blocker
        has_d2 = False
    skip_d2 = pytest.mark.skip(reason="detectron2 is not installed (it is not on PyPI): install it from its source, "
                                      "see configs/detection/detectron2/README.md")
    for item in items:
        if "detectron2" in item.keywords and not has_d2:
            item.add_marker(skip_d2)
        if "slow" in item.keywords and not run_slow:
            item.add_marker(skip_slow)
        if "cuda" in item.keywords and not has_cuda:
            item.add_marker(skip_cuda)


@pytest.fixture(scope="session")
def tiny_coco(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated COCO-format detection dataset (train/val, 8 images each)."""
    from ropevit_dense.data import make_coco

    root = tmp_path_factory.mktemp("tiny_coco")
    make_coco(root, num_images=8)
    return root


@pytest.fixture(scope="session")
def tiny_ade20k(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated ADE20k-format segmentation dataset (training/validation, 8 images each)."""
    from ropevit_dense.data import make_ade20k

    root = tmp_path_factory.mktemp("tiny_ade20k")
    make_ade20k(root, num_images=8)
    return root
