"""Which files make up a sharded dataset: a folder of shards, or a glob pattern.

A sharded dataset is the concatenation of its shards in order of their names (so name them
with zero-padded numbers: ``part-0000.npz``, ``part-0001.npz``, ...). Each shard is a dataset
file of its own, meeting the data contract: its last row closes an episode, and its
supervision keys (``pref_a``, ``rank_segments``, ...) index its own rows. The dataset is the
one ``Dataset.concatenate`` would build from the shards; ``symreward.data.lazy`` reads it a
shard at a time.

Beside the shards, a folder or glob may hold labels files (``symreward.data.labels``): files
that hold supervision keys and no transitions, whose segments are rows of the whole dataset.
Files are told apart by what they hold (their headers), not by their names.
"""

from __future__ import annotations

import contextlib
import glob
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from symreward.data.dataset import REQUIRED_KEYS, SUPERVISION_KEYS
from symreward.errors import DataError

if TYPE_CHECKING:
    from symreward.data.headers import FileHeader

__all__ = ["GLOB_CHARACTERS", "SHARD_SUFFIXES", "DatasetFiles", "dataset_files", "find_shards",
           "is_labels_file", "is_sharded", "labels_file_alone"]

SHARD_SUFFIXES = (".npz", ".h5", ".hdf5")
GLOB_CHARACTERS = ("*", "?", "[")
# What a labels file may hold; ``expert`` is counted so that it is refused by name there.
_LABEL_KEYS = frozenset({*SUPERVISION_KEYS, "expert"})


@dataclass(frozen=True)
class DatasetFiles:
    """The files of a sharded dataset, each kind in order of their names: the shards' paths
    (concatenated, they are the dataset's rows) with the ``headers`` read of them, and the
    labels files' headers."""

    shards: tuple[str, ...]
    headers: Mapping[str, FileHeader]
    labels: tuple[FileHeader, ...]


def is_sharded(source: str) -> bool:
    """Whether ``source`` names shards: a glob pattern, or a folder holding dataset files (npz
    or HDF5: shards or labels files) and no Minari ``metadata.json``."""
    if any(c in source for c in GLOB_CHARACTERS) and not Path(source).exists():
        return True
    folder = Path(source)
    if not folder.is_dir() or (folder / "metadata.json").exists() \
            or (folder / "data" / "metadata.json").exists():
        return False
    return any(p.suffix.lower() in SHARD_SUFFIXES for p in folder.iterdir() if p.is_file())


def is_labels_file(keys: Iterable[str]) -> bool:
    """Whether a file holding the data-contract ``keys`` is a labels file: it holds supervision
    (``pref_*``, ``rank_*``; or ``expert``, which a labels file may not hold) and nothing with
    one row per transition (``observations``, ..., ``rewards``, ``infos/<name>``)."""
    keys = set(keys)
    per_transition = any(key in REQUIRED_KEYS or key == "rewards" or key.startswith("infos/")
                         for key in keys)
    return not per_transition and bool(keys & _LABEL_KEYS)


def labels_file_alone(path: str, keys: Iterable[str]) -> DataError:
    """The error for a labels file (holding ``keys``) read as a dataset of its own."""
    held = ", ".join(sorted(set(keys) & _LABEL_KEYS))
    return DataError(f"{path}: holds {held} and no transitions: it is a labels file, whose "
                     "segments are rows of a sharded dataset; read the folder or glob that "
                     "holds it with the shards")


def dataset_files(source: str) -> DatasetFiles:
    """The shards and labels files of a folder or glob, each sorted by name, told apart by
    their headers (``is_labels_file``); ``DataError`` when there are no shards, when two
    files have the same name, or when the shards mix file kinds. A file whose header cannot
    be read counts as a shard: its error is the one reading it gives, in name order with
    the other shards' (a labels file is read whole, at opening)."""
    # headers.py reads files with io.py's helpers, and io.py imports this module.
    from symreward.data.headers import read_file_header

    folder = Path(source)
    if folder.is_dir():
        found = [p for p in folder.iterdir()
                 if p.is_file() and p.suffix.lower() in SHARD_SUFFIXES]
        where = f"{source}: folder"
    else:
        found = [Path(p) for p in glob.glob(source) if Path(p).is_file()]
        where = f"{source}: pattern"
    if not found:
        raise DataError(f"{where} matches no dataset shards (.npz, .h5 or .hdf5 files)")
    found.sort(key=lambda p: p.name)
    names = [p.name for p in found]
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})[0]
        raise DataError(f"{where} matches two shards named {twice!r} (in different folders): "
                        "the order of shards is the order of their names")
    headers: dict[str, FileHeader] = {}
    for path in found:
        with contextlib.suppress(DataError):  # raised again where the shard is read
            headers[str(path)] = read_file_header(str(path))
    labels = tuple(h for h in headers.values() if is_labels_file(h.members))
    labelling = {h.path for h in labels}
    shards = tuple(str(p) for p in found if str(p) not in labelling)
    if not shards:
        raise DataError(f"{where} matches no dataset shards, only labels files "
                        f"({', '.join(Path(h.path).name for h in labels)}): labels index the "
                        "rows of shards, files with observations, actions, ...")
    kinds = {".npz" if Path(p).suffix.lower() == ".npz" else ".h5" for p in shards}
    if len(kinds) > 1:
        raise DataError(f"{where} mixes .npz and HDF5 shards; keep one kind per dataset")
    return DatasetFiles(shards, {p: headers[p] for p in shards if p in headers}, labels)


def find_shards(source: str) -> list[Path]:
    """The shard files of a folder or glob, sorted by name (its labels files left out);
    ``DataError`` as ``dataset_files`` gives it."""
    return [Path(path) for path in dataset_files(source).shards]
