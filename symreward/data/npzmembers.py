"""The members of an ``.npz`` archive one at a time: their ``.npy`` headers, their arrays, and
copies into another archive with the compression each had.

``numpy.load`` reads a whole member per key and ``numpy.savez`` writes one compression for all;
rewriting one key of a large archive with them holds every array in memory and recompresses or
decompresses the rest. Here a member is read only if asked for (its header alone otherwise), and
copied in blocks of ``BLOCK`` bytes, so rewriting one key costs one pass over the others and
little memory. Reading a member to its end checks its CRC, as ``numpy.load`` does.

Nothing is unpickled: a member whose dtype holds Python objects is refused by name.
"""

from __future__ import annotations

import io
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any, TypeVar

import numpy as np

from symreward.errors import DataError

__all__ = ["BLOCK", "NpyHeader", "copy_member", "member_key", "new_member", "read_array",
           "read_header", "write_array"]

#: Bytes read or written at a time when a member is copied.
BLOCK = 16 << 20

_MAGIC = b"\x93NUMPY"
# The most header bytes read, as numpy.load allows by default (a guard against huge headers).
_MAX_HEADER = 10_000
# Errors reading a member raises: a corrupt archive, a bad CRC, a truncated or invalid stream.
READ_ERRORS = (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error)
_T = TypeVar("_T")
# What a new member's time stamp is, so the same inputs give the same archive byte for byte.
_EPOCH = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class NpyHeader:
    """A member's ``.npy`` header: its raw bytes (kept so a copy is byte-identical) and meaning."""

    raw: bytes
    shape: tuple[int, ...]
    fortran_order: bool
    dtype: np.dtype

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def member_key(info: zipfile.ZipInfo) -> str | None:
    """The key ``numpy.load`` gives a member (its name without ``.npy``); None for a member
    that is not an array."""
    name = info.filename
    return name[:-len(".npy")] if name.endswith(".npy") and not info.is_dir() else None


class _Member:
    """An open member being read: every read error becomes a ``DataError`` naming the key (and
    only read errors: a failed write into another archive is not this member's fault)."""

    def __init__(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo, shown: str):
        self.key = member_key(info) or info.filename
        self.shown = shown
        self.stream: IO[bytes] = self._call(archive.open, info)

    def _call(self, function: Callable[..., _T], *args: Any) -> _T:
        try:
            return function(*args)
        except READ_ERRORS as e:
            raise DataError(f"{self.shown}: key {self.key!r} cannot be read: {e}") from e

    def read(self, size: int) -> bytes:
        return self._call(self.stream.read, size)

    def __enter__(self) -> _Member:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stream.close()

    def header(self) -> NpyHeader:
        key, shown = self.key, self.shown
        prefix = self.read(8)
        if len(prefix) < 8 or not prefix.startswith(_MAGIC):
            raise DataError(f"{shown}: key {key!r} is not a .npy array (bad magic bytes)")
        width = 2 if prefix[6] == 1 else 4  # versions 2 and 3 store the length in 4 bytes
        size_bytes = self.read(width)
        size = int.from_bytes(size_bytes, "little")
        if len(size_bytes) < width or size > _MAX_HEADER:
            raise DataError(f"{shown}: key {key!r} has a damaged .npy header")
        raw = prefix + size_bytes + self.read(size)
        parse = np.lib.format.read_array_header_1_0 if prefix[6] == 1 else (
            np.lib.format.read_array_header_2_0)
        try:
            header = io.BytesIO(raw)
            np.lib.format.read_magic(header)
            shape, fortran_order, dtype = parse(header)
        except ValueError as e:
            raise DataError(f"{shown}: key {key!r} has a damaged .npy header: {e}") from e
        if dtype.hasobject:
            raise DataError(f"{shown}: key {key!r} holds Python objects (pickled data); refusing "
                            "to load it: store plain numeric arrays")
        return NpyHeader(raw=raw, shape=tuple(shape), fortran_order=fortran_order, dtype=dtype)


def read_header(archive: zipfile.ZipFile, info: zipfile.ZipInfo, shown: str) -> NpyHeader:
    """The ``.npy`` header of an array member, without reading its data."""
    with _Member(archive, info, shown) as member:
        return member.header()


def read_array(archive: zipfile.ZipFile, info: zipfile.ZipInfo, shown: str
               ) -> tuple[NpyHeader, np.ndarray]:
    """An array member's header and its array, read in blocks into one buffer (one copy, as
    ``numpy.load``); the archive's CRC of the member is checked."""
    with _Member(archive, info, shown) as member:
        header = member.header()
        buffer = np.empty(header.nbytes, dtype=np.uint8)
        view = memoryview(buffer)
        filled = 0
        while filled < header.nbytes:
            block = member.read(min(BLOCK, header.nbytes - filled))
            if not block:
                raise DataError(f"{shown}: key {member.key!r} is truncated: {filled} of "
                                f"{header.nbytes} data bytes")
            view[filled:filled + len(block)] = block
            filled += len(block)
        if member.read(1):  # also reaches the end, where the CRC is checked
            raise DataError(f"{shown}: key {member.key!r} has bytes after its array data")
    order = "F" if header.fortran_order else "C"
    return header, buffer.view(header.dtype).reshape(header.shape, order=order)


def new_member(name: str, like: zipfile.ZipInfo | None) -> zipfile.ZipInfo:
    """A member to write: compressed and stamped as ``like`` (stored and dated 1980 without)."""
    info = zipfile.ZipInfo(name, date_time=like.date_time if like is not None else _EPOCH)
    info.compress_type = like.compress_type if like is not None else zipfile.ZIP_STORED
    info.external_attr = like.external_attr if like is not None else 0o600 << 16
    if like is not None:
        info.comment = like.comment
    return info


def copy_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, out: zipfile.ZipFile,
                shown: str, *, name: str | None = None) -> None:
    """Copy a member into ``out`` in blocks, under ``name`` (default its own), with its
    compression; its CRC is checked on the way."""
    with _Member(archive, info, shown) as member, out.open(
            new_member(name or info.filename, info), "w", force_zip64=True) as target:
        while block := member.read(BLOCK):
            target.write(block)


def write_array(out: zipfile.ZipFile, member: zipfile.ZipInfo, array: np.ndarray,
                header: NpyHeader | None = None) -> None:
    """Write ``array`` as ``member``: after ``header``'s raw bytes (an array read by
    ``read_array``, copied byte for byte), or as ``numpy.save`` writes it (no pickle)."""
    with out.open(member, "w", force_zip64=True) as target:
        if header is None:
            np.lib.format.write_array(target, array, allow_pickle=False)
            return
        target.write(header.raw)
        data = array.reshape(-1, order="F" if header.fortran_order else "C").view(np.uint8)
        for start in range(0, data.size, BLOCK):
            target.write(data[start:start + BLOCK])
