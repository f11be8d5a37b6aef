"""Shared helpers of the adapter tests: the ``mim`` command line."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

MIM = shutil.which("mim", path=str(Path(sys.executable).parent)) or shutil.which("mim")


def _run_mim(*args: str, cwd: Path) -> str:
    assert MIM, "the mim command is not installed"
    proc = subprocess.run([MIM, *args], cwd=cwd, capture_output=True, text=True, timeout=900)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


@pytest.fixture(scope="session")
def mim():
    """``mim(*args, cwd=...)`` runs the ``mim`` command of this environment, asserts success, returns its output."""
    return _run_mim
