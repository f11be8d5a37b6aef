#!/usr/bin/env bash
# Create (or update) the project's virtual environment in ./.venv and install the tested stack.
#
# Idempotent: every step checks whether its result is already there, so on a ready environment the
# script only re-checks versions and prints the environment report (a few seconds). pip's cache is
# used throughout, so a rebuilt mmcv wheel is reused on the next fresh clone.
#
# Traps handled (see README "Environment"):
#  * torch / torchvision are pinned with arbitrary equality (===) so pip takes the standard builds
#    and not a local CPU-only "+cpu" torch, with which torchvision's C++ ops fail to register.
#  * mmcv 2.1.0 is built from source against the installed torch (no build isolation) with a
#    setuptools that still ships pkg_resources; afterwards setuptools is set to >=77.0.3 (torch) and <81
#    (openmim's `mim` command imports pkg_resources, which setuptools 81 removed).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ROPEVIT_VENV:-$ROOT/.venv}"
PY_BOOT="${PYTHON:-python3}"

TORCH_SPEC="torch===2.13.0"
TORCHVISION_SPEC="torchvision===0.28.0"
MMCV_VERSION="2.1.0"

log() { printf '[setup] %s\n' "$*"; }

if [ ! -x "$VENV/bin/python" ]; then
    log "creating virtual environment at $VENV"
    "$PY_BOOT" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade "pip>=24"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)

have() {  # have <dist> <version>: true when the exact distribution version is installed
    "$PY" - "$1" "$2" <<'PYEOF'
import sys
from importlib.metadata import version, PackageNotFoundError
try:
    ok = version(sys.argv[1]).split('+')[0] == sys.argv[2]
except PackageNotFoundError:
    ok = False
sys.exit(0 if ok else 1)
PYEOF
}

torch_ok() {  # the standard torch build, with torchvision's ops registered
    "$PY" -c "import torch, torchvision; assert '+cpu' not in torch.__version__; torchvision.ops.nms" \
        >/dev/null 2>&1
}

if ! (have torch 2.13.0 && have torchvision 0.28.0 && torch_ok); then
    log "installing $TORCH_SPEC and $TORCHVISION_SPEC (standard builds)"
    "${PIP[@]}" install "$TORCH_SPEC" "$TORCHVISION_SPEC"
fi

if ! (have mmcv "$MMCV_VERSION" && "$PY" -c "from mmcv.ops import nms" >/dev/null 2>&1); then
    log "building mmcv $MMCV_VERSION with its ops against the installed torch (about 10 minutes the first time)"
    # not -c tested.txt here: it holds setuptools at >=77 for the finished environment
    "${PIP[@]}" install "setuptools<70" wheel ninja packaging "$(grep '^mmengine==' "$ROOT/requirements/tested.txt")"
    MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" "${PIP[@]}" install --no-build-isolation "mmcv==$MMCV_VERSION"
fi
# torch 2.13 wants setuptools>=77.0.3; openmim (the `mim` command) still imports pkg_resources, gone since 81.
if ! "$PY" -c "import pkg_resources, setuptools, sys; v = tuple(map(int, setuptools.__version__.split('.')[:2])); \
sys.exit(0 if v >= (77, 0) else 1)" >/dev/null 2>&1; then
    log "installing setuptools>=77.0.3,<81 (torch needs >=77.0.3; mim needs pkg_resources)"
    "${PIP[@]}" install "setuptools>=77.0.3,<81"
fi

# Everything else comes from pyproject.toml (editable install with the extras used by the tests), held to the
# tested versions by requirements/tested.txt, which also keeps pip from replacing the torch build chosen above.
CONSTRAINTS="$ROOT/requirements/tested.txt"
STAMP="$VENV/.ropevit-dense-install"
WANT="$(cat "$ROOT/pyproject.toml" "$CONSTRAINTS" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ] || ! "$PY" -c "import ropevit_dense" >/dev/null 2>&1; then
    log "installing ropevit-dense (editable) with extras mmdet, mmseg, dev"
    "${PIP[@]}" install -c "$CONSTRAINTS" -e "$ROOT[mmdet,mmseg,dev]"
    echo "$WANT" > "$STAMP"
fi

# mmdet's panoptic dataset and PQ metric import panopticapi (COCO's panoptic API), which is not on PyPI under that
# name; panopticapi-lite is the same code. --no-deps: it uses only numpy and Pillow, while its metadata asks for
# numpy<2 and scikit-image, which would replace the environment's numpy.
if ! "$PY" -c "import panopticapi.evaluation, panopticapi.utils" >/dev/null 2>&1; then
    log "installing panopticapi-lite (COCO panoptic API for mmdet's panoptic dataset and PQ metric)"
    "${PIP[@]}" install --no-deps "panopticapi-lite==0.2.0"
fi

log "environment report"
"$PY" -m ropevit_dense.env
