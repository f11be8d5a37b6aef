"""Crash-safe training checkpoints for mmengine runners (mmdet, mmseg): ``RoPECheckpointHook``.

mmengine 0.10.7 saves a checkpoint by opening ``iter_N.pth`` for writing and writing the bytes into it
(``LocalBackend.put``), deletes the oldest kept checkpoint *before* that (``max_keep_ckpts``), and then rewrites
``last_checkpoint`` in place; ``--resume`` loads whatever path ``last_checkpoint`` names (``find_latest_checkpoint``),
without looking at the file. So a process killed at the wrong moment can leave:

* a truncated ``iter_N.pth`` that ``last_checkpoint`` names — when the killed save rewrites a file of that name
  (a run restarted from an earlier checkpoint in the same work dir saves the same ``iter_N.pth`` again) or when
  the machine goes down before the page cache reaches the disk (nothing is fsynced);
* ``last_checkpoint`` naming a deleted file (``max_keep_ckpts=1``: the only complete checkpoint is removed before
  the new one is written);
* an empty ``last_checkpoint`` (killed between its truncation and its write); mmengine then "resumes" from ``''``.

``--resume`` then fails with torch's "PytorchStreamReader failed reading zip archive: failed finding central
directory" or a FileNotFoundError, and the completed iterations look lost. This hook, a drop-in replacement for
``CheckpointHook`` (same arguments), closes each gap:

* saving writes ``.iter_N.pth.partial``, fsyncs it and renames it over ``iter_N.pth`` (``os.replace``, atomic on
  POSIX); ``last_checkpoint`` is replaced the same way, after the rename; older checkpoints are deleted only once
  the new one is complete;
* on ``--resume`` it checks the named file (zip structure and every member's CRC) and, when it is damaged or
  missing, warns naming it and falls back to the newest complete ``iter_*.pth`` / ``epoch_*.pth`` in the folder;
  an explicitly named ``--resume FILE`` that is damaged stops at once with the file and the problem;
* it stores torch's RNG state in the checkpoint's ``meta`` and restores it before the first resumed iteration, so
  a resumed run draws the same random numbers (DINO's denoising queries, dropout, drop-path) as an uninterrupted
  one. Data augmentation draws are reproduced by mmengine itself, which replays the sampler and pipeline for the
  skipped iterations.

Use it from a config (with ``ropevit_dense.adapters.mmdet_guards`` or ``.mmseg_guards`` in ``custom_imports``)::

    default_hooks = dict(checkpoint=dict(type='RoPECheckpointHook', by_epoch=False, interval=5000))
"""

from __future__ import annotations

import logging
import os
import os.path as osp
import re
import zipfile
from typing import Any, Optional

import torch
from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log

from ..checkpoints import load_file

RNG_META_KEY = "torch_rng_state"
CUDA_RNG_META_KEY = "cuda_rng_states"
PARTIAL_SUFFIX = ".partial"


def checkpoint_problem(path: str) -> Optional[str]:
    """Why ``path`` cannot be resumed from (missing, empty, truncated, damaged), or None for a complete file.

    torch writes checkpoints as zip archives whose directory sits at the end, so a cut-short file has none; every
    member also carries a CRC-32, which :meth:`zipfile.ZipFile.testzip` checks (one read of the file, no
    unpickling). A file in torch's older non-zip format is read with the safe loader instead.
    """
    if not path:
        return "empty path"
    if not osp.isfile(path):
        return "file does not exist"
    size = osp.getsize(path)
    if size == 0:
        return "empty file (0 bytes)"
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic == b"PK\x03\x04":
        if not zipfile.is_zipfile(path):
            return f"truncated: {size} bytes and no zip directory at the end (an interrupted write)"
        try:
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            return f"damaged zip archive ({exc})"
        if bad is not None:
            return f"damaged: member {bad} fails its CRC check"
        if not any(n.endswith("data.pkl") for n in names):
            return "not a torch checkpoint (no data.pkl in the archive)"
        return None
    try:
        load_file(path)
    except Exception as exc:  # noqa: BLE001 - any failure means "cannot resume from it"; the reason is reported
        return f"cannot be read ({type(exc).__name__}: {exc})"
    return None


def _step_pattern(filename_tmpl: str) -> re.Pattern:
    head, _, tail = filename_tmpl.partition("{}")
    return re.compile(re.escape(head) + r"(\d+)" + re.escape(tail) + "$")


def find_resumable_checkpoint(work_dir: str, filename_tmpl: str) -> tuple[Optional[str], list[tuple[str, str]]]:
    """The checkpoint ``--resume`` should load: the one ``last_checkpoint`` names if complete, else the newest
    complete ``filename_tmpl`` file next to it (or in ``work_dir``).

    Returns:
        (path or None, [(skipped path, why), ...]). (None, []) when nothing was ever saved.
    """
    pointer = osp.join(work_dir, "last_checkpoint")
    named = ""
    if osp.isfile(pointer):
        with open(pointer) as f:
            named = f.read().strip()
    folders = [osp.dirname(named)] if named and osp.isdir(osp.dirname(named)) else []
    folders += [work_dir] if work_dir not in folders else []
    pattern = _step_pattern(filename_tmpl)
    found = {osp.join(d, n): int(m.group(1)) for d in folders for n in os.listdir(d) if (m := pattern.match(n))}
    candidates = sorted(found, key=found.get, reverse=True)
    skipped = []
    if named:
        candidates = [named] + [c for c in candidates if osp.abspath(c) != osp.abspath(named)]
    elif candidates:
        why = "empty (interrupted while being written)" if osp.isfile(pointer) else "missing"
        skipped.append((pointer, f"{why}: it names no checkpoint"))
    for path in candidates:
        problem = checkpoint_problem(path)
        if problem is None:
            return path, skipped
        skipped.append((path, problem))
    return None, skipped


def _replace_atomically(src: str, dst: str) -> None:
    fd = os.open(src, os.O_RDONLY)
    try:
        os.fsync(fd)  # the bytes reach the disk before the name does
    finally:
        os.close(fd)
    os.replace(src, dst)
    try:
        dir_fd = os.open(osp.dirname(osp.abspath(dst)) or ".", os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_text_atomically(path: str, text: str) -> None:
    """Replace ``path`` with ``text`` so that a reader sees the old or the new content, never a mix or nothing."""
    tmp = f"{path}{PARTIAL_SUFFIX}"
    with open(tmp, "w") as f:
        f.write(text)
    _replace_atomically(tmp, path)


class RoPECheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` with atomic saves, a checked ``--resume`` and resumable RNG state.

    Args:
        restore_rng: save torch's RNG state with each checkpoint and restore it on resume (default True).
        **kwargs: every ``CheckpointHook`` argument (``interval``, ``by_epoch``, ``max_keep_ckpts``, ...).
    """

    def __init__(self, restore_rng: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.restore_rng = bool(restore_rng)
        self._pending_rng: Optional[dict] = None

    # ---- resume -------------------------------------------------------------------------------------------------
    def before_run(self, runner) -> None:
        """Pick a complete checkpoint for ``--resume`` before mmengine loads one (``Runner.load_or_resume``)."""
        if not getattr(runner, "_resume", False):
            return
        explicit = getattr(runner, "_load_from", None)
        if explicit is not None:
            problem = checkpoint_problem(explicit) if "://" not in str(explicit) else None
            if problem is not None:
                raise RuntimeError(f"cannot resume from {explicit}: {problem}")
            return
        chosen, skipped = find_resumable_checkpoint(runner.work_dir, self.filename_tmpl)
        for path, problem in skipped:
            runner.logger.warning(f"not resuming from {path}: {problem}")
        if chosen is None:
            if skipped:
                raise RuntimeError(f"--resume: no complete checkpoint in {runner.work_dir} (see the warnings above); "
                                   "remove the damaged files to start from scratch")
            return  # nothing saved yet: mmengine starts from scratch and says so
        if skipped:
            runner.logger.warning(f"resuming from {chosen}, the latest complete checkpoint")
        runner._load_from = chosen  # Runner.load_or_resume resumes from _load_from when _resume is set

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if self.restore_rng and getattr(runner, "_resume", False):
            meta = checkpoint.get("meta", {}) if isinstance(checkpoint, dict) else {}
            if RNG_META_KEY in meta:
                self._pending_rng = {k: meta[k] for k in (RNG_META_KEY, CUDA_RNG_META_KEY) if k in meta}

    def before_train_iter(self, runner, batch_idx: int, data_batch: Any = None) -> None:
        if self._pending_rng is None:
            return
        state, self._pending_rng = self._pending_rng, None
        torch.set_rng_state(state[RNG_META_KEY].cpu())
        cuda = state.get(CUDA_RNG_META_KEY)
        if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda])
        print_log("restored the RNG state saved with the checkpoint", logger="current", level=logging.INFO)

    # ---- saving -------------------------------------------------------------------------------------------------
    def before_train(self, runner) -> None:
        super().before_train(runner)
        if is_main_process() and isinstance(self.file_backend, LocalBackend) and osp.isdir(self.out_dir):
            for name in os.listdir(self.out_dir):
                if name.startswith(".") and name.endswith(PARTIAL_SUFFIX):  # left by a save that was killed
                    os.remove(osp.join(self.out_dir, name))
                    runner.logger.info(f"removed the unfinished checkpoint {name} of an interrupted save")

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        meta = dict(meta)
        if self.restore_rng:
            meta[RNG_META_KEY] = torch.get_rng_state()
            if torch.cuda.is_available() and torch.cuda.is_initialized():
                meta[CUDA_RNG_META_KEY] = torch.cuda.get_rng_state_all()
        if not isinstance(self.file_backend, LocalBackend):  # object stores write whole objects or nothing
            super()._save_checkpoint_with_step(runner, step, meta)
            return
        stale = []
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                stale.append(self.keep_ckpt_ids.popleft())
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info("keep_ckpt_ids", list(self.keep_ckpt_ids))
        name = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, name)
        runner.message_hub.update_info("last_ckpt", self.last_ckpt)
        partial = f".{name}{PARTIAL_SUFFIX}"
        runner.save_checkpoint(self.out_dir, partial, self.file_client_args, save_optimizer=self.save_optimizer,
                               save_param_scheduler=self.save_param_scheduler, meta=meta, by_epoch=self.by_epoch,
                               backend_args=self.backend_args, **self.args)
        if not is_main_process():
            return
        _replace_atomically(self.file_backend.join_path(self.out_dir, partial), self.last_ckpt)
        write_text_atomically(osp.join(runner.work_dir, "last_checkpoint"), self.last_ckpt)
        for old in stale:
            path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(old))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):  # checkpoints saved by deepspeed are folders
                self.file_backend.rmtree(path)
