"""The supervision a dataset carries (preference pairs, ranked segments) and its checks
against the rows it indexes.

``Dataset`` checks its own supervision here; ``check_supervision`` runs the same checks, with
the same messages, against rows known only by their number and episode ends: labels kept
apart from the data they index (``symreward.data.labels``), over a sharded dataset that is
never in memory at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from symreward.errors import DataError

__all__ = ["SUPERVISION_KEYS", "Preferences", "Rankings", "check_supervision"]

#: Keys of the supervision, which index rows instead of having one per row.
SUPERVISION_KEYS: tuple[str, ...] = (
    "pref_a", "pref_b", "pref_label", "rank_segments", "rank_scores")


def _as_index_array(x: Any) -> Any:
    """Turn integral segment arrays into int64 without ever truncating a fractional value.

    Anything that is not safely convertible is returned as-is so that ``Dataset`` validation can
    report it with the file, key and row, which a bare ``Preferences`` does not know.
    """
    if x is None:
        return None
    arr = np.asarray(x)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64, copy=False)
    if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        return arr.astype(np.int64)
    return arr


def _as_float_array(x: Any) -> Any:
    if x is None:
        return None
    arr = np.asarray(x)
    if arr.dtype.kind in "biuf":
        return arr.astype(np.float64, copy=False)
    return arr


@dataclass(frozen=True, eq=False)
class Preferences:
    """Pairwise segment comparisons: ``label[i]`` is the probability that ``a[i]`` beats ``b[i]``.

    Segments are ``[start, stop)`` transition indices into the dataset they belong to; they are only
    checked (range, episode boundaries, label range) once attached to a ``Dataset`` (or, by
    ``check_supervision``, to the rows they index), because only then are the dataset size, the
    episode structure and the file name known.

    Data shaped like people's is valid as it is, and kept row for row: a label of 0.5 is a tie
    ("equal"), and any label in [0, 1] is a probability; the same pair may appear in several rows
    (several annotators, or one person asked twice), each row a separate observation (in the
    Bradley–Terry likelihood, rows labelled 1 and 0 weigh exactly as two rows labelled 0.5);
    segments may be reused by many pairs and may overlap. A pair that compares a segment with
    itself carries no information (under Bradley–Terry its loss is log 2 whatever the reward) but
    is accepted, with any label: a sampler that draws a and b independently produces such pairs,
    as the synthetic oracle's default does, and rejecting them would reject files that are merely
    uninformative.
    """

    a: np.ndarray
    b: np.ndarray
    label: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "a", _as_index_array(self.a))
        object.__setattr__(self, "b", _as_index_array(self.b))
        object.__setattr__(self, "label", _as_float_array(self.label))

    def __len__(self) -> int:
        return int(np.shape(self.label)[0]) if np.ndim(self.label) else 0


@dataclass(frozen=True, eq=False)
class Rankings:
    """Scored segments (higher score = better); only the order of scores carries information.

    Equal scores are ties and give no pair. A segment may be listed in several rows (several
    annotators' scores): each row is a ranked item of its own, and a segment against its own
    repeat, like any pair of identical segments, says nothing about the reward.
    """

    segments: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "segments", _as_index_array(self.segments))
        object.__setattr__(self, "scores", _as_float_array(self.scores))

    def __len__(self) -> int:
        return int(np.shape(self.scores)[0]) if np.ndim(self.scores) else 0


def readonly(arr: np.ndarray) -> np.ndarray:
    """A read-only view: callers keep a writable original, the dataset cannot be mutated."""
    view = arr.view()
    view.flags.writeable = False
    return view


def first_true(mask: np.ndarray) -> int:
    return int(np.argmax(mask))


def shape_text(arr: np.ndarray) -> str:
    return str(tuple(int(s) for s in arr.shape))


def supervision_of(arrays: Mapping[str, Any], source: str,
                   ) -> tuple[Preferences | None, Rankings | None]:
    """The preferences and rankings of a flat mapping, unchecked; ``DataError`` when a group of
    keys is only partly present."""
    for group in (("pref_a", "pref_b", "pref_label"), ("rank_segments", "rank_scores")):
        present = [k for k in group if k in arrays]
        if present and len(present) != len(group):
            missing = [k for k in group if k not in arrays]
            together = f"{', '.join(group[:-1])} and {group[-1]}"
            raise DataError(
                f"{source}: key {missing[0]!r} is missing: {together} go together "
                f"(found only {', '.join(present)})"
            )
    prefs = None
    if "pref_a" in arrays:
        prefs = Preferences(arrays["pref_a"], arrays["pref_b"], arrays["pref_label"])
    ranks = None
    if "rank_segments" in arrays:
        ranks = Rankings(arrays["rank_segments"], arrays["rank_scores"])
    return prefs, ranks


def check_supervision(arrays: Mapping[str, Any], *, n: int | None,
                      episode_ends: np.ndarray | None,
                      source: str) -> tuple[Preferences | None, Rankings | None]:
    """The preferences and rankings of ``arrays`` (``pref_*`` and ``rank_*`` keys), checked as
    a ``Dataset`` checks its own, against ``n`` rows cut into episodes that end (exclusive) at
    ``episode_ends``, with the same messages, naming ``source``: what labels kept apart from
    the rows they index need (``symreward.data.labels``). With ``n`` and ``episode_ends``
    None (labels written before the rows are known), all but the segments' ranges and
    episodes is checked, and a negative index is refused."""
    prefs, ranks = supervision_of(arrays, source)
    checks = SupervisionChecks(source)
    checks.n = n
    checks.episode_ends = None if episode_ends is None else np.asarray(episode_ends, np.int64)
    return (None if prefs is None else checks.preferences(prefs),
            None if ranks is None else checks.rankings(ranks))


class SupervisionChecks:
    """The checks of preferences and rankings against ``n`` rows and their ``episode_ends``
    (set before they run; None: not known, not checked), stopping at the first problem; each
    returns the checked value."""

    n: int | None
    episode_ends: np.ndarray | None

    def __init__(self, source: str):
        self.src = source

    def fail(self, key: str, detail: str) -> DataError:
        return DataError(f"{self.src}: key {key!r}: {detail}")

    def numeric(self, key: str, value: Any) -> np.ndarray:
        arr = np.asarray(value)
        if arr.dtype.kind not in "biuf":
            raise self.fail(key, f"expected numbers, got dtype {arr.dtype}")
        return arr

    def segments(self, key: str, value: Any) -> np.ndarray:
        arr = self.numeric(key, value)
        if arr.ndim != 2 or arr.shape[1] != 2:
            raise self.fail(
                key, f"must have shape (P, 2) as [start, stop) rows; got {shape_text(arr)}")
        if arr.dtype.kind == "f":
            bad = ~np.isfinite(arr) | (arr != np.round(arr))
            if bad.any():
                row = first_true(bad.any(axis=1))
                raise self.fail(key, f"row {row} is {arr[row].tolist()}; indices must be integers")
        if arr.dtype.kind == "b":
            raise self.fail(key, "segment indices must be integers, got booleans")
        return arr.astype(np.int64, copy=False)

    def segment_bounds(self, key: str, seg: np.ndarray) -> None:
        n = self.n
        start, stop = seg[:, 0], seg[:, 1]
        checks = (
            ((start < 0), "a negative index (rows count from 0)") if n is None else
            ((start < 0) | (stop > n), f"out of range for {n} transitions (valid: 0..{n})"),
            (stop <= start, "empty segment (stop <= start)"),
        )
        for bad, why in checks:
            if bad.any():
                row = first_true(bad)
                raise self.fail(key, f"row {row} is {seg[row].tolist()}: {why}")
        if self.episode_ends is None:
            return
        # Episode numbers from the episode ends: no array of the dataset's length is built.
        first = np.searchsorted(self.episode_ends, start, side="right")
        crossing = first != np.searchsorted(self.episode_ends, stop - 1, side="right")
        if crossing.any():
            row = first_true(crossing)
            end = int(self.episode_ends[first[row]]) - 1
            raise self.fail(
                key,
                f"row {row} is {seg[row].tolist()}: crosses an episode boundary (an episode ends "
                f"at transition {end}; segments must lie inside one episode)",
            )

    def preferences(self, prefs: Preferences) -> Preferences:
        a = self.segments("pref_a", prefs.a)
        b = self.segments("pref_b", prefs.b)
        label = self.numeric("pref_label", prefs.label)
        if label.ndim != 1:
            raise self.fail("pref_label", f"must have shape (P,); got {shape_text(label)}")
        if not (a.shape[0] == b.shape[0] == label.shape[0]):
            raise DataError(
                f"{self.src}: keys 'pref_a' {shape_text(a)}, 'pref_b' {shape_text(b)} and "
                f"'pref_label' {shape_text(label)} must have the same number of rows"
            )
        self.segment_bounds("pref_a", a)
        self.segment_bounds("pref_b", b)
        label = label.astype(np.float64, copy=False)
        bad = ~np.isfinite(label) | (label < 0) | (label > 1)
        if bad.any():
            row = first_true(bad)
            raise self.fail(
                "pref_label",
                f"row {row} is {label[row]}; labels are probabilities in [0, 1]",
            )
        return Preferences(readonly(a), readonly(b), readonly(label))

    def rankings(self, ranks: Rankings) -> Rankings:
        seg = self.segments("rank_segments", ranks.segments)
        scores = self.numeric("rank_scores", ranks.scores)
        if scores.ndim != 1 or scores.shape[0] != seg.shape[0]:
            raise DataError(
                f"{self.src}: key 'rank_scores' has shape {shape_text(scores)} but key "
                f"'rank_segments' has shape {shape_text(seg)}; expected rank_scores of shape "
                f"({seg.shape[0]},)"
            )
        self.segment_bounds("rank_segments", seg)
        scores = scores.astype(np.float64, copy=False)
        bad = ~np.isfinite(scores)
        if bad.any():
            row = first_true(bad)
            raise self.fail(
                "rank_scores", f"row {row} is {scores[row]}; NaN and inf are not allowed"
            )
        return Rankings(readonly(seg), readonly(scores))
