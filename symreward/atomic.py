"""Atomic file writes: a temporary file beside the target, fsync, rename.

A crash or a full disk mid-write leaves any earlier file at the target intact, never a
half-written one.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np

from symreward.errors import SymrewardError


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Call ``write`` on a temporary file next to ``path``, then move it into place."""
    path = Path(path)
    directory = path.parent
    if not directory.is_dir():
        raise SymrewardError(f"{path}: directory {str(directory)!r} does not exist")
    fd, tmp = _create_temp(directory, path.name)
    try:
        with os.fdopen(fd, "w+b") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    sync_directory(directory)


def sync_directory(directory: str | os.PathLike) -> None:
    """Persist a folder's entries (a rename into it); best effort, since not every platform
    lets a directory be opened."""
    with contextlib.suppress(OSError):
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def atomic_write_bytes(path: str | os.PathLike, payload: bytes) -> None:
    atomic_write(path, lambda fh: fh.write(payload))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """``numpy.save`` without pickle, atomically."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    atomic_write_bytes(path, buffer.getvalue())


def _create_temp(directory: Path, name: str) -> tuple[int, Path]:
    """A new hidden file next to the target, created with mode 0o666 so the umask applies.

    ``tempfile.mkstemp`` would create it 0o600, and after the rename the saved file would be
    unreadable to everyone else, unlike a file written in place.
    """
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = directory / f".{name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise SymrewardError(f"{directory / name}: cannot create a temporary file next to it")
