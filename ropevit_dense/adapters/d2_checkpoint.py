"""detectron2 checkpoints that never run code, never leave a half-written file as the latest, and resume from the
last complete one.

:class:`SafeDetectionCheckpointer` is detectron2's ``DetectionCheckpointer`` with three changes:

* **Reading.** detectron2 unpickles ``.pkl`` files with plain ``pickle`` (a downloaded file could run any code) and
  leaves ``.pth`` / ``.pyth`` to ``torch.load``'s defaults. Here every file goes through the package's safe loaders:
  ``.pkl`` through :func:`ropevit_dense.checkpoints.pickle_safe.load_pickle` (model-zoo files with numpy arrays,
  ``__author__`` and ``matching_heuristics``, Caffe2 ``blobs`` files), everything else through
  :func:`ropevit_dense.checkpoints.load_file` (``weights_only`` and the core allowlist). A file that names any other
  global is refused with :class:`~ropevit_dense.checkpoints.UnsafeCheckpointError`.
* **Writing.** fvcore's ``Checkpointer.save`` opens ``<name>.pth`` for writing in place, then rewrites
  ``last_checkpoint``. A process killed while writing leaves a truncated file under the final name, and when that
  name is already the one ``last_checkpoint`` holds (``model_final.pth`` of a resumed run, a periodic checkpoint
  written again after a resume), the next ``--resume`` reads the truncated file. Here both files are written to a
  temporary file in the same folder, flushed to disk and renamed over the target (``os.replace``, atomic on POSIX),
  so a name only ever points to a complete file.
* **Resuming.** If the checkpoint named in ``last_checkpoint`` cannot be read (e.g. truncated by a crash of a
  version without atomic writes, or by a full disk), a warning names it and the newest earlier checkpoint of the
  folder is used instead. A file refused as unsafe is never skipped silently: the error stops the run.

Importing this module needs detectron2.
"""

from __future__ import annotations

import logging
import math
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch
from detectron2.checkpoint import DetectionCheckpointer

from ..checkpoints.io import CheckpointError, UnsafeCheckpointError, load_file
from ..checkpoints.pickle_safe import is_pickle_file, load_pickle

logger = logging.getLogger(__name__)

__all__ = ["SafeDetectionCheckpointer", "atomic_write"]

_ITERATION = re.compile(r"_(\d+)\.pth$")


def atomic_write(path: str, write: Callable[[IO[bytes]], Any]) -> None:
    """Write ``path`` through ``write(file)`` so that ``path`` is either its old content or the complete new one.

    The data go to a temporary file in the same folder (``.<name>.<random>.tmp``), which is flushed, synced and then
    renamed over ``path``. If ``write`` fails the temporary file is removed and ``path`` is untouched.
    """
    folder, name = os.path.split(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    try:  # make the rename itself durable; not every file system can sync a folder
        dir_fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


def _from_pickle(data: Any, filename: str, log: logging.Logger) -> dict[str, Any]:
    """The checkpoint dict detectron2 makes of a ``.pkl`` (same rules as ``DetectionCheckpointer._load_file``, which
    cannot be reused: it unpickles the file itself)."""
    if not isinstance(data, dict):
        raise CheckpointError(f"'{filename}' holds a {type(data).__name__}, not a checkpoint dict")
    if "model" in data and "__author__" in data:  # detectron2 model-zoo layout
        log.info("Reading a file from '%s'", data["__author__"])
        return data
    # Caffe2 / Detectron model zoo: detection models keep their weights under "blobs", ImageNet models do not
    blobs = data.get("blobs", data)
    blobs = {k: v for k, v in blobs.items() if not k.endswith("_momentum")}
    return {"model": blobs, "__author__": "Caffe2", "matching_heuristics": True}


def _resume_order(path: Path) -> tuple[float, float]:
    """Newest first: ``*_final.pth``, then by the iteration in the name, then by modification time."""
    match = _ITERATION.search(path.name)
    number = math.inf if path.stem.endswith("_final") else (int(match.group(1)) if match else -1)
    return (number, path.stat().st_mtime)


class SafeDetectionCheckpointer(DetectionCheckpointer):
    """detectron2's ``DetectionCheckpointer`` reading every file safely, writing atomically and resuming from the
    last checkpoint that loads (see the module docstring). Same constructor and methods as the parent; use it
    wherever a ``DetectionCheckpointer`` is built (training, resuming, evaluation, inference scripts).

    Example::

        checkpointer = SafeDetectionCheckpointer(model, cfg.train.output_dir, trainer=trainer)
        checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=True)
    """

    # -- reading -------------------------------------------------------------------------------------------------
    def load(self, path: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        try:
            return super().load(path, *args, **kwargs)
        finally:
            # the parent resets this only when loading succeeds, and asserts it is unset on the next call
            self._parsed_url_during_load = None

    def _load_file(self, filename: str) -> dict[str, Any]:
        if is_pickle_file(filename):
            return _from_pickle(load_pickle(filename), filename, self.logger)
        if filename.endswith(".pyth"):  # pycls checkpoints, as the parent reads them
            data = load_file(filename, map_location="cpu")
            if not isinstance(data, dict) or "model_state" not in data:
                raise CheckpointError(f"cannot load .pyth file '{filename}': pycls checkpoints hold 'model_state'")
            state = {k: v for k, v in data["model_state"].items() if not k.endswith("num_batches_tracked")}
            return {"model": state, "__author__": "pycls", "matching_heuristics": True}
        return super()._load_file(filename)  # .pth and the rest: the parent's URL handling, over _torch_load

    def _torch_load(self, f: str) -> Any:
        return load_file(f, map_location="cpu")

    # -- writing -------------------------------------------------------------------------------------------------
    def _is_local(self) -> bool:
        return "://" not in str(self.save_dir)

    def save(self, name: str, **kwargs: Any) -> None:
        """Save the model and checkpointables as ``<save_dir>/<name>.pth``, atomically, then tag it as the last.

        Builds the same dict as fvcore's ``Checkpointer.save`` (``model``, each checkpointable, ``kwargs``), which
        writes in place and is used as it is for non-local folders (``s3://``, ...).
        """
        if not self.save_dir or not self.save_to_disk:
            return
        if not self._is_local():
            super().save(name, **kwargs)
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        if os.path.basename(save_file) != basename:
            raise ValueError(f"checkpoint name '{name}' must not contain a folder")
        for stale in Path(self.save_dir).glob(f".{basename}.*.tmp"):  # left by a process killed while saving
            stale.unlink(missing_ok=True)
        self.logger.info("Saving checkpoint to %s", save_file)
        atomic_write(save_file, lambda fh: torch.save(data, fh))
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        if not self._is_local():
            super().tag_last_checkpoint(last_filename_basename)
            return
        atomic_write(os.path.join(self.save_dir, "last_checkpoint"),
                     lambda fh: fh.write(last_filename_basename.encode("utf-8")))

    # -- resuming ------------------------------------------------------------------------------------------------
    def _resume_candidates(self) -> list[str]:
        """The file ``last_checkpoint`` names, then every other ``.pth`` of the folder, newest first."""
        named = self.get_checkpoint_file()
        folder = Path(self.save_dir)
        others = sorted((p for p in folder.glob("*.pth") if p.is_file() and os.path.normpath(p) !=
                         os.path.normpath(named)), key=_resume_order, reverse=True)
        return [named, *map(str, others)]

    def resume_or_load(self, path: str, *, resume: bool = True) -> dict[str, Any]:
        """As the parent: with ``resume`` and a ``last_checkpoint`` in ``save_dir``, load it with every
        checkpointable; otherwise load only the model from ``path``. A last checkpoint that cannot be read is
        skipped with a warning naming it, in favour of the newest earlier one.

        Raises:
            UnsafeCheckpointError: a checkpoint names a global outside the allowlist (never skipped).
            CheckpointError: no checkpoint of the folder can be read.
        """
        if not (resume and self.has_checkpoint()):
            return self.load(path, checkpointables=[])
        if not self._is_local():
            return self.load(self.get_checkpoint_file())
        failed: list[str] = []
        for candidate in self._resume_candidates():
            if not os.path.isfile(candidate):
                failed.append(f"{candidate} (missing)")
                logger.warning("last_checkpoint names '%s', which does not exist; trying the previous checkpoint",
                               candidate)
                continue
            try:
                return self.load(candidate)
            except UnsafeCheckpointError:
                raise
            except CheckpointError as exc:
                failed.append(f"{candidate} ({exc})")
                logger.warning("cannot resume from '%s': %s. Trying the previous checkpoint.", candidate, exc)
        raise CheckpointError(f"cannot resume from '{self.save_dir}': no checkpoint in it can be read: "
                              + "; ".join(failed))

