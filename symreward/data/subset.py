"""A dataset's rows that carry labels, as a smaller dataset of their own.

Learning from preferences or rankings reads only the transitions inside labelled segments: the
rest of a dataset never enters the loss. ``take`` builds the dataset of a set of rows, so the
learner's cost (featurising, the candidate columns, the structure search) is set by the labels
and not by the size of the log they were drawn from; a dataset too large for memory
(``symreward.data.lazy``) is reduced the same way, by gathering those rows only.

Episodes stay what they were: an episode of the subset is a source episode's taken rows, so it
ends where the source's episode ends (and at the last row). Every labelled segment (inside one
episode, all its rows taken) stays one contiguous segment inside one episode, and objectives
whose cross-validation units are episodes see the same units.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from symreward.data.dataset import Dataset, Preferences, Rankings

__all__ = ["labelled_rows", "segment_rows", "take"]

#: Per-row keys of the data contract; supervision keys (segments) are renumbered instead.
ROW_KEYS = ("observations", "actions", "next_observations", "terminals", "timeouts", "rewards",
            "expert")


def segment_rows(segments: np.ndarray) -> np.ndarray:
    """The sorted, distinct rows covered by ``[start, stop)`` segments (overlaps counted once),
    computed from the segments alone: no array of the dataset's length is built."""
    segments = np.asarray(segments, dtype=np.int64).reshape(-1, 2)
    if len(segments) == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(segments[:, 0], kind="stable")
    starts, stops = segments[order, 0], segments[order, 1]
    reach = np.maximum.accumulate(stops)
    # A run of overlapping or touching segments starts where no earlier segment reaches it.
    new_run = np.concatenate(([True], starts[1:] > reach[:-1]))
    run_starts = starts[new_run]
    run_stops = reach[np.concatenate((np.flatnonzero(new_run)[1:] - 1, [len(starts) - 1]))]
    lengths = run_stops - run_starts
    offsets = np.repeat(run_starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
    return np.arange(int(lengths.sum()), dtype=np.int64) + offsets


def labelled_rows(dataset: Dataset | object) -> np.ndarray:
    """The rows inside any preference or ranked segment of ``dataset`` (sorted, distinct)."""
    parts = []
    prefs = getattr(dataset, "preferences", None)
    if prefs is not None:
        parts += [prefs.a, prefs.b]
    ranks = getattr(dataset, "rankings", None)
    if ranks is not None:
        parts.append(ranks.segments)
    if not parts:
        return np.zeros(0, dtype=np.int64)
    return segment_rows(np.concatenate([np.asarray(p).reshape(-1, 2) for p in parts]))


def take(dataset: Dataset, rows: np.ndarray, *, source: str | None = None) -> Dataset:
    """The dataset of ``rows`` (sorted, distinct indices), episodes kept apart (module doc).

    Preference pairs and ranked segments come along, renumbered, when every row of their
    segments is taken; the others are dropped.
    """
    rows = np.asarray(rows, dtype=np.int64)
    arrays = {key: getattr(dataset, key) for key in ROW_KEYS
              if getattr(dataset, key) is not None}
    arrays |= {f"infos/{name}": value for name, value in dataset.infos.items()}
    gathered = {key: np.asarray(value)[rows] for key, value in arrays.items()}
    ends = np.asarray(dataset.episode_ends)
    closes = np.isin(rows + 1, ends)
    return from_gathered(gathered, rows, closes, dataset.preferences, dataset.rankings,
                         source or f"{dataset.source} (rows {len(rows)})")


def from_gathered(gathered: Mapping[str, np.ndarray], rows: np.ndarray, closes: np.ndarray,
                  preferences: Preferences | None, rankings: Rankings | None,
                  source: str) -> Dataset:
    """``take``'s result from arrays already gathered at ``rows`` (how a dataset on disk is
    reduced, chunk by chunk); ``closes[i]`` says whether row ``rows[i]`` ends an episode of the
    source."""
    rows = np.asarray(rows, dtype=np.int64)
    arrays = dict(gathered)
    terminals = np.asarray(arrays["terminals"], dtype=bool)
    arrays["timeouts"] = np.asarray(arrays["timeouts"], dtype=bool) | (closes & ~terminals)
    position = rows

    def renumber(segments: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        segments = np.asarray(segments, dtype=np.int64).reshape(-1, 2)
        if not len(position):  # no rows: no segment is taken (and the dataset is refused)
            return segments, np.zeros(len(segments), dtype=bool)
        first = np.searchsorted(position, segments[:, 0])
        last = np.searchsorted(position, segments[:, 1] - 1)
        inside = ((first < len(position)) & (last < len(position))
                  & (position[np.minimum(first, len(position) - 1)] == segments[:, 0])
                  & (position[np.minimum(last, len(position) - 1)] == segments[:, 1] - 1)
                  & (last - first == segments[:, 1] - 1 - segments[:, 0]))
        return np.column_stack([first, last + 1]), inside

    if preferences is not None:
        a, keep_a = renumber(preferences.a)
        b, keep_b = renumber(preferences.b)
        keep = keep_a & keep_b
        if keep.any():
            arrays |= {"pref_a": a[keep], "pref_b": b[keep],
                       "pref_label": np.asarray(preferences.label)[keep]}
    if rankings is not None:
        segments, keep = renumber(rankings.segments)
        if keep.any():
            arrays |= {"rank_segments": segments[keep],
                       "rank_scores": np.asarray(rankings.scores)[keep]}
    return Dataset.from_arrays(arrays, source=source)
