"""The members of an ``.npz`` archive one at a time: their ``.npy`` headers and arrays, checks of
their CRC, and an archive writer that copies members from another archive as their stored bytes.

``numpy.load`` reads a whole member per key and ``numpy.savez`` writes one compression for all;
rewriting one key of a large archive with them holds every array in memory and decompresses and
recompresses the others. Here a member is read only if asked for (its header alone otherwise),
a stored one straight into its array; and ``ArchiveWriter.copy`` copies a member's stored bytes
as they are (no recompression; in the kernel where the system can), so rewriting one key costs
little more than copying the file. A member's CRC is checked whenever it is read or checked,
as ``numpy.load`` does.

Nothing is unpickled: a member whose dtype holds Python objects is refused by name.
"""

from __future__ import annotations

import errno
import io
import os
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any, BinaryIO, TypeVar

import numpy as np

from symreward.errors import DataError

__all__ = ["READ_ERRORS", "ArchiveWriter", "NpyHeader", "check_member", "member_key",
           "read_array", "read_header", "read_rows", "rows_readable"]

#: Bytes read or written at a time.
BLOCK = 16 << 20
#: Errors reading a member raises: a corrupt archive, a bad CRC, a truncated or invalid stream.
READ_ERRORS = (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error)

_T = TypeVar("_T")
_MAGIC = b"\x93NUMPY"
# The most header bytes read, as numpy.load allows by default (a guard against huge headers).
_MAX_HEADER = 10_000
# What a new member's time stamp is without a member to take it from (the same inputs give the
# same archive, byte for byte).
_EPOCH = (1980, 1, 1, 0, 0, 0)
_ENCRYPTED, _DATA_DESCRIPTOR, _UTF8 = 0x1, 0x8, 0x800
_ZIP64_VERSION, _UNIX = 45, 3
_NO_SIZE, _NO_COUNT = 0xFFFF_FFFF, 0xFFFF
# The zip format's records (APPNOTE 4.3): local header, central directory header, zip64 end
# of central directory and its locator, end of central directory.
_LOCAL = struct.Struct("<4s2B4HL2L2H")
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
_END64 = struct.Struct("<4sQ2H2L4Q")
_LOCATOR = struct.Struct("<4sLQL")
_END = struct.Struct("<4s4H2LH")


@dataclass(frozen=True)
class NpyHeader:
    """A member's ``.npy`` header: its raw bytes and what they say."""

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
    """A member open for reading: every read error becomes a ``DataError`` naming the key."""

    def __init__(self, archive: zipfile.ZipFile, info: zipfile.ZipInfo, shown: str):
        self.key = member_key(info) or info.filename
        self.shown = shown
        if info.flag_bits & _ENCRYPTED:
            raise DataError(f"{shown}: key {self.key!r} is encrypted; symreward reads plain "
                            "archives only")
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


def check_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, shown: str) -> None:
    """Read a member through (decompressing it) to check its CRC; the data is not kept."""
    with _Member(archive, info, shown) as member:
        while member.read(BLOCK):
            pass


def read_array(archive: zipfile.ZipFile, info: zipfile.ZipInfo, shown: str,
               header: NpyHeader) -> np.ndarray:
    """An array member's array (``header`` from ``read_header``), in one buffer (one copy, as
    ``numpy.load``); its CRC is checked. A stored member is read straight into the buffer."""
    key = member_key(info) or info.filename
    buffer = np.empty(header.nbytes, dtype=np.uint8)
    stored = (info.compress_type == zipfile.ZIP_STORED and archive.fp is not None
              and hasattr(os, "preadv"))
    if stored and info.file_size == len(header.raw) + header.nbytes:
        start = data_offset(archive.fp.fileno(), info, shown) + len(header.raw)
        _pread_into(archive.fp.fileno(), buffer, start, key, shown)
        if zlib.crc32(buffer, zlib.crc32(header.raw)) != info.CRC:
            raise DataError(f"{shown}: key {key!r} cannot be read: Bad CRC-32 (the stored "
                            "bytes differ from those the archive recorded)")
    else:
        with _Member(archive, info, shown) as member:
            member.read(len(header.raw))
            view = memoryview(buffer)
            filled = 0
            while filled < header.nbytes:
                block = member.read(min(BLOCK, header.nbytes - filled))
                if not block:
                    raise DataError(f"{shown}: key {key!r} is truncated: {filled} of "
                                    f"{header.nbytes} data bytes")
                view[filled:filled + len(block)] = block
                filled += len(block)
            if member.read(1):  # also reaches the end, where the CRC is checked
                raise DataError(f"{shown}: key {key!r} has bytes after its array data")
    order = "F" if header.fortran_order else "C"
    return buffer.view(header.dtype).reshape(header.shape, order=order)


def rows_readable(archive: zipfile.ZipFile, info: zipfile.ZipInfo, header: NpyHeader) -> bool:
    """Whether ``read_rows`` can read part of the member: it is stored (not compressed), in C
    order, and exactly as long as its header says."""
    return (info.compress_type == zipfile.ZIP_STORED and not header.fortran_order
            and len(header.shape) >= 1 and archive.fp is not None and hasattr(os, "preadv")
            and info.file_size == len(header.raw) + header.nbytes)


def read_rows(archive: zipfile.ZipFile, info: zipfile.ZipInfo, shown: str, header: NpyHeader,
              start: int, stop: int) -> np.ndarray:
    """Rows ``[start, stop)`` of an array member (along its first axis).

    All rows are ``read_array``'s (CRC checked). Part of a member is read from its place in the
    file, which needs ``rows_readable``; the archive's CRC covers the whole member only, so a
    part is read unchecked."""
    rows = header.shape[0] if header.shape else 0
    if start == 0 and stop == rows:
        return read_array(archive, info, shown, header)
    key = member_key(info) or info.filename
    if not rows_readable(archive, info, header):
        raise DataError(f"{shown}: key {key!r} is compressed or in Fortran order: its rows "
                        "can only be read all at once")
    row_bytes = header.nbytes // rows
    buffer = np.empty((stop - start) * row_bytes, dtype=np.uint8)
    start_byte = data_offset(archive.fp.fileno(), info, shown) + len(header.raw)
    _pread_into(archive.fp.fileno(), buffer, start_byte + start * row_bytes, key, shown)
    return buffer.view(header.dtype).reshape((stop - start, *header.shape[1:]))


def map_rows(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: str, header: NpyHeader,
             start: int, stop: int) -> np.ndarray:
    """Rows ``[start, stop)`` of a member ``rows_readable`` as a read-only memory map of its
    place in the file: no copy and no read until the rows are used, so a task that computes
    from them reads each page once, from the page cache when it is warm. The CRC is not
    checked (it covers the whole member, and checking it would read every byte once more)."""
    row_bytes = header.nbytes // header.shape[0]
    offset = data_offset(archive.fp.fileno(), info, path) + len(header.raw) + start * row_bytes
    return np.memmap(path, dtype=header.dtype, mode="r", offset=offset,
                     shape=(stop - start, *header.shape[1:]))


def _pread_into(fd: int, buffer: np.ndarray, offset: int, key: str, shown: str) -> None:
    view = memoryview(buffer)
    filled = 0
    while filled < len(view):
        try:
            count = os.preadv(fd, [view[filled:filled + BLOCK]], offset + filled)
        except OSError as e:
            raise DataError(f"{shown}: key {key!r} cannot be read: {e}") from e
        if not count:
            raise DataError(f"{shown}: key {key!r} is truncated: {filled} of {len(view)} data "
                            "bytes")
        filled += count


def data_offset(fd: int, info: zipfile.ZipInfo, shown: str) -> int:
    """Where a member's stored bytes start in the archive file (after its local header)."""
    local = os.pread(fd, _LOCAL.size, info.header_offset)
    if len(local) < _LOCAL.size or not local.startswith(b"PK\x03\x04"):
        raise DataError(f"{shown}: key {member_key(info) or info.filename!r} cannot be read: "
                        "bad local file header")
    fields = _LOCAL.unpack(local)
    return info.header_offset + _LOCAL.size + fields[-2] + fields[-1]


class ArchiveWriter:
    """A zip archive written member by member to a seekable binary file: members copied from
    another archive as their stored bytes, or arrays written anew. Every entry carries zip64
    fields, so any size fits; ``close`` writes the central directory."""

    def __init__(self, fh: BinaryIO):
        self.fh = fh
        self.entries: list[zipfile.ZipInfo] = []

    def copy(self, source_fd: int, info: zipfile.ZipInfo, shown: str, *,
             name: str | None = None) -> None:
        """Copy a member's stored bytes from the archive open as ``source_fd``, under ``name``
        (default its own), with its compression, CRC and time stamp. Check the member first
        (``check_member``, or by reading it): the bytes are copied as they are."""
        entry = _entry(name or info.filename, info, info.compress_type)
        entry.CRC, entry.compress_size, entry.file_size = (info.CRC, info.compress_size,
                                                           info.file_size)
        entry.flag_bits = info.flag_bits & ~_DATA_DESCRIPTOR  # sizes are in the header
        entry.header_offset = self.fh.tell()
        self._local_header(entry)
        start = data_offset(source_fd, info, shown)
        self.fh.flush()
        position = self.fh.tell()
        _copy_range(source_fd, self.fh.fileno(), start, position, info.compress_size,
                    f"{shown}: key {member_key(info) or info.filename!r}")
        self.fh.seek(position + info.compress_size)
        self.entries.append(entry)

    def write_array(self, name: str, array: np.ndarray, like: zipfile.ZipInfo | None) -> None:
        """Write ``array`` as numpy.save does (no pickle), compressed as ``like`` (stored or
        deflated; another method becomes deflated) and stamped with its time."""
        method = like.compress_type if like is not None else zipfile.ZIP_STORED
        entry = _entry(name, like, method if method in (zipfile.ZIP_STORED,
                                                        zipfile.ZIP_DEFLATED)
                       else zipfile.ZIP_DEFLATED)
        entry.header_offset = self.fh.tell()
        self._local_header(entry)
        sink = _Sink(self.fh, entry.compress_type)
        np.lib.format.write_array(sink, array, allow_pickle=False)
        entry.CRC, entry.compress_size, entry.file_size = sink.finish()
        end = self.fh.tell()
        self.fh.seek(entry.header_offset)
        self._local_header(entry)  # now with the CRC and sizes; the same length
        self.fh.seek(end)
        self.entries.append(entry)

    def _local_header(self, entry: zipfile.ZipInfo) -> None:
        """Write ``entry``'s local header where the file is (its ``header_offset``)."""
        name, flags = _encoded(entry)
        extra = struct.pack("<2H2Q", 1, 16, entry.file_size, entry.compress_size)
        dostime, dosdate = _dos(entry.date_time)
        self.fh.write(_LOCAL.pack(b"PK\x03\x04", _ZIP64_VERSION, 0, flags, entry.compress_type,
                                  dostime, dosdate, entry.CRC, _NO_SIZE, _NO_SIZE, len(name),
                                  len(extra)) + name + extra)

    def close(self, comment: bytes = b"") -> None:
        """Write the central directory and the end records (zip64 and classic)."""
        start = self.fh.tell()
        for entry in self.entries:
            name, flags = _encoded(entry)
            extra = struct.pack("<2H3Q", 1, 24, entry.file_size, entry.compress_size,
                                entry.header_offset)
            dostime, dosdate = _dos(entry.date_time)
            self.fh.write(_CENTRAL.pack(
                b"PK\x01\x02", _ZIP64_VERSION, entry.create_system, _ZIP64_VERSION, 0, flags,
                entry.compress_type, dostime, dosdate, entry.CRC, _NO_SIZE, _NO_SIZE,
                len(name), len(extra), len(entry.comment), 0, entry.internal_attr,
                entry.external_attr, _NO_SIZE) + name + extra + entry.comment)
        end = self.fh.tell()
        count, size = len(self.entries), end - start
        self.fh.write(_END64.pack(b"PK\x06\x06", _END64.size - 12, _ZIP64_VERSION,
                                  _ZIP64_VERSION, 0, 0, count, count, size, start))
        self.fh.write(_LOCATOR.pack(b"PK\x06\x07", 0, end, 1))
        self.fh.write(_END.pack(b"PK\x05\x06", 0, 0, min(count, _NO_COUNT),
                                min(count, _NO_COUNT), min(size, _NO_SIZE),
                                min(start, _NO_SIZE), len(comment)) + comment)


def _entry(name: str, like: zipfile.ZipInfo | None, method: int) -> zipfile.ZipInfo:
    entry = zipfile.ZipInfo(name, date_time=like.date_time if like is not None else _EPOCH)
    entry.compress_type = method
    entry.CRC = entry.compress_size = entry.file_size = 0
    if like is not None:
        entry.external_attr, entry.internal_attr = like.external_attr, like.internal_attr
        entry.create_system, entry.comment = like.create_system, like.comment
    else:
        entry.external_attr, entry.create_system = 0o600 << 16, _UNIX
    return entry


def _encoded(entry: zipfile.ZipInfo) -> tuple[bytes, int]:
    """The name's bytes and the flags: UTF-8 names are flagged as such, as zipfile does."""
    try:
        return entry.filename.encode("ascii"), entry.flag_bits & ~_UTF8
    except UnicodeEncodeError:
        return entry.filename.encode("utf-8"), entry.flag_bits | _UTF8


def _dos(date_time: tuple[int, ...]) -> tuple[int, int]:
    year, month, day, hour, minute, second = date_time
    return hour << 11 | minute << 5 | second // 2, (year - 1980) << 9 | month << 5 | day


class _Sink:
    """A file-like target for numpy.save: compresses (or stores) and counts what it is given."""

    def __init__(self, fh: BinaryIO, method: int):
        self.fh = fh
        self.compressor = (zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
                           if method == zipfile.ZIP_DEFLATED else None)
        self.crc = self.size = self.compressed = 0

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        self.crc = zlib.crc32(view, self.crc)
        self.size += len(view)
        self._out(self.compressor.compress(view) if self.compressor else view)
        return len(view)

    def _out(self, data: Any) -> None:
        self.compressed += len(data)
        self.fh.write(data)

    def finish(self) -> tuple[int, int, int]:
        if self.compressor is not None:
            self._out(self.compressor.flush())
        return self.crc, self.compressed, self.size


def _copy_range(source_fd: int, target_fd: int, source: int, target: int, count: int,
                what: str) -> None:
    """Copy ``count`` bytes between file offsets: in the kernel where the system can
    (``copy_file_range``), else through a buffer."""
    in_kernel = hasattr(os, "copy_file_range")
    done = 0
    while done < count:
        size = min(BLOCK * 4, count - done)
        if in_kernel:
            try:
                copied = os.copy_file_range(source_fd, target_fd, size, source + done,
                                            target + done)
            except OSError as e:
                if e.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP,
                                   errno.EPERM):
                    raise
                in_kernel = False
                continue
        else:
            block = os.pread(source_fd, size, source + done)
            copied = len(block) and os.pwrite(target_fd, block, target + done)
        if not copied:
            raise DataError(f"{what} is truncated: {done} of {count} stored bytes")
        done += copied
