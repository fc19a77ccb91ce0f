"""Labels files: preference pairs and ranked segments over a whole sharded dataset, kept apart
from its shards.

A labelling campaign compares clips from anywhere in a log (other days, other robots, other
shards) and is usually run after the data was collected. Its labels go in a file of their own
beside the shards, npz or HDF5, holding ``pref_a``, ``pref_b``, ``pref_label`` and/or
``rank_segments``, ``rank_scores`` and none of the transition keys (``symreward.data.shards``
tells the files apart by what they hold). Its segments are ``[start, stop)`` rows of the whole
dataset, the concatenation of the shards in name order, so a pair may compare segments of
two shards; a segment still lies inside one episode, and a shard's last row closes one.

The dataset's preferences are the shards' own (shifted to dataset rows), then each labels
file's, in name order of the labels files; rankings likewise. A labels file is checked against
the dataset's rows and episode ends with ``Dataset``'s checks and messages, naming the labels
file. ``expert`` flags are one per transition: they belong in the shards, not here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from symreward.data.dataset import Dataset
from symreward.data.headers import FileHeader, read_members
from symreward.data.supervision import (
    SUPERVISION_KEYS,
    Preferences,
    Rankings,
    check_supervision,
    readonly,
)
from symreward.errors import DataError, OptionError

if TYPE_CHECKING:
    Supervision = tuple[Preferences | None, Rankings | None]

__all__ = ["appended", "attach_labels", "read_labels", "save_labels"]


def read_labels(header: FileHeader, *, n: int, episode_ends: np.ndarray) -> Supervision:
    """The preferences and rankings of the labels file ``header``, checked against a dataset of
    ``n`` rows whose episodes end (exclusive) at ``episode_ends``; ``DataError`` naming the
    file, the key and the row."""
    if "expert" in header.members:
        raise DataError(f"{header.path}: key 'expert' is in a labels file: expert flags are one "
                        "per transition, so they belong in the shards (each shard's 'expert' of "
                        "shape (rows,)); a labels file holds only "
                        f"{', '.join(SUPERVISION_KEYS)}")
    arrays = read_members(header, [key for key in header.members if key in SUPERVISION_KEYS])
    return check_supervision(arrays, n=n, episode_ends=episode_ends, source=header.path)


def appended(own: Supervision, labels: Sequence[Supervision]) -> Supervision:
    """``own`` preferences and rankings followed by each of ``labels``' in order (None where
    none of them has any)."""
    prefs = [p for p in (own[0], *(found[0] for found in labels)) if p is not None]
    ranks = [r for r in (own[1], *(found[1] for found in labels)) if r is not None]

    def joined(fields: Sequence[Sequence[np.ndarray]]) -> list[np.ndarray]:
        return [readonly(np.concatenate(field)) for field in zip(*fields, strict=True)]

    return (Preferences(*joined([(p.a, p.b, p.label) for p in prefs])) if prefs else None,
            Rankings(*joined([(r.segments, r.scores) for r in ranks])) if ranks else None)


def attach_labels(dataset: Dataset, labels: Sequence[FileHeader]) -> Dataset:
    """``dataset`` (the shards' concatenation) with the labels files' preferences and rankings
    after its own, each file checked against its rows (``read_labels``)."""
    if not labels:
        return dataset
    found = [read_labels(header, n=dataset.n, episode_ends=dataset.episode_ends)
             for header in labels]
    prefs, ranks = appended((dataset.preferences, dataset.rankings), found)
    # Every part is checked against this dataset's rows: nothing is left to validate again.
    return dataset.replace(preferences=prefs, rankings=ranks, validate=False)


def save_labels(path: str | os.PathLike[str], preferences: Preferences | None = None,
                rankings: Rankings | None = None, *, compress: bool = False) -> None:
    """Write a labels file (``.npz`` or ``.h5``/``.hdf5``, atomically) holding ``preferences``
    (``pref_a``, ``pref_b``, ``pref_label``) and/or ``rankings`` (``rank_segments``,
    ``rank_scores``), whose segments are rows of the whole sharded dataset it is put beside.

    The labels are checked as far as they can be without the dataset (shapes, integer
    non-negative indices, non-empty segments, labels in [0, 1], finite scores); ranges and
    episodes are checked when the folder or glob is read.
    """
    from symreward.data.io import save_arrays

    for name, value, kind in (("preferences", preferences, Preferences),
                              ("rankings", rankings, Rankings)):
        if value is not None and not isinstance(value, kind):
            raise OptionError(name, f"<{type(value).__name__}>",
                              f"must be a {kind.__name__} or None")
    if preferences is None and rankings is None:
        raise OptionError("preferences", None, "a labels file needs preferences or rankings "
                                               "(or both)")
    arrays: dict[str, np.ndarray] = {}
    if preferences is not None:
        arrays |= {"pref_a": preferences.a, "pref_b": preferences.b,
                   "pref_label": preferences.label}
    if rankings is not None:
        arrays |= {"rank_segments": rankings.segments, "rank_scores": rankings.scores}
    prefs, ranks = check_supervision(arrays, n=None, episode_ends=None, source=str(path))
    checked: dict[str, np.ndarray] = {}
    if prefs is not None:
        checked |= {"pref_a": prefs.a, "pref_b": prefs.b, "pref_label": prefs.label}
    if ranks is not None:
        checked |= {"rank_segments": ranks.segments, "rank_scores": ranks.scores}
    save_arrays(checked, path, compress=compress)
