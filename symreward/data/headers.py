"""A dataset file's members without their data: the shape and dtype of each array an npz or
HDF5 dataset holds, and the rows of chosen members, read when they are needed.

``symreward.data.lazy`` opens a dataset larger than memory from these headers, and its tasks
read one chunk of rows of one member at a time. The members are the ones ``load_dataset``
reads (the data contract's keys, and the infos that can be features); a file's other members
are never read. Reading a member back checks that it still has the shape and dtype it had
when the header was read, so a file rewritten in between is an error, not a silent mix.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from symreward.data.io import (
    CONTRACT_KEYS,
    NPZ_SUFFIXES,
    check_npz_magic,
    feature_info,
    hdf5_members,
    import_h5py,
)
from symreward.data.npzmembers import (
    READ_ERRORS,
    map_rows,
    member_key,
    read_header,
    read_rows,
    rows_readable,
)
from symreward.errors import DataError

if TYPE_CHECKING:
    from symreward.data.minari_lazy import MinariEpisode

__all__ = ["FileHeader", "Member", "read_file_header", "read_members"]


@dataclass(frozen=True)
class Member:
    """One array of a dataset file: its shape and dtype, and whether a range of its rows can
    be read without reading the rest (HDF5; an npz member stored uncompressed)."""

    shape: tuple[int, ...]
    dtype: np.dtype
    partial: bool

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


@dataclass(frozen=True, eq=False)
class FileHeader:
    """The members of one npz (``kind="npz"``) or HDF5 (``kind="hdf5"``) dataset file, by
    their data-contract keys (``infos/<name>`` for infos); ``path`` as messages show it. A
    Minari data file (``kind="minari"``) is read as the flat table of its ``episodes``
    (``symreward.data.minari_lazy``)."""

    path: str
    kind: str
    members: dict[str, Member]
    episodes: tuple[MinariEpisode, ...] = ()

    @property
    def nbytes(self) -> int:
        """The bytes the members' arrays take in memory (uncompressed)."""
        return sum(member.nbytes for member in self.members.values())


def read_file_header(path: str) -> FileHeader:
    """The header of the npz or HDF5 dataset file at ``path`` (by its extension); a
    ``DataError`` naming the file when it cannot be read."""
    if Path(path).suffix.lower() in NPZ_SUFFIXES:
        with _open_npz(path) as archive:
            members = {}
            for info in archive.infolist():
                key = member_key(info)
                if key is None:
                    continue
                header = read_header(archive, info, path)  # refuses pickled members by name
                if key in CONTRACT_KEYS or feature_info(key, header.shape, header.dtype):
                    members[key] = Member(tuple(header.shape), header.dtype,
                                          rows_readable(archive, info, header))
        return FileHeader(path, "npz", members)
    h5py = import_h5py(path)
    with _open_hdf5(h5py, path) as f:
        members = {name: Member(tuple(obj.shape), obj.dtype, True)
                   for name, obj in hdf5_members(h5py, f).items()}
    return FileHeader(path, "hdf5", members)


def read_members(header: FileHeader, keys: Iterable[str], rows: slice | None = None,
                 ) -> dict[str, np.ndarray]:
    """The arrays of ``keys`` (members of ``header``), all of them or only ``rows`` (a
    ``start:stop`` range along the first axis; an npz member not stored as it is cannot be
    read in part)."""
    keys = list(keys)
    if header.kind == "minari":
        from symreward.data.minari_lazy import read_minari_members

        return read_minari_members(header, keys, rows)
    if header.kind == "npz":
        with _open_npz(header.path) as archive:
            return {key: _npz_member(archive, header, key, rows) for key in keys}
    h5py = import_h5py(header.path)
    with _open_hdf5(h5py, header.path) as f:
        return {key: _hdf5_member(h5py, f, header, key, rows) for key in keys}


def _open_npz(path: str) -> zipfile.ZipFile:
    check_npz_magic(Path(path), path)
    try:
        return zipfile.ZipFile(path)
    except READ_ERRORS as e:
        raise DataError(f"{path}: unreadable npz archive: {e}") from e


def _open_hdf5(h5py: Any, path: str) -> Any:
    if not h5py.is_hdf5(path):
        raise DataError(f"{path}: not an HDF5 file")
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise DataError(f"{path}: unreadable HDF5 file: {e}") from e


def _unchanged(header: FileHeader, key: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
    member = header.members[key]
    if (tuple(shape), dtype) != (member.shape, member.dtype):
        raise DataError(f"{header.path}: key {key!r} has changed since the file was opened "
                        f"(shape {member.shape}, dtype {member.dtype}; now {tuple(shape)}, "
                        f"{dtype}): reopen the dataset")


def _npz_member(archive: zipfile.ZipFile, header: FileHeader, key: str,
                rows: slice | None) -> np.ndarray:
    try:
        info = archive.getinfo(f"{key}.npy")
    except KeyError as e:
        raise DataError(f"{header.path}: key {key!r} is missing; it was there when the file "
                        "was opened: reopen the dataset") from e
    npy = read_header(archive, info, header.path)
    _unchanged(header, key, npy.shape, npy.dtype)
    everything = (0, npy.shape[0] if npy.shape else 0)
    start, stop = everything if rows is None else (rows.start, rows.stop)
    if stop > start and rows_readable(archive, info, npy):
        return map_rows(archive, info, header.path, npy, start, stop)
    return read_rows(archive, info, header.path, npy, start, stop)


def _hdf5_member(h5py: Any, f: Any, header: FileHeader, key: str,
                 rows: slice | None) -> np.ndarray:
    obj = f.get(key)
    if not isinstance(obj, h5py.Dataset):
        raise DataError(f"{header.path}: key {key!r} is missing; it was there when the file "
                        "was opened: reopen the dataset")
    _unchanged(header, key, obj.shape, obj.dtype)
    try:
        return np.asarray(obj[()] if rows is None else obj[rows])
    except (OSError, TypeError, ValueError) as e:
        raise DataError(f"{header.path}: key {key!r} cannot be read: {e}") from e
