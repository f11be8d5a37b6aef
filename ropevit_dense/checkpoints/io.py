"""Safe reading of checkpoint files from a local path, an http(s) URL or a Hugging Face hub id.

Nothing here ever unpickles with ``weights_only=False``: a checkpoint from the internet must not be able to run
code. torch's restricted unpickler is used for every pickle-based file, extended by a narrow allowlist of the exact
globals that mmengine writes into its training checkpoints (``message_hub`` history buffers, which hold numpy
arrays). ``.safetensors`` files are read with the safetensors library.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Union
from urllib.parse import urlparse

import torch

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]

HF_PREFIX = "hf://"
# File names tried, in order, when a hub id names a repository and not a file in it.
HF_DEFAULT_FILES = ("model.safetensors", "pytorch_model.bin", "checkpoint.pth", "model.pth")


class CheckpointError(RuntimeError):
    """A checkpoint could not be found, read or mapped onto a model."""


class UnsafeCheckpointError(CheckpointError):
    """A pickle-based checkpoint references globals outside the allowlist (it could run code when loaded)."""


def unsafe_message(path: Any, names: str) -> str:
    """The wording of :class:`UnsafeCheckpointError`, shared by every loader of this package."""
    return (f"refusing to load '{path}': its pickle references globals outside the allowlist ({names}). "
            "Unpickling it could run arbitrary code, so it is not loaded. If you trust the file, re-save its "
            "tensors as a plain state dict (or .safetensors) in a trusted environment.")


def _numpy_globals() -> list[Any]:
    """The numpy pieces needed to rebuild the arrays that mmengine's ``HistoryBuffer`` stores."""
    import numpy as np

    try:  # numpy >= 2
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.multiarray import _reconstruct, scalar
    dtype_classes = [type(np.dtype(name)) for name in ("float64", "float32", "int64", "int32", "bool")]
    return [_reconstruct, scalar, np.ndarray, np.dtype, *dtype_classes]


_HISTORY_BUFFER_METHODS = frozenset({"min", "max", "current", "mean"})


def _history_buffer_getattr(obj: Any, name: str) -> Any:
    """Stand-in for ``builtins.getattr`` while unpickling: only ``HistoryBuffer.<statistic>`` lookups.

    mmengine pickles the statistics methods of its history buffers as ``getattr(HistoryBuffer, 'mean')``; a
    general ``getattr`` would hand any attribute of any allowed object to the pickle.
    """
    from mmengine.logging.history_buffer import HistoryBuffer

    if obj is HistoryBuffer and name in _HISTORY_BUFFER_METHODS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(f"getattr({obj!r}, {name!r}) is not allowed in a checkpoint")


def mmengine_safe_globals() -> list[Any]:
    """The exact non-tensor globals found in an mmengine (0.10.x) training checkpoint.

    ``meta['message_hub']['log_scalars']`` holds ``mmengine.logging.HistoryBuffer`` objects whose state is numpy
    arrays plus their statistics methods (pickled through ``getattr``, served by :func:`_history_buffer_getattr`);
    everything else in such a checkpoint (state dicts, optimizer and scheduler state, strings, numbers) is already
    accepted by torch's ``weights_only`` unpickler.
    """
    allowed = _numpy_globals()
    try:
        from mmengine.logging.history_buffer import HistoryBuffer
    except ImportError:
        pass
    else:
        allowed += [HistoryBuffer, (_history_buffer_getattr, "builtins.getattr")]
    return allowed


def allow_mmengine_checkpoints() -> None:
    """Register :func:`mmengine_safe_globals` with torch so mmengine's own ``torch.load`` calls accept its checkpoints.

    mmengine 0.10.x calls ``torch.load`` without ``weights_only``; since torch 2.6 that means the restricted
    unpickler, which rejects the history buffers in ``meta``. Registering the few globals it needs keeps
    ``weights_only`` on for every file while making ``test`` and ``--resume`` work. Idempotent.
    """
    add = getattr(torch.serialization, "add_safe_globals", None)
    if add is None:  # pragma: no cover - torch < 2.4 loads these without an allowlist
        return
    current = {id(g[0] if isinstance(g, tuple) else g) for g in torch.serialization.get_safe_globals()}
    add([g for g in mmengine_safe_globals() if id(g[0] if isinstance(g, tuple) else g) not in current])


def _unsafe_globals(path: Path) -> list[str]:
    finder = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)
    if finder is None:  # pragma: no cover - older torch
        return []
    try:
        return list(finder(str(path)))
    except Exception:  # noqa: BLE001 - best effort: only used to word the error
        return []


def _torch_load(path: Path, map_location: Any, extra_globals: Iterable[Any]) -> Any:
    allowed = [*mmengine_safe_globals(), *extra_globals]
    try:
        with torch.serialization.safe_globals(allowed):
            return torch.load(str(path), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        safe_ids = {g[1] if isinstance(g, tuple) else f"{g.__module__}.{g.__qualname__}" for g in allowed}
        offending = [g for g in _unsafe_globals(path) if g not in safe_ids]
        if not offending:
            offending = re.findall(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        names = ", ".join(offending) if offending else "an unsupported pickle construct"
        raise UnsafeCheckpointError(unsafe_message(path, names)) from None
    except Exception as exc:  # noqa: BLE001 - a damaged file fails in the zip reader or the unpickler, any type
        raise CheckpointError(f"cannot read checkpoint '{path}': it is corrupt or not a torch file ({exc})") from None


def _load_safetensors(path: Path, map_location: Any) -> dict[str, torch.Tensor]:
    try:
        from safetensors.torch import load_file
    except ImportError as exc:  # pragma: no cover - safetensors is a dependency
        raise CheckpointError("reading .safetensors files needs the 'safetensors' package") from exc
    device = map_location if isinstance(map_location, (str, torch.device)) else "cpu"
    try:
        return load_file(str(path), device=str(device))
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise CheckpointError(f"cannot read safetensors checkpoint '{path}': {exc}") from None


def url_cache_path(url: str) -> Path:
    """Where a downloaded ``url`` is cached: ``<torch hub dir>/checkpoints/<url hash>/<file name>``.

    The folder is keyed by the whole URL: two URLs ending in the same file name (``.../resolve/main/pytorch_model.bin``
    of two hub repositories) must never share a cached file, or the second would silently load the first's weights.
    """
    name = os.path.basename(urlparse(url).path) or "checkpoint.pth"
    key = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    return Path(torch.hub.get_dir()) / "checkpoints" / key / name


def _download_url(url: str) -> Path:
    target = url_cache_path(url)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        logger.info("downloading %s to %s", url, target)
        try:
            # Writes to a temporary file and renames it, so an interrupted download leaves nothing behind.
            torch.hub.download_url_to_file(url, str(target), progress=False)
        except Exception as exc:  # noqa: BLE001 - network errors come in many types
            raise CheckpointError(f"cannot download checkpoint from '{url}': {exc}") from None
    return target


def _download_hf(spec: str) -> Path:
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.utils import EntryNotFoundError
    except ImportError as exc:
        raise CheckpointError(f"loading '{spec}' needs the 'huggingface_hub' package (pip install huggingface_hub)") \
            from exc
    body = spec[len(HF_PREFIX):].strip("/")
    parts = body.split("/")
    if len(parts) < 2 or not all(parts[:2]):
        raise CheckpointError(f"bad hub id '{spec}': expected hf://<owner>/<repo>[/<file>]")
    repo_id = "/".join(parts[:2])
    filenames = ["/".join(parts[2:])] if len(parts) > 2 else list(HF_DEFAULT_FILES)
    errors = []
    for filename in filenames:
        try:
            return Path(hf_hub_download(repo_id=repo_id, filename=filename))
        except EntryNotFoundError as exc:
            errors.append(f"{filename}: {exc}")
        except Exception as exc:  # noqa: BLE001 - offline, auth, missing repo
            refused = _access_refused(exc)
            if refused:
                raise CheckpointError(
                    f"cannot download '{filename}' from hub repository '{repo_id}': {refused}: accept its licence at "
                    f"https://huggingface.co/{repo_id} and log in with `huggingface-cli login` (`hf auth login` in "
                    "recent huggingface_hub) or set HF_TOKEN; the loader passes your token through huggingface_hub "
                    f"({type(exc).__name__}: {exc})") from None
            raise CheckpointError(f"cannot download '{filename}' from hub repository '{repo_id}': {exc}") from None
    raise CheckpointError(f"hub repository '{repo_id}' has none of {filenames}: {'; '.join(errors)}")


def _access_refused(exc: BaseException) -> str:
    """Why the hub refused access (huggingface_hub's gated-repository error, or an HTTP 401 / 403), else ''."""
    try:
        from huggingface_hub.errors import GatedRepoError
    except ImportError:  # pragma: no cover - older huggingface_hub
        GatedRepoError = None  # noqa: N806
    if GatedRepoError is not None and isinstance(exc, GatedRepoError):
        return "this repository is gated"
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status in (401, 403):
        return f"access refused (HTTP {status}); if this repository is gated"
    return ""


def resolve(source: PathLike) -> Path:
    """Turn a local path, an ``http(s)://`` URL or an ``hf://owner/repo[/file]`` id into a local file path."""
    text = os.fspath(source)
    if text.startswith(HF_PREFIX):
        return _download_hf(text)
    if urlparse(text).scheme in ("http", "https"):
        return _download_url(text)
    path = Path(text).expanduser()
    if not path.exists():
        raise CheckpointError(f"checkpoint file not found: '{path}'")
    if not path.is_file():
        raise CheckpointError(f"checkpoint path is not a file: '{path}'")
    return path


def load_file(source: PathLike, map_location: Any = "cpu", extra_safe_globals: Iterable[Any] = ()) -> Any:
    """Read a checkpoint file safely.

    Args:
        source (str | PathLike): local path, ``http(s)://`` URL, or ``hf://owner/repo[/file]``.
        map_location: as for :func:`torch.load`. Default: ``'cpu'``.
        extra_safe_globals (Iterable): further globals to accept, for callers that know exactly what a trusted
            format contains. Default: none.

    Returns:
        The unpickled object (usually a dict) or, for ``.safetensors``, a flat dict of tensors.

    Raises:
        CheckpointError: missing or corrupt file, failed download.
        UnsafeCheckpointError: the pickle references a global outside the allowlist; nothing from it was executed.
    """
    path = resolve(source)
    if path.suffix == ".safetensors":
        return _load_safetensors(path, map_location)
    return _torch_load(path, map_location, extra_safe_globals)
