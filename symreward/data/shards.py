"""Which files make up a sharded dataset: a folder of shards, or a glob pattern.

A sharded dataset is the concatenation of its shards in order of their names (so name them
with zero-padded numbers: ``part-0000.npz``, ``part-0001.npz``, ...). Each shard is a dataset
file of its own, meeting the data contract: its last row closes an episode, and its
supervision keys (``pref_a``, ``rank_segments``, ...) index its own rows. The dataset is the
one ``Dataset.concatenate`` would build from the shards; ``symreward.data.lazy`` reads it a
shard at a time.
"""

from __future__ import annotations

import glob
from pathlib import Path

from symreward.errors import DataError

__all__ = ["GLOB_CHARACTERS", "SHARD_SUFFIXES", "find_shards", "is_sharded"]

SHARD_SUFFIXES = (".npz", ".h5", ".hdf5")
GLOB_CHARACTERS = ("*", "?", "[")


def is_sharded(source: str) -> bool:
    """Whether ``source`` names shards: a glob pattern, or a folder holding dataset files and
    no Minari ``metadata.json``."""
    if any(c in source for c in GLOB_CHARACTERS) and not Path(source).exists():
        return True
    folder = Path(source)
    if not folder.is_dir() or (folder / "metadata.json").exists() \
            or (folder / "data" / "metadata.json").exists():
        return False
    return any(p.suffix.lower() in SHARD_SUFFIXES for p in folder.iterdir() if p.is_file())


def find_shards(source: str) -> list[Path]:
    """The shard files of a folder or glob, sorted by name; ``DataError`` when there are none,
    or when they mix file kinds."""
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
    kinds = {".npz" if p.suffix.lower() == ".npz" else ".h5" for p in found}
    if len(kinds) > 1:
        raise DataError(f"{where} mixes .npz and HDF5 shards; keep one kind per dataset")
    return found
