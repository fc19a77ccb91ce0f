"""A dataset file's rows checked by ``Dataset`` without reading what is not needed: the whole
file from its flags and supervision alone, or the members of one chunk of its rows.

``Dataset``'s checks run on arrays that stand in for the members not read (``stand_in``: zeros
of the member's shape that take no memory), so a file or chunk checked here gives the messages
``load_dataset`` gives, naming the file (and a chunk's rows), and nothing of these checks is
written twice. The functions that read a chunk are what ``symreward.data.lazy``'s dask tasks
run: module-level, with picklable arguments (a ``ChunkRef``: the file's header and rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from symreward.data.dataset import SUPERVISION_KEYS, Dataset
from symreward.data.headers import FileHeader, Member, read_file_header, read_members

__all__ = ["SUPERVISION_KEYS", "ChunkRef", "check_file", "checked_dtypes", "gather_rows",
           "read_block", "read_checked", "read_chunk", "row_keys", "stand_in"]

_FLAGS = ("terminals", "timeouts", "expert")


@dataclass(frozen=True, eq=False)
class ChunkRef:
    """What a task needs to read one chunk: the file's header, the chunk's rows of the file,
    and whether its last row ends a shard (which then closes an episode, as
    ``Dataset.concatenate`` makes it)."""

    header: FileHeader
    start: int
    stop: int
    ends_shard: bool

    @property
    def rows(self) -> slice | None:
        """The chunk's rows of the file; None for all of them."""
        whole = self.start == 0 and self.stop == self.header.members["observations"].shape[0]
        return None if whole else slice(self.start, self.stop)

    @property
    def shown(self) -> str:
        """The chunk as messages name it: the file, and the rows when it is part of one."""
        where = "" if self.rows is None else f" (rows {self.start}:{self.stop})"
        return f"{self.header.path}{where}"


def read_chunk(ref: ChunkRef) -> Dataset:
    """The chunk's dataset, read and checked (``DataError`` naming the file)."""
    return read_checked(ref, row_keys(ref.header))


def read_checked(ref: ChunkRef, keys: Sequence[str]) -> Dataset:
    """The chunk checked by ``Dataset``, with ``keys`` read and the other members stood in
    for; the last row of a shard closes an episode (``ChunkRef``)."""
    keys = list(dict.fromkeys([*keys, *(["terminals"] if "timeouts" in keys else [])]))
    arrays = read_members(ref.header, keys, ref.rows)
    for key in row_keys(ref.header):
        member = ref.header.members[key]
        arrays.setdefault(key, stand_in(key, member, (ref.stop - ref.start, *member.shape[1:])))
    dataset = Dataset.from_arrays(arrays, source=ref.shown)
    if ref.ends_shard and "timeouts" in keys and not (
            dataset.terminals[-1] or dataset.timeouts[-1]):
        timeouts = dataset.timeouts.copy()
        timeouts[-1] = True
        dataset = dataset.replace(timeouts=timeouts, validate=False)  # checked: one flag set
    return dataset


def read_block(ref: ChunkRef, key: str, dtype: np.dtype) -> np.ndarray:
    """One member's rows of one chunk, checked, in the dataset's dtype."""
    return read_checked(ref, [key]).to_arrays()[key].astype(dtype, copy=False)


def gather_rows(ref: ChunkRef, rows: np.ndarray, dtypes: dict[str, np.dtype]) -> dict[str, Any]:
    """The chunk's per-row arrays at ``rows`` (of the chunk), in the dataset's dtypes."""
    arrays = read_chunk(ref).to_arrays()
    return {key: np.asarray(arrays[key])[rows].astype(dtype, copy=False)
            for key, dtype in dtypes.items()}


def check_file(path: str, header: FileHeader | None = None) -> tuple[FileHeader, Dataset]:
    """A file's header (``header``, when it was read already), and the file checked as
    ``load_dataset`` checks it: its flags and supervision read, its other arrays stood in for
    by ``stand_in``."""
    header = read_file_header(path) if header is None else header
    wanted = [key for key in header.members if key in (*SUPERVISION_KEYS, "terminals", "timeouts")]
    arrays = read_members(header, wanted)
    for key, member in header.members.items():
        arrays.setdefault(key, stand_in(key, member, member.shape))
    return header, Dataset.from_arrays(arrays, source=path)


def stand_in(key: str, member: Member, shape: tuple[int, ...]) -> np.ndarray:
    """An array of the member's shape for ``Dataset``'s checks of a file whose values are
    not read: zeros that take no memory (one broadcast value), as the checks convert them
    (float64, or bool for flags); a member that holds no numbers keeps its dtype, so that the
    checks report it."""
    dtype = member.dtype if member.dtype.kind not in "biuf" else (
        np.dtype(bool) if key in _FLAGS else np.dtype(np.float64))
    return np.broadcast_to(np.zeros((), dtype=dtype), shape)


def row_keys(header: FileHeader) -> list[str]:
    """The file's per-row members (all but the supervision)."""
    return [key for key in header.members if key not in SUPERVISION_KEYS]


def checked_dtypes(header: FileHeader) -> dict[str, np.dtype]:
    """The dtypes the per-row arrays have once checked (``Dataset`` converts some), from one
    row of zeros."""
    probe = {key: np.zeros((1, *header.members[key].shape[1:]), header.members[key].dtype)
             for key in row_keys(header)}
    return {key: value.dtype for key, value in
            Dataset.from_arrays(probe, source=header.path).to_arrays().items()}
