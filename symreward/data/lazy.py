"""Datasets larger than memory: dask arrays over npz/HDF5 shards (or one large file, or a
Minari dataset in Minari's HDF5 format: ``symreward.data.minari_lazy``), read a
chunk at a time by the tasks that need them.

A ``LazyDataset`` is, value for value, the in-memory dataset it stands for: for a folder or
glob of shards ``Dataset.concatenate`` of the shards (``symreward.data.shards``) with the
preferences and rankings of its labels files after the shards' own (``symreward.data.labels``),
for one file ``load_dataset(file)``. What is read when:

- At opening, the files' headers (keys, shapes, dtypes), and of every shard its episode flags
  and supervision keys (``pref_*``, ``rank_*``): each shard is checked as ``load_dataset``
  checks it, by the same code (``symreward.data.chunks``: ``Dataset``'s checks, on arrays
  that stand in for the float columns and take no memory), so a bad shard, a missing key or
  a preference segment crossing an episode is the same ``DataError``, naming the shard.
  Shards must also agree with each other: the same keys (a shard without preferences stores
  them empty, shape (0, 2)) and the same columns. Then the labels files, checked against the
  whole dataset's rows and episode ends (messages name the labels file). Memory: the flags of
  one shard at a time (plus, with supervision, 8 bytes per row of it), then the episode ends
  and the supervision.
- The arrays' values, by the tasks that need them: a task reads one member for one chunk of
  rows and checks it (``Dataset`` again, on the chunk; messages name the shard, and the rows
  of a file split in several chunks), so NaN in a shard's observations is an error when the
  observations are computed. A chunk holds whole episodes: a shard is one chunk, unless it
  is larger than ``chunk_rows`` and its members can be read in part (HDF5, an npz stored
  uncompressed), then it is split at the episode ends nearest to every ``chunk_rows`` rows.
  A member an npz stores uncompressed is memory-mapped, not copied: its rows are read once,
  by the check and the computation that use them, from the page cache when it is warm; its
  CRC is not checked (``load_dataset(..., lazy=False)`` checks it, as ``numpy.load`` does),
  while a compressed member is checked as it is decompressed.

Tasks are module-level functions of picklable arguments (a ``ChunkRef``: a file's header and
rows; no open file), so the arrays compute under dask's threads, processes or
``dask.distributed`` schedulers. ``take`` (rows gathered chunk by chunk), ``sample`` and
``digest`` run under the current one. Needs the ``dask`` extra (``pip install
symreward[dask]``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from symreward.data.chunks import (
    SUPERVISION_KEYS,
    ChunkRef,
    check_file,
    checked_dtypes,
    gather_rows,
    read_block,
    read_chunk,
    row_keys,
)
from symreward.data.dataset import Dataset, Preferences, Rankings
from symreward.data.headers import FileHeader, read_file_header
from symreward.data.io import is_minari
from symreward.data.labels import appended, attach_labels, read_labels
from symreward.data.minari_lazy import read_minari_header
from symreward.data.shards import (
    DatasetFiles,
    dataset_files,
    is_labels_file,
    is_sharded,
    labels_file_alone,
)
from symreward.data.subset import from_gathered
from symreward.errors import DataError, OptionError
from symreward.schedulers import import_dask

__all__ = ["CHUNK_ROWS", "LAZY_BYTES", "ChunkRef", "LazyDataset", "Shard", "read_chunk"]

#: ``load_dataset(..., lazy=None)`` reads a dataset lazily when its arrays take more bytes
#: than this in memory (uncompressed): 4 GiB. Below it, in-memory work is faster and the few
#: copies a learner or an audit makes still fit a laptop.
LAZY_BYTES = 4 << 30
#: About the most rows of a chunk when a file is split (a shard smaller than this is one
#: chunk): 2**20 rows, some 70 MB of float32 observations with 17 columns.
CHUNK_ROWS = 1 << 20
_LAZY = "reading a dataset lazily"
# Chunks read at once by ``digest``, which must hash them in order.
_PREFETCH = 4


@dataclass(frozen=True)
class Shard:
    """A file of the dataset: its path, its rows, and the dataset row its first row is."""

    path: str
    rows: int
    offset: int


class _PerRow:
    """A per-row array of a ``LazyDataset``, as a dask array made on first use (None when the
    files have no such key)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.key = name

    def __get__(self, dataset: LazyDataset | None, owner: type | None = None) -> Any:
        if dataset is None:
            return self
        array = dataset._array(self.key) if self.key in dataset._dtypes else None
        dataset.__dict__[self.key] = array  # later reads find it there, not here
        return array


class LazyDataset:
    """A dataset whose arrays are dask arrays chunked along transitions (module docstring).

    ``source`` is a folder or glob of npz/HDF5 shards, or one npz/HDF5 file. Per-row arrays
    (``observations``, ..., ``rewards``, ``expert``, ``infos``) are dask arrays with row
    chunks ``chunks`` (rows per chunk; ``chunk_offsets`` their first rows, ``chunk_refs``
    what a task reads them from); ``preferences``, ``rankings`` and ``episode_ends`` are in
    memory, in dataset rows (read-only; the labels files' after the shards'). ``shards`` are
    the files with their rows and offsets, ``labels`` the labels files' paths, ``nbytes``
    what the arrays would take in memory.
    """

    def __init__(self, source: str | os.PathLike[str], *, chunk_rows: int = CHUNK_ROWS):
        if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
            raise OptionError("chunk_rows", chunk_rows, "must be a positive integer")
        self.source = str(source)
        self._sharded = is_sharded(self.source)
        if self._sharded:
            files = dataset_files(self.source)
        elif is_minari(self.source):
            header = read_minari_header(self.source)
            files = DatasetFiles((header.path,), {header.path: header}, ())
        else:
            header = read_file_header(self.source)
            if is_labels_file(header.members):
                raise labels_file_alone(self.source, header.members)
            files = DatasetFiles((self.source,), {self.source: header}, ())
        shards, refs, ends, supervision = [], [], [], []
        dtypes: dict[str, list[np.dtype]] = {}
        offset = 0
        for path in files.shards:
            header, checked = check_file(path, files.headers.get(path))
            if shards:
                _same_layout(refs[0].header, header)
            for key, dtype in checked_dtypes(header).items():
                dtypes.setdefault(key, []).append(dtype)
            shards.append(Shard(path, checked.n, offset))
            refs += [ChunkRef(header, start, stop, self._sharded and stop == checked.n)
                     for start, stop in _chunk_bounds(header, checked, chunk_rows)]
            ends.append(checked.episode_ends + offset)
            p, r = checked.preferences, checked.rankings
            supervision.append((None if p is None else Preferences(p.a + offset, p.b + offset,
                                                                   p.label),
                                None if r is None else Rankings(r.segments + offset, r.scores)))
            offset += checked.n
        self.shards: tuple[Shard, ...] = tuple(shards)
        self.chunk_refs: tuple[ChunkRef, ...] = tuple(refs)
        self.chunks: tuple[int, ...] = tuple(ref.stop - ref.start for ref in refs)
        self.n = offset
        self.episode_ends = _readonly(np.concatenate(ends))
        # Labels files index the whole dataset's rows: checked once these are known.
        supervision += [read_labels(header, n=self.n, episode_ends=self.episode_ends)
                        for header in files.labels]
        self.preferences, self.rankings = appended((None, None), supervision)
        self.labels: tuple[str, ...] = tuple(header.path for header in files.labels)
        self._labels = files.labels
        self._dtypes = {key: np.result_type(*found) for key, found in dtypes.items()}
        first = refs[0].header.members
        self._tails = {key: first[key].shape[1:] for key in self._dtypes}
        self.obs_dim = int(first["observations"].shape[1])
        self.act_dim = int(first["actions"].shape[1])
        self.nbytes = sum(ref.header.nbytes for ref in refs if ref.start == 0)
        # Names the dask arrays: the same files, unchanged, and chunks give the same names.
        stats = [(s.path, os.stat(s.path).st_size, os.stat(s.path).st_mtime_ns) for s in shards]
        self._token = hashlib.sha256(repr([stats, self.chunks]).encode()).hexdigest()[:20]

    # ------------------------------------------------------------------ shape and episodes

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        extras = [name for name, present in (
            ("rewards", "rewards" in self._dtypes), ("preferences", self.preferences is not None),
            ("rankings", self.rankings is not None), ("expert", "expert" in self._dtypes))
            if present]
        if self.infos_names:
            extras.append("infos=" + ",".join(self.infos_names))
        labels = f"labels={len(self.labels)}, " if self.labels else ""
        return (f"LazyDataset(n={self.n}, obs_dim={self.obs_dim}, act_dim={self.act_dim}, "
                f"episodes={self.n_episodes}, shards={len(self.shards)}, {labels}"
                f"chunks={len(self.chunks)}, with=[{'; '.join(extras)}], "
                f"source={self.source!r})")

    @property
    def n_episodes(self) -> int:
        return int(self.episode_ends.shape[0])

    @property
    def infos_names(self) -> list[str]:
        """The infos' names, without reading them."""
        return [key[len("infos/"):] for key in self._dtypes if key.startswith("infos/")]

    @cached_property
    def chunk_offsets(self) -> np.ndarray:
        """The dataset row of each chunk's first row."""
        return np.concatenate(([0], np.cumsum(self.chunks)[:-1])).astype(np.int64)

    # ------------------------------------------------------------------ the arrays

    observations = _PerRow()
    actions = _PerRow()
    next_observations = _PerRow()
    terminals = _PerRow()
    timeouts = _PerRow()
    rewards = _PerRow()
    expert = _PerRow()

    @cached_property
    def infos(self) -> dict[str, Any]:
        return {name: self._array(f"infos/{name}") for name in self.infos_names}

    def _array(self, key: str) -> Any:
        da = import_dask(_LAZY).array
        tail, dtype = self._tails[key], self._dtypes[key]
        column = _Column(self.chunk_refs, self.chunk_offsets, key, (self.n, *tail), dtype)
        name = f"symreward-{key.replace('/', '-')}-{self._token}"
        return da.from_array(column, chunks=(self.chunks, *((size,) for size in tail)),
                             name=name, asarray=False, fancy=False, lock=False,
                             meta=np.empty((0,) * (1 + len(tail)), dtype=dtype))

    # ------------------------------------------------------------------ chunks and rows

    def chunk(self, k: int) -> Dataset:
        """Chunk ``k`` in memory, checked; its ``source`` names its file."""
        return read_chunk(self.chunk_refs[k])

    def to_delayed(self) -> list[Any]:
        """Every chunk's dataset as a ``dask.delayed`` object (``read_chunk``), in order."""
        delayed = import_dask(_LAZY).delayed
        return [delayed(read_chunk)(ref, dask_key_name=f"symreward-chunk-{self._token}-{k}")
                for k, ref in enumerate(self.chunk_refs)]

    def to_dataset(self) -> Dataset:
        """The whole dataset in memory: ``Dataset.concatenate`` of the shards, the labels
        files' preferences and rankings after theirs (for one file, ``load_dataset(file)``).
        Reads in this process; dask is not used."""
        from symreward.data.io import load_dataset

        if not self._sharded:
            return load_dataset(self.source, lazy=False)
        parts = [load_dataset(shard.path, lazy=False) for shard in self.shards]
        return attach_labels(Dataset.concatenate(parts, source=self.source), self._labels)

    def take(self, rows: np.ndarray | Sequence[int], *, source: str | None = None) -> Dataset:
        """``subset.take(self.to_dataset(), rows, source=source)``, reading only the chunks
        that hold ``rows`` (sorted, distinct dataset rows) and keeping only those rows."""
        rows = np.asarray(rows)
        valid = rows.ndim == 1 and (rows.size == 0 or (
            rows.dtype.kind in "iu" and rows[0] >= 0 and rows[-1] < self.n
            and bool(np.all(np.diff(rows) > 0))))
        if not valid:
            raise OptionError("rows", f"<{rows.size} rows>",
                              f"must be sorted, distinct integers in [0, {self.n})")
        return self._take(rows.astype(np.int64), source or f"{self.source} (rows {len(rows)})")

    def sample(self, max_rows: int, seed: int) -> tuple[Dataset, dict[str, int]]:
        """Whole chunks drawn in a seeded random order, until the next would take the rows
        past ``max_rows`` (the first is taken whatever its size), as one dataset (in dataset
        order, preferences and rankings inside it kept, as ``take`` keeps them), and what was
        drawn: ``{"chunks", "of_chunks", "rows", "of_rows"}``."""
        if isinstance(max_rows, bool) or not isinstance(max_rows, int | np.integer) \
                or max_rows < 1:
            raise OptionError("max_rows", max_rows, "must be a positive integer")
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise OptionError("seed", seed, "must be a non-negative integer")
        chosen: list[int] = []
        total = 0
        for k in np.random.default_rng(seed).permutation(len(self.chunks)):
            if chosen and total + self.chunks[k] > max_rows:
                break
            chosen.append(int(k))
            total += self.chunks[k]
        chosen.sort()
        starts = self.chunk_offsets[chosen]
        rows = np.concatenate([np.arange(start, start + self.chunks[k])
                               for k, start in zip(chosen, starts, strict=True)])
        source = f"{self.source} (sample of {len(chosen)} of {len(self.chunks)} chunks)"
        report = {"chunks": len(chosen), "of_chunks": len(self.chunks), "rows": int(total),
                  "of_rows": self.n}
        return self._take(rows, source), report

    def _take(self, rows: np.ndarray, source: str) -> Dataset:
        dask = import_dask(_LAZY)
        chunk_of_row = np.searchsorted(self.chunk_offsets, rows, side="right") - 1
        first = np.searchsorted(chunk_of_row, np.arange(len(self.chunks) + 1))
        tasks = [dask.delayed(gather_rows, pure=True)(ref, rows[lo:hi] - self.chunk_offsets[k],
                                                  self._dtypes)
                 for k, (ref, lo, hi) in enumerate(zip(self.chunk_refs, first[:-1], first[1:],
                                                       strict=True)) if hi > lo]
        parts = dask.compute(*tasks)
        gathered = {key: np.concatenate([part[key] for part in parts]) if parts else
                    np.empty((0, *self._tails[key]), dtype=dtype)
                    for key, dtype in self._dtypes.items()}
        closes = np.isin(rows + 1, self.episode_ends)
        return from_gathered(gathered, rows, closes, self.preferences, self.rankings, source)

    def digest(self) -> str:
        """``dataset_digest(self.to_dataset())``, computed chunk by chunk (a few chunks of
        one array in memory at a time)."""
        dask = import_dask(_LAZY)
        in_memory: dict[str, np.ndarray] = {}
        if self.preferences is not None:
            in_memory |= {"pref_a": self.preferences.a, "pref_b": self.preferences.b,
                          "pref_label": self.preferences.label}
        if self.rankings is not None:
            in_memory |= {"rank_segments": self.rankings.segments,
                          "rank_scores": self.rankings.scores}
        digest = hashlib.sha256()
        for key in sorted([*self._dtypes, *in_memory]):
            if key in in_memory:
                array = np.ascontiguousarray(in_memory[key])
                digest.update(f"{key}|{array.dtype.str}|{array.shape}|".encode())
                digest.update(array)
                continue
            dtype = self._dtypes[key]
            digest.update(f"{key}|{dtype.str}|{(self.n, *self._tails[key])}|".encode())
            for start in range(0, len(self.chunk_refs), _PREFETCH):
                refs = self.chunk_refs[start:start + _PREFETCH]
                blocks = dask.compute(*(dask.delayed(read_block, pure=True)(ref, key, dtype)
                                        for ref in refs))
                for block in blocks:
                    digest.update(np.ascontiguousarray(block))
        return "sha256:" + digest.hexdigest()


# ---------------------------------------------------------------------- opening


def _same_layout(first: FileHeader, header: FileHeader) -> None:
    """``DataError`` unless ``header``'s shard has the first shard's keys and columns."""
    for key in sorted(first.members.keys() | header.members.keys()):
        hint = (" (a shard without preferences or rankings stores them empty: pref_a, pref_b "
                "and rank_segments of shape (0, 2), pref_label and rank_scores of shape (0,))"
                if key in SUPERVISION_KEYS else "")
        if key not in header.members:
            raise DataError(f"{header.path}: key {key!r} is missing, but {first.path} has it; "
                            f"the shards of a dataset have the same keys{hint}")
        if key not in first.members:
            raise DataError(f"{header.path}: key {key!r} is not in {first.path}; the shards "
                            f"of a dataset have the same keys{hint}")
        shape, expected = header.members[key].shape, first.members[key].shape
        if key not in SUPERVISION_KEYS and shape[1:] != expected[1:]:
            raise DataError(f"{header.path}: key {key!r} has shape {shape} but shape "
                            f"{expected} in {first.path}; the shards of a dataset have the "
                            "same columns")


def _chunk_bounds(header: FileHeader, checked: Dataset, chunk_rows: int) -> list[tuple[int, int]]:
    """The file's chunks as ``(start, stop)`` rows: one, unless the file is larger than
    ``chunk_rows`` and readable in part; then each stop is the episode end nearest to
    ``chunk_rows`` rows after the previous one."""
    n = checked.n
    if n <= chunk_rows or not all(header.members[key].partial for key in row_keys(header)):
        return [(0, n)]
    ends = np.asarray(checked.episode_ends)
    bounds, start = [], 0
    while start < n:
        later = int(np.searchsorted(ends, start + chunk_rows))
        candidates = [int(e) for e in ends[max(later - 1, 0):later + 1] if e > start]
        stop = min(candidates, key=lambda end: (abs(end - start - chunk_rows), end))
        bounds.append((start, stop))
        start = stop
    return bounds


class _Column:
    """One member of every chunk, as ``dask.array.from_array`` reads it: indexed by one
    chunk's rows at a time."""

    def __init__(self, refs: tuple[ChunkRef, ...], offsets: np.ndarray, key: str,
                 shape: tuple[int, ...], dtype: np.dtype):
        self.refs, self.offsets, self.key = refs, offsets, key
        self.shape, self.dtype, self.ndim = shape, dtype, len(shape)

    def __getitem__(self, index: tuple[slice, ...]) -> np.ndarray:
        rows, *rest = index
        k = int(np.searchsorted(self.offsets, rows.start, side="right")) - 1
        ref = self.refs[k]
        if rows.start != self.offsets[k] or rows.stop - rows.start != ref.stop - ref.start:
            raise IndexError(f"rows {rows.start}:{rows.stop} are not one chunk")
        return read_block(ref, self.key, self.dtype)[(slice(None), *rest)]


def _readonly(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False
    return array
