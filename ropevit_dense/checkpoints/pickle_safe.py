"""Safe reading of plain-pickle checkpoints (``.pkl``: detectron2's model zoo, Caffe2 / Detectron weights, the
detectron2 files written by ``tools/convert_checkpoint.py --format d2``).

``torch.load(weights_only=True)`` cannot read these files: they are not torch archives, and torch's restricted
unpickler understands pickle protocol 2 only, while detectron2's files use protocols 2 to 5. They are read here with
Python's own unpickler restricted to the same allowlist as :mod:`ropevit_dense.checkpoints.io`: the containers
torch's ``weights_only`` unpickler accepts (dict, list, tuple, ``OrderedDict``, set, bytes, ...) and the numpy pieces
that rebuild arrays (``ndarray``, ``dtype``, ``_reconstruct``, ``scalar``; ``_frombuffer`` for protocol 5). Any
other global -- the only way a pickle can call code -- is refused with :class:`~.io.UnsafeCheckpointError` before
it is looked up, so nothing in the file runs.
"""

from __future__ import annotations

import _compat_pickle
import collections
import functools
import io
import os
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .io import (
    CheckpointError,
    PathLike,
    UnsafeCheckpointError,
    load_file,
    mmengine_safe_globals,
    resolve,
    unsafe_message,
)

PICKLE_SUFFIXES = (".pkl", ".pickle")


def _qualified_name(obj: Any) -> str:
    return f"{obj.__module__}.{obj.__qualname__}"


@functools.cache
def _allowed_globals() -> dict[str, Any]:
    """``'module.name'`` -> object for every global a safe ``.pkl`` may name (built once)."""
    import numpy as np

    allowed: dict[str, Any] = {
        "collections.OrderedDict": collections.OrderedDict,
        "collections.Counter": collections.Counter,
        "_codecs.encode": __import__("codecs").encode,  # bytes in protocol 0-2 pickles written by Python 3
        "builtins.set": set,
        "builtins.frozenset": frozenset,
        "builtins.bytearray": bytearray,
        "builtins.complex": complex,
        "builtins.slice": slice,
    }
    # the numpy globals of the core loader's allowlist (array reconstruction, dtypes, scalars); the same function
    # also names mmengine's history buffers, which a .pkl never holds and which stay out of this list
    for entry in mmengine_safe_globals():
        obj, name = entry if isinstance(entry, tuple) else (entry, _qualified_name(entry))
        if name.startswith("numpy."):
            allowed[name] = obj
    try:  # numpy >= 2
        from numpy._core.numeric import _frombuffer
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core.numeric import _frombuffer
    allowed[_qualified_name(_frombuffer)] = _frombuffer
    allowed["numpy.dtype"] = np.dtype
    allowed["numpy.ndarray"] = np.ndarray
    # numpy 2 moved numpy.core to numpy._core; files written with numpy 1 (all published model zoos) name the old one
    for name in list(allowed):
        for old, new in (("numpy.core.", "numpy._core."), ("numpy._core.", "numpy.core.")):
            if name.startswith(old):
                allowed.setdefault(new + name[len(old):], allowed[name])
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    """Python's unpickler with :meth:`find_class` limited to :func:`_allowed_globals`.

    Every opcode that can reach a callable (GLOBAL, STACK_GLOBAL, INST, OBJ, the extension registry) resolves it
    through ``find_class``, and persistent ids are refused, so a refused name is never imported or called.
    """

    def __init__(self, file: Any, *, encoding: str) -> None:
        super().__init__(file, encoding=encoding)
        self._allowed = _allowed_globals()

    def find_class(self, module: str, name: str) -> Any:
        # Python 2 names (``__builtin__``, ``copy_reg``), mapped as the default find_class does; no Python 3
        # module has these names, so mapping them whatever the protocol changes nothing else
        module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        full = f"{module}.{name}"
        if full in self._allowed:
            return self._allowed[full]
        raise _RefusedGlobal(full)

    def persistent_load(self, pid: Any) -> Any:
        raise _RefusedGlobal(f"persistent id {pid!r}")


class _RefusedGlobal(pickle.UnpicklingError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def load_pickle(source: PathLike, *, encoding: str = "latin1") -> Any:
    """Read a plain-pickle file (e.g. a detectron2 model-zoo ``.pkl``) with the restricted unpickler.

    Args:
        source (str | PathLike): local path, ``http(s)://`` URL or ``hf://owner/repo/file``.
        encoding (str): how Python 2 ``str`` objects are decoded; ``'latin1'`` (detectron2's choice) keeps the
            bytes of numpy arrays written by Python 2 intact. Default: ``'latin1'``.

    Returns:
        The unpickled object; numpy arrays stay numpy arrays.

    Raises:
        CheckpointError: missing, unreadable or corrupt file.
        UnsafeCheckpointError: the pickle names a global outside the allowlist; nothing from it was executed.
    """
    path = resolve(source)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint '{path}': {exc}") from None
    try:
        return _RestrictedUnpickler(io.BytesIO(data), encoding=encoding).load()
    except _RefusedGlobal as exc:
        raise UnsafeCheckpointError(unsafe_message(path, exc.name)) from None
    except Exception as exc:  # noqa: BLE001 - a damaged pickle fails with many error types
        raise CheckpointError(f"cannot read checkpoint '{path}': it is corrupt or not a pickle file "
                              f"({type(exc).__name__}: {exc})") from None


def arrays_to_tensors(obj: Any) -> Any:
    """A copy of ``obj`` with every numpy array inside dicts / lists turned into a tensor (other values kept)."""
    import numpy as np

    if isinstance(obj, np.ndarray):
        if not (obj.flags.c_contiguous and obj.flags.writeable):  # protocol 5 rebuilds arrays on read-only bytes
            obj = np.array(obj, order="C", copy=True)
        return torch.from_numpy(obj)
    if isinstance(obj, Mapping):
        return {k: arrays_to_tensors(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(arrays_to_tensors(v) for v in obj)
    return obj


def is_pickle_file(source: PathLike) -> bool:
    """True when ``source`` (a path, URL or hub id) names a plain-pickle file by its suffix."""
    return Path(os.fspath(source).split("?")[0]).suffix.lower() in PICKLE_SUFFIXES


def load_any(source: PathLike, map_location: Any = "cpu") -> Any:
    """Read any checkpoint file this package accepts, safely: ``.pkl`` / ``.pickle`` through :func:`load_pickle`
    (numpy arrays become tensors), everything else through :func:`~.io.load_file`.

    Args:
        source (str | PathLike): local path, ``http(s)://`` URL or ``hf://owner/repo/file``.
        map_location: as for :func:`torch.load` (torch files only). Default: ``'cpu'``.
    """
    if is_pickle_file(source):
        return arrays_to_tensors(load_pickle(source))
    return load_file(source, map_location=map_location)
