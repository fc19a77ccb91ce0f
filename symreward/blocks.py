"""An artifact's rewards over dask arrays, block by block, and written to ``.npy`` as they come.

``dask_rewards`` is a map over row blocks of the compiled ``rewards`` kernel (the one
``relabel`` runs, which adds the terms as ``RewardArtifact.evaluate`` does), on float64 copies
of the same inputs: every row's reward has the bits the in-memory evaluation gives it. What a
task receives is the artifact's TOML text, never its sympy objects (user text is parsed only
by ``formula.parse``, and a worker may run another version of sympy); each worker process
builds the kernels from it once per text (``shipped_kernels``), and the module they come from
is in the kernel cache on disk (``$SYMREWARD_CACHE_DIR``) that the client filled first, so a
worker on the client's machine, or on a shared cache folder, loads the machine code instead
of compiling it.

Each task runs the kernel on its own thread (``threads=False``: the parallel kernel's chunks of
rows, whole vectors for exp, atan2, ...), ``TASK_ROWS`` rows at a time, on float64 copies of
the columns the features read (float32 to float64 is exact, so the bits are those of the whole
table converted at once): dask's workers are the parallelism, and a parallel kernel inside each
of them would put cores x cores threads on the cores (and abort under numba's workqueue
threading layer, which refuses launches from two threads at once). ``save_rewards`` computes
the blocks a window at a time and appends each to the ``.npy`` in order, so the client holds a
window of rewards, never all N.

``lazy_rewards`` does the same for a ``LazyDataset`` with one task per chunk, which reads only
the members the reward reads and checks their values as it converts them (the data contract's
check, without a pass of its own; a bad value is reported by the chunk's own check).
"""

from __future__ import annotations

import copy
import functools
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from symreward.atomic import atomic_write
from symreward.kernels.runtime import PARALLEL_ROWS

if TYPE_CHECKING:
    from symreward.artifact import RewardArtifact
    from symreward.data.chunks import ChunkRef
    from symreward.data.lazy import LazyDataset
    from symreward.kernels import RewardKernels

__all__ = ["TASK_ROWS", "WINDOW_BYTES", "NotFinite", "RewardSummary", "artifact_text",
           "block_rewards", "dask_rewards", "lazy_rewards", "save_rewards", "shipped_artifact",
           "shipped_kernels", "summarize"]

#: Rows a task converts to float64 (and checks) and hands the kernel at a time: small enough
#: that the copies are still in the cache when the kernel reads them (a 1M-row chunk of the
#: scale benchmark's took 7.2-7.5 ms at 48k-96k rows, 10 ms at 128k, 11 ms at 8k).
TASK_ROWS = PARALLEL_ROWS // 4
#: About how many bytes of rewards ``save_rewards`` holds at once (more where the workers
#: outnumber the blocks that fit: each gets two).
WINDOW_BYTES = 256 << 20
# The source of an artifact a worker builds only for its kernels (messages never name it).
_SHIPPED = "<shipped artifact>"


def artifact_text(artifact: RewardArtifact) -> str:
    """The TOML text a worker rebuilds ``artifact`` from (``RewardArtifact.loads``): the same
    features, terms and content hash. Taken from a copy, since ``dumps`` records a pending hand
    edit in the artifact it is called on."""
    return copy.deepcopy(artifact).dumps()


@functools.lru_cache(maxsize=16)
def shipped_artifact(text: str, source: str) -> RewardArtifact:
    """The artifact of ``artifact_text``'s ``text``, read once per process and text; ``source``
    is the path its messages and relabel's metadata name."""
    from symreward.artifact import RewardArtifact

    return RewardArtifact.loads(text, source=source)


@functools.lru_cache(maxsize=16)
def shipped_kernels(text: str) -> RewardKernels:
    """The compiled kernels of ``text``'s artifact, once per process and text: the module is
    read from the kernel cache on disk, and its machine code loaded from numba's cache beside
    it where a process compiled it before."""
    return shipped_artifact(text, _SHIPPED).compile()


class NotFinite(Exception):
    """A value ``block_rewards`` was asked to check is NaN or inf (the caller says where)."""


def block_rewards(obs: np.ndarray, act: np.ndarray, next_obs: np.ndarray,
                  info: np.ndarray | None, *, text: str,
                  check: tuple[bool, bool, bool] = (False, False, False)) -> np.ndarray:
    """The rewards of one block of rows (a dask task): float64, by the kernel on this thread, on
    float64 copies of the columns the features read (``relabel``'s ``InputRows``).

    ``check`` names the tables (obs, act, next_obs) whose every value must be finite: each
    is checked a slice at a time as it is converted, from the copy while it is in cache
    (``InputRows.finite``), instead of in a pass of its own; ``NotFinite`` when one is not."""
    from symreward.data.relabel import InputRows

    kernels = shipped_kernels(text)
    used = shipped_artifact(text, _SHIPPED).features.inputs()
    n = len(obs)
    size = min(n, TASK_ROWS)
    tables = [InputRows(array, used[name], size)
              for array, name in ((obs, "obs"), (act, "act"), (next_obs, "next_obs"))]
    out = np.empty(n)
    for start in range(0, n, TASK_ROWS):
        rows = slice(start, min(n, start + TASK_ROWS))
        blocks = [table.rows(rows) for table in tables]
        if not all(table.finite(rows, block)
                   for table, block, checked in zip(tables, blocks, check, strict=True)
                   if checked):
            raise NotFinite
        out[rows] = kernels.rewards(*blocks, None if info is None else info[rows],
                                    threads=False)
    return out


def dask_rewards(artifact: RewardArtifact, observations: Any, actions: Any,
                 next_observations: Any, infos: Mapping[str, Any], *,
                 source: str = "the dataset") -> Any:
    """The reward of every row, a 1-D float64 dask array with the inputs' row chunks.

    ``observations``, ``next_observations`` (N, obs_dim), ``actions`` (N, act_dim) and each of
    ``infos`` (N,) are dask arrays of any float dtype, chunked along rows (alike, or they are
    rechunked to agree). Equal, bit for bit, to ``artifact.evaluate(dataset).rewards`` on the
    same rows in memory. Raises ``FeatureError`` naming ``source`` when a feature reads an input
    the arrays do not have. The kernels are compiled here first, so the workers find them in the
    disk cache.
    """
    import dask.array as da

    artifact.features.check_dimensions(observations.shape[1], actions.shape[1], set(infos),
                                       data_source=source)
    kernels = artifact.compile()
    _load_serial_kernel(kernels, observations.shape[1], actions.shape[1])
    # Each info a row-indexed argument of its own, and the tables' columns not contracted by
    # dask: its concatenation would copy every block, even a block that is whole.
    arrays: list[Any] = [observations, "ij", actions, "ik", next_observations, "il"]
    for name in kernels.info_names:
        arrays += [infos[name], "i"]
    return da.blockwise(_block_task, "i", *arrays, concatenate=False, dtype=np.float64,
                        meta=np.empty(0), text=artifact_text(artifact))


def lazy_rewards(artifact: RewardArtifact, dataset: LazyDataset) -> Any:
    """``dask_rewards`` of a lazy dataset, one task per chunk that reads (and checks) only the
    members the features use, then computes their rewards: no block of observations is kept
    between tasks or sent from one worker to another, and a chunk is read once."""
    import dask
    import dask.array as da

    artifact.features.check_dimensions(dataset.obs_dim, dataset.act_dim,
                                       set(dataset.infos_names), data_source=dataset.source)
    kernels = artifact.compile()
    _load_serial_kernel(kernels, dataset.obs_dim, dataset.act_dim)
    used = artifact.features.inputs()
    keys = [key for key, name in (("observations", "obs"), ("actions", "act"),
                                  ("next_observations", "next_obs")) if used[name]]
    keys += [f"infos/{name}" for name in kernels.info_names]
    text = artifact_text(artifact)
    task = dask.delayed(_chunk_task, pure=True)
    return da.concatenate([
        da.from_delayed(task(ref, keys, list(kernels.info_names), text), shape=(rows,),
                        dtype=np.float64, meta=np.empty(0))
        for ref, rows in zip(dataset.chunk_refs, dataset.chunks, strict=True)])


def _chunk_task(ref: ChunkRef, keys: list[str], info_names: list[str], text: str
                ) -> np.ndarray:
    """The rewards of one chunk of a lazy dataset (``lazy_rewards``' task). The members read
    are checked as the data contract checks them (their shapes and kinds were at opening;
    their values here, as they are converted); where one is not finite, the chunk's own check
    (``read_checked``) raises the error naming the shard, the key and the row."""
    from symreward.data.chunks import read_checked
    from symreward.data.headers import read_members

    arrays = read_members(ref.header, keys, ref.rows)
    rows = ref.stop - ref.start
    tables = [arrays[key] if key in arrays else
              np.broadcast_to(np.zeros(()), (rows, *ref.header.members[key].shape[1:]))
              for key in ("observations", "actions", "next_observations")]
    try:
        info = None
        if info_names:
            info = np.column_stack([np.asarray(arrays[f"infos/{name}"], dtype=np.float64)
                                    for name in info_names])
            with np.errstate(over="ignore", invalid="ignore"):
                if not (np.isfinite(info.sum()) or np.isfinite(info).all()):
                    raise NotFinite
        return block_rewards(*tables, info, text=text,
                             check=tuple(key in arrays for key in ("observations", "actions",
                                                                   "next_observations")))
    except NotFinite:
        read_checked(ref, keys)
        raise AssertionError(f"{ref.shown}: a value is not finite, yet the chunk's check "
                             "passed") from None


def _block_task(obs: list[np.ndarray], act: list[np.ndarray], next_obs: list[np.ndarray],
                *infos: np.ndarray, text: str) -> np.ndarray:
    """``block_rewards`` of a block given as dask hands it over: each table as its column
    blocks (one, unless the array is chunked along columns too), each info a vector."""
    info = np.column_stack([np.asarray(v, dtype=np.float64) for v in infos]) if infos else None
    return block_rewards(*(parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)
                           for parts in (obs, act, next_obs)), info, text=text)


def _load_serial_kernel(kernels: RewardKernels, obs_dim: int, act_dim: int) -> None:
    """Compile (or load from the disk cache) the kernel the tasks run, by running it on one row
    of zeros, so that it is on disk before any worker asks."""
    zeros = np.zeros((1, obs_dim))
    kernels.rewards(zeros, np.zeros((1, act_dim)), zeros, np.zeros((1, len(kernels.info_names))),
                    threads=False)


@dataclass(frozen=True)
class RewardSummary:
    """What ``symreward eval`` reports of N rewards: the finite ones' mean, minimum and maximum
    (NaN when none is finite), how many are NaN and inf, and the first non-finite row."""

    rows: int
    finite: int
    mean: float
    minimum: float
    maximum: float
    nan: int
    inf: int
    first_non_finite: int | None

    @property
    def non_finite(self) -> int:
        return self.rows - self.finite


def summarize(blocks: Iterable[np.ndarray]) -> RewardSummary:
    """The summary of the rewards ``blocks`` hold end to end (a reduction, block by block; of
    one block, exactly what numpy gives over the whole array)."""
    accumulator = _Summary()
    for block in blocks:
        accumulator.add(block)
    return accumulator.result()


class _Summary:
    def __init__(self) -> None:
        self.rows = self.finite = self.nan = self.inf = 0
        self.total, self.minimum, self.maximum = 0.0, math.inf, -math.inf
        self.first: int | None = None

    def add(self, block: np.ndarray) -> None:
        good = np.isfinite(block)
        finite = block[good]
        if finite.size:
            self.total += float(np.add.reduce(finite))
            self.minimum = min(self.minimum, float(finite.min()))
            self.maximum = max(self.maximum, float(finite.max()))
        if finite.size < block.size:
            if self.first is None:
                self.first = self.rows + int(np.argmin(good))
            self.nan += int(np.isnan(block).sum())
            self.inf += int(np.isinf(block).sum())
        self.rows += block.size
        self.finite += finite.size

    def result(self) -> RewardSummary:
        if not self.finite:
            return RewardSummary(self.rows, 0, math.nan, math.nan, math.nan, self.nan, self.inf,
                                 self.first)
        return RewardSummary(self.rows, self.finite, self.total / self.finite, self.minimum,
                             self.maximum, self.nan, self.inf, self.first)


def save_rewards(rewards: Any, path: str | os.PathLike[str]) -> RewardSummary:
    """Write the 1-D float64 dask array ``rewards`` to the ``.npy`` file ``path`` (atomically:
    a temporary file beside it, fsync, rename) and return its summary.

    The blocks are computed a window at a time on the current dask scheduler (two blocks per
    worker thread, or ``WINDOW_BYTES`` of rewards where that is more) and appended in order,
    so the client never holds all the rewards; the file has the bytes ``numpy.save`` writes.
    """
    import dask

    blocks = rewards.to_delayed().ravel().tolist()
    sizes = rewards.chunks[0]
    largest = max(max(sizes, default=1), 1) * rewards.dtype.itemsize
    window = max(2 * _worker_threads(), WINDOW_BYTES // largest, 1)
    accumulator = _Summary()
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype("<f8")), "fortran_order": False,
              "shape": (int(rewards.shape[0]),)}

    def write(fh: Any) -> None:
        np.lib.format.write_array_header_1_0(fh, header)
        for start in range(0, len(blocks), window):
            for block in dask.compute(*blocks[start:start + window]):
                block = np.asarray(block, dtype="<f8")
                accumulator.add(block)
                fh.write(block.tobytes())

    atomic_write(path, write)
    return accumulator.result()


def _worker_threads() -> int:
    """The threads the current dask scheduler runs tasks on: a distributed client's workers',
    else this machine's cores."""
    from dask.base import get_scheduler

    client = getattr(get_scheduler(), "__self__", None)
    if client is not None and hasattr(client, "nthreads"):
        return max(1, sum(client.nthreads().values()))
    return os.cpu_count() or 1
