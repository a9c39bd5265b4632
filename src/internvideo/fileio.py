"""Writing files so that a crash or a full disk never leaves half a file under the real name.

Every artefact the package writes (checkpoints, configs, results, indexes,
features) goes through :func:`atomic_path`: it is written under a temporary
name beside the target and renamed over it only when complete, so a reader
sees the old file or the new one, never a torn one, and a rerun recognises
what is missing. A full disk (or quota) is one error, :class:`DiskFullError`,
that names the path being written, whatever library was writing (safetensors,
SQLite and FAISS raise their own exception types for it).

Imports nothing of the package but :mod:`.errors`, so every layer may use it.
"""
from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import UserError, printable

__all__ = ["DiskFullError", "TextDecodeError", "atomic_path", "write_text", "write_json", "json_text", "read_text",
           "printable", "disk_full_guard", "is_disk_full"]

_DISK_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
# How libraries that do not raise OSError say it (safetensors, SQLite, FAISS).
_DISK_FULL_TEXTS = ("no space left on device", "database or disk is full", "disk quota exceeded",
                    "not enough space")


class DiskFullError(UserError, OSError):
    """The disk (or quota) filled up while writing ``filename``; nothing partial was left under its name."""

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__(errno.ENOSPC, "No space left on device (nothing partial was kept; free some space and run "
                                       "again)", str(path))

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) says the disk or quota is full."""
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, OSError) and exc.errno in _DISK_FULL_ERRNOS:
            return True
        if any(t in str(exc).lower() for t in _DISK_FULL_TEXTS):
            return True
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return False


@contextlib.contextmanager
def disk_full_guard(path: str | os.PathLike) -> Iterator[None]:
    """Turn a full-disk failure of any library inside the block into :class:`DiskFullError` naming ``path``."""
    try:
        yield
    except DiskFullError:
        raise
    except Exception as e:
        if is_disk_full(e):
            raise DiskFullError(path) from e
        raise


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, directory: bool = False) -> Iterator[Path]:
    """A temporary path beside ``path`` to write; renamed over ``path`` when the block ends normally, removed
    when it fails. ``directory=True`` for a folder of files (a checkpoint)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    _remove(tmp)
    try:
        with disk_full_guard(path):
            yield tmp
            if directory and path.is_dir():
                _remove(path)  # a folder cannot be renamed over a full one
            os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any, *, indent: int | None = 2, default: Any = None) -> Path:
    """Write ``obj`` atomically as strict JSON: a NaN or infinity (a value that is undefined, such as the AP of
    a class without ground truth) is written as ``null``, never as the bare ``NaN`` no JSON reader accepts."""
    return write_text(path, json_text(obj, indent=indent, default=default) + "\n")


def json_text(obj: Any, *, indent: int | None = 2, default: Any = None) -> str:
    """``json.dumps`` with non-finite numbers as ``null`` (valid JSON, unlike Python's default ``NaN``)."""
    return json.dumps(_finite_or_null(obj), indent=indent, default=default, allow_nan=False)


def _finite_or_null(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_or_null(v) for v in obj]
    if type(obj).__module__ == "numpy" and hasattr(obj, "item") and getattr(obj, "ndim", 1) == 0:
        return _finite_or_null(obj.item())
    return obj


class TextDecodeError(UserError, ValueError):
    """A file that should be UTF-8 text is not (a binary file, another encoding); names the file and line."""

    def __init__(self, path: str | os.PathLike, line: int, problem: str) -> None:
        super().__init__(f"{os.fspath(path)}:{line}: {problem}")
        self.path, self.line, self.problem = os.fspath(path), line, problem


def read_text(path: str | os.PathLike) -> str:
    """A UTF-8 text file's contents, a leading BOM dropped (editors on Windows write one; it would stick to the
    first name). Bytes that are not UTF-8 (a binary file where text belongs) are :class:`TextDecodeError`."""
    data = Path(path).read_bytes()
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        start = data.rfind(b"\n", 0, e.start) + 1
        kind = "a binary file? " if b"\x00" in data[:4096] else ""
        raise TextDecodeError(path, line, f"not valid UTF-8 (byte {e.start - start + 1} of the line: "
                                          f"{data[e.start:e.start + 1]!r}); {kind}save it as UTF-8") from None


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
