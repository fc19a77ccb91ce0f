"""Relabelling a sharded dataset: a folder with one relabelled shard per input shard.

Each shard is relabelled by ``relabel`` (the single-file machinery: npz members copied as
their stored bytes, HDF5 copied and edited, the artifact recorded), as a dask task on the
current scheduler, so shards are written in parallel. The tasks receive paths and the
artifact's TOML text (``symreward.blocks.artifact_text``); they write the shards themselves, so
with a remote cluster the folders must be on a filesystem the workers share with the client.

The output appears whole or not at all: the shards go to a temporary folder beside it, renamed
into place once every shard is written and synced. Every shard is tried, and a failure is
reported for the first failing shard in name order, whatever order the tasks ran in; then
nothing is left behind, neither the output nor the temporary folder.
"""

from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from symreward.atomic import sync_directory
from symreward.data.relabel import CHUNK_ROWS, Relabelled, relabel
from symreward.data.shards import dataset_files
from symreward.errors import DataError, OptionError, SymrewardError

if TYPE_CHECKING:
    from symreward.artifact import RewardArtifact

__all__ = ["RelabelledShards", "relabel_shards"]


@dataclass(frozen=True)
class RelabelledShards:
    """What ``relabel_shards`` wrote: the folder, each shard's ``Relabelled`` (in name order),
    and over all of them the number of rewards, their mean and range."""

    output: str
    shards: tuple[Relabelled, ...]
    rows: int
    mean: float
    minimum: float
    maximum: float
    artifact_hash: str


def relabel_shards(artifact: RewardArtifact | str | os.PathLike[str], source: str,
                   output: str | os.PathLike[str], *,
                   chunk_rows: int = CHUNK_ROWS) -> RelabelledShards:
    """Write the folder ``output`` holding, for each shard of ``source`` (a folder or glob,
    ``dataset_files``), a copy relabelled with ``artifact``'s rewards under the same name, and
    a copy of each labels file (its rows are the same rows).

    ``output`` must not exist yet; its parent folder must. Raises ``DataError`` (or
    ``FeatureError``) naming the shard when one cannot be relabelled, and leaves no output.
    """
    from symreward.artifact import RewardArtifact
    from symreward.blocks import artifact_text
    from symreward.kernels.runtime import PARALLEL_ROWS
    from symreward.schedulers import import_dask

    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise OptionError("chunk_rows", chunk_rows, "must be a positive integer")
    dask = import_dask("relabel of shards")
    if not isinstance(artifact, RewardArtifact):
        artifact = RewardArtifact.load(artifact)
    files = dataset_files(str(source))
    shards = [Path(path) for path in files.shards]
    labels = [Path(header.path) for header in files.labels]
    target = Path(output)
    if target.exists() or not target.parent.is_dir():
        raise DataError(f"{output}: " + (
            "exists; relabelled shards go to a new folder" if target.exists() else
            f"folder {target.parent} does not exist"))
    text = artifact_text(artifact)
    # Chunks below the parallel kernel's size: each task computes on its own thread, the tasks
    # are the parallelism (symreward.blocks).
    rows = min(chunk_rows, PARALLEL_ROWS - 1)
    temporary = target.parent / f".{target.name}.{secrets.token_hex(6)}.tmp"
    temporary.mkdir()
    try:
        tasks = [dask.delayed(_relabel_shard, pure=False)(
            text, artifact.source, str(shard), str(temporary / shard.name), rows)
            for shard in shards]
        results = dask.compute(*tasks)
        for result in results:
            if isinstance(result, SymrewardError):
                raise result
        for path in labels:
            shutil.copyfile(path, temporary / path.name)
        _keep_only(temporary, {path.name for path in (*shards, *labels)})
        sync_directory(temporary)
        os.rename(temporary, target)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    sync_directory(target.parent)
    return _summary(str(target), results, artifact.content_hash())


def _relabel_shard(text: str, artifact_source: str, shard: str, output: str,
                   chunk_rows: int) -> Relabelled | SymrewardError:
    """One shard (a dask task). Its error is returned, not raised: the client then waits for
    every task, so none still writes into the temporary folder when it is removed."""
    from symreward.blocks import shipped_artifact

    try:
        return relabel(shipped_artifact(text, artifact_source), shard, output,
                       chunk_rows=chunk_rows)
    except SymrewardError as exc:
        return exc


def _keep_only(folder: Path, names: set[str]) -> None:
    """Remove what a task that died mid-write left (its temporary file): a worker killed while
    writing a shard leaves one, and the shard is written again elsewhere."""
    for path in folder.iterdir():
        if path.name not in names:
            path.unlink()


def _summary(output: str, results: tuple[Relabelled, ...], artifact_hash: str
             ) -> RelabelledShards:
    # Each task wrote into the temporary folder; its shard is now in the output.
    results = tuple(replace(r, output=str(Path(output) / Path(r.output).name)) for r in results)
    rows = sum(r.rows for r in results)
    return RelabelledShards(
        output=output, shards=results, rows=rows,
        mean=sum(r.mean * r.rows for r in results) / rows,
        minimum=min(r.minimum for r in results), maximum=max(r.maximum for r in results),
        artifact_hash=artifact_hash)
