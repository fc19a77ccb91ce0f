"""The in-memory dataset: D4RL-style transitions plus the supervision that rides along with them.

Everything downstream (features, objectives, audits) reads plain numpy arrays from a ``Dataset``,
so the only place that has to distrust user data is here. A ``Dataset`` is validated when it is
built and is immutable afterwards (arrays are read-only views, never copies of float data), which
lets later stages skip re-checking and lets them cache per-dataset work safely.

Error messages name the source (usually the file), the data-contract key and the first bad row,
because that is what a person needs to go and fix the file.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from symreward.data.supervision import (
    SUPERVISION_KEYS,
    Preferences,
    Rankings,
    SupervisionChecks,
    check_supervision,
    first_true,
    readonly,
    shape_text,
    supervision_of,
)
from symreward.errors import DataError

__all__ = ["REQUIRED_KEYS", "SUPERVISION_KEYS", "Dataset", "Preferences", "Rankings",
           "check_supervision"]

#: Keys every dataset file must contain (the D4RL names).
REQUIRED_KEYS: tuple[str, ...] = (
    "observations",
    "actions",
    "next_observations",
    "terminals",
    "timeouts",
)

_MEMORY_SOURCE = "<in-memory dataset>"


@dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """N transitions in the D4RL layout, with optional rewards, infos and supervision.

    Episodes end at rows where ``terminals | timeouts`` is true; the last row always closes an
    episode, so a file cut mid-episode still has a well-defined episode structure.

    Float observation/action arrays keep their dtype (float32 stays float32) and are not copied;
    integer or boolean ones are converted to float64 because features are evaluated in floating
    point. ``rewards`` and ``infos`` are float64.

    Build with keyword arguments, or from a flat mapping with D4RL keys via ``from_arrays``. Use
    ``replace(...)`` to derive a changed copy (it is validated again).
    """

    observations: np.ndarray
    actions: np.ndarray
    next_observations: np.ndarray
    terminals: np.ndarray
    timeouts: np.ndarray
    rewards: np.ndarray | None = None
    infos: dict[str, np.ndarray] = field(default_factory=dict)
    preferences: Preferences | None = None
    rankings: Rankings | None = None
    expert: np.ndarray | None = None
    source: str = _MEMORY_SOURCE
    validate: dataclasses.InitVar[bool] = True

    # ------------------------------------------------------------------ construction

    def __post_init__(self, validate: bool) -> None:
        infos = {} if self.infos is None else dict(self.infos)
        object.__setattr__(self, "infos", infos)
        object.__setattr__(self, "source", str(self.source))
        if validate:
            _Validator(self).run()
        else:
            _normalize_unchecked(self)
        for name in ("observations", "actions", "next_observations", "terminals", "timeouts",
                     "rewards", "expert"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, readonly(value))
        object.__setattr__(
            self, "infos", {k: readonly(v) for k, v in self.infos.items()}
        )

    @classmethod
    def from_arrays(
        cls, arrays: Mapping[str, Any], source: str = _MEMORY_SOURCE
    ) -> Dataset:
        """Build a dataset from a flat mapping keyed like the data contract (``infos/<name>`` …).

        This is what the file readers use, so a missing or half-present group of keys is reported
        here, with the names a person would see in their file. Unknown keys are ignored (D4RL
        files carry ``metadata/*``); the file readers also drop multi-column infos such as
        ``infos/qpos`` before calling this, since only one number per step can be a feature.
        """
        for key in REQUIRED_KEYS:
            if key not in arrays:
                hint = ""
                if key == "next_observations":
                    hint = (
                        " (some D4RL files omit it; symreward requires it because features may "
                        "use next_obs: add it, e.g. observations[t + 1] within each episode)"
                    )
                raise DataError(f"{source}: missing required key {key!r}{hint}")
        prefs, ranks = supervision_of(arrays, source)
        infos = {
            key[len("infos/"):]: value
            for key, value in arrays.items()
            if key.startswith("infos/") and len(key) > len("infos/")
        }
        return cls(
            observations=arrays["observations"],
            actions=arrays["actions"],
            next_observations=arrays["next_observations"],
            terminals=arrays["terminals"],
            timeouts=arrays["timeouts"],
            rewards=arrays.get("rewards"),
            infos=infos,
            preferences=prefs,
            rankings=ranks,
            expert=arrays.get("expert"),
            source=source,
        )

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The flat D4RL-keyed mapping that ``from_arrays`` reads back (used by the writers)."""
        out: dict[str, np.ndarray] = {
            "observations": self.observations,
            "actions": self.actions,
            "next_observations": self.next_observations,
            "terminals": self.terminals,
            "timeouts": self.timeouts,
        }
        if self.rewards is not None:
            out["rewards"] = self.rewards
        for name, value in self.infos.items():
            out[f"infos/{name}"] = value
        if self.preferences is not None:
            out["pref_a"] = self.preferences.a
            out["pref_b"] = self.preferences.b
            out["pref_label"] = self.preferences.label
        if self.rankings is not None:
            out["rank_segments"] = self.rankings.segments
            out["rank_scores"] = self.rankings.scores
        if self.expert is not None:
            out["expert"] = self.expert
        return out

    @classmethod
    def concatenate(cls, parts: Sequence[Dataset], source: str | None = None) -> Dataset:
        """One dataset from several (e.g. collected with different policies); episodes stay
        separate and segment indices are shifted to the new rows."""
        if not parts:
            raise ValueError("nothing to concatenate")
        offsets = np.cumsum([0] + [p.n for p in parts[:-1]])
        arrays: dict[str, Any] = {}
        for key in parts[0].to_arrays():
            values = [p.to_arrays().get(key) for p in parts]
            if any(v is None for v in values):
                if key in REQUIRED_KEYS:
                    raise DataError(f"cannot concatenate: key {key!r} is missing in a part")
                continue
            if key in ("pref_a", "pref_b", "rank_segments"):
                values = [v + off for v, off in zip(values, offsets, strict=True)]
            arrays[key] = np.concatenate(values)
        # Each part's last row closes an episode; say so, or episodes would run across parts.
        ends = np.concatenate([np.arange(p.n) == p.n - 1 for p in parts])
        arrays["timeouts"] = arrays["timeouts"] | (ends & ~arrays["terminals"])
        shown = source or " + ".join(p.source for p in parts)
        return cls.from_arrays(arrays, source=shown)

    def replace(self, **changes: Any) -> Dataset:
        """A new, re-validated dataset with some fields changed (e.g. ``preferences=...``)."""
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ shape and episodes

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        extras = [
            name
            for name, value in (
                ("rewards", self.rewards),
                ("preferences", self.preferences),
                ("rankings", self.rankings),
                ("expert", self.expert),
            )
            if value is not None
        ]
        if self.infos:
            extras.append("infos=" + ",".join(self.infos))
        return (
            f"Dataset(n={self.n}, obs_dim={self.obs_dim}, act_dim={self.act_dim}, "
            f"episodes={self.n_episodes}, with=[{'; '.join(extras)}], source={self.source!r})"
        )

    @property
    def n(self) -> int:
        """Number of transitions."""
        return int(self.observations.shape[0])

    @property
    def obs_dim(self) -> int:
        return int(self.observations.shape[1])

    @property
    def act_dim(self) -> int:
        return int(self.actions.shape[1])

    @cached_property
    def _done(self) -> np.ndarray:
        done = np.logical_or(self.terminals, self.timeouts)
        done[-1] = True
        return done

    @cached_property
    def episode_ends(self) -> np.ndarray:
        """Exclusive stop index of each episode.

        Episode k is ``[episode_starts[k], episode_ends[k])``, the same convention as segments.
        """
        return readonly(np.flatnonzero(self._done).astype(np.int64) + 1)

    @cached_property
    def episode_starts(self) -> np.ndarray:
        """Start index of each episode (0 and the row after every episode end)."""
        return readonly(np.concatenate(([0], self.episode_ends[:-1])).astype(np.int64))

    @cached_property
    def episode_ids(self) -> np.ndarray:
        """Episode number of every transition, counting from 0."""
        ids = np.zeros(self.n, dtype=np.int64)
        ids[1:] = np.cumsum(self._done[:-1])
        return readonly(ids)

    @property
    def n_episodes(self) -> int:
        return int(self.episode_ends.shape[0])

    @property
    def episode_lengths(self) -> np.ndarray:
        return self.episode_ends - self.episode_starts

    def segment_in_one_episode(self, start: int, stop: int) -> bool:
        """Whether ``[start, stop)`` is a non-empty in-range segment inside a single episode."""
        if not (0 <= start < stop <= self.n):
            return False
        return bool(self.episode_ids[start] == self.episode_ids[stop - 1])

    def segments_in_one_episode(self, segments: np.ndarray) -> np.ndarray:
        """Vectorised ``segment_in_one_episode`` over an ``(M, 2)`` array; returns ``(M,)`` bool."""
        seg = np.asarray(segments, dtype=np.int64).reshape(-1, 2)
        start, stop = seg[:, 0], seg[:, 1]
        ok = (start >= 0) & (stop > start) & (stop <= self.n)
        ids = self.episode_ids
        same = np.zeros(seg.shape[0], dtype=bool)
        same[ok] = ids[start[ok]] == ids[stop[ok] - 1]
        return same


# ---------------------------------------------------------------------- validation


def _normalize_unchecked(ds: Dataset) -> None:
    """The cheap dtype normalisation done even when validation is skipped (trusted producers)."""
    for name in ("observations", "actions", "next_observations"):
        object.__setattr__(ds, name, np.asarray(getattr(ds, name)))
    for name in ("terminals", "timeouts"):
        object.__setattr__(ds, name, np.asarray(getattr(ds, name), dtype=bool))
    if ds.rewards is not None:
        object.__setattr__(ds, "rewards", np.asarray(ds.rewards, dtype=np.float64))
    if ds.expert is not None:
        object.__setattr__(ds, "expert", np.asarray(ds.expert, dtype=bool))
    object.__setattr__(
        ds, "infos", {k: np.asarray(v, dtype=np.float64) for k, v in ds.infos.items()}
    )


class _Validator(SupervisionChecks):
    """Checks a freshly built Dataset against the data contract, stopping at the first problem.

    It also normalises dtypes in place (via ``object.__setattr__``) as it goes, so every later
    check, and every later user, sees the canonical types.
    """

    def __init__(self, ds: Dataset):
        super().__init__(ds.source)
        self.ds = ds

    def set(self, name: str, value: Any) -> None:
        object.__setattr__(self.ds, name, value)

    def run(self) -> None:
        ds = self.ds
        for key in REQUIRED_KEYS:
            if getattr(ds, key) is None:
                raise DataError(f"{self.src}: missing required key {key!r}")
        obs = self.matrix("observations", ds.observations)
        n = obs.shape[0]
        if n == 0:
            raise self.fail("observations", "the dataset has no transitions (0 rows)")
        act = self.matrix("actions", ds.actions)
        nxt = self.matrix("next_observations", ds.next_observations)
        self.same_rows("actions", act, "observations", obs)
        if nxt.shape != obs.shape:
            raise DataError(
                f"{self.src}: key 'next_observations' has shape {shape_text(nxt)} but key "
                f"'observations' has shape {shape_text(obs)}; they must match"
            )
        self.set("observations", obs)
        self.set("actions", act)
        self.set("next_observations", nxt)
        for key in ("terminals", "timeouts"):
            self.set(key, self.flags(key, getattr(ds, key), n))
        if ds.rewards is not None:
            self.set("rewards", self.vector("rewards", ds.rewards, n))
        infos = {}
        for name, value in ds.infos.items():
            if not isinstance(name, str) or not name or "/" in name:
                raise DataError(
                    f"{self.src}: info name {name!r} is not a plain name (use 'x', stored as "
                    "'infos/x')"
                )
            infos[name] = self.vector(f"infos/{name}", value, n)
        self.set("infos", infos)
        for key in ("observations", "next_observations", "actions"):
            self.finite_rows(key, getattr(ds, key))
        if ds.expert is not None:
            self.set("expert", self.flags("expert", ds.expert, n))
        self.n, self.episode_ends = n, ds.episode_ends
        if ds.preferences is not None:
            self.set("preferences", self.preferences(ds.preferences))
        if ds.rankings is not None:
            self.set("rankings", self.rankings(ds.rankings))

    # --- array checks

    def matrix(self, key: str, value: Any) -> np.ndarray:
        arr = self.numeric(key, value)
        if arr.ndim != 2:
            dim = "obs_dim" if "observations" in key else "act_dim"
            hint = " (for a single column use x[:, None])" if arr.ndim == 1 else ""
            raise self.fail(
                key, f"must be 2-D with shape (N, {dim}); got shape {shape_text(arr)}{hint}"
            )
        if arr.dtype.kind != "f":
            arr = arr.astype(np.float64)
        return arr

    def same_rows(self, key: str, arr: np.ndarray, ref_key: str, ref: np.ndarray) -> None:
        if arr.shape[0] != ref.shape[0]:
            raise DataError(
                f"{self.src}: key {key!r} has {arr.shape[0]} rows (shape {shape_text(arr)}) but "
                f"key {ref_key!r} has {ref.shape[0]} rows (shape {shape_text(ref)})"
            )

    def length(self, key: str, arr: np.ndarray, n: int) -> None:
        if arr.ndim != 1 or arr.shape[0] != n:
            raise DataError(
                f"{self.src}: key {key!r} has shape {shape_text(arr)} but key 'observations' has "
                f"{n} rows; expected shape ({n},)"
            )

    def flags(self, key: str, value: Any, n: int) -> np.ndarray:
        arr = self.numeric(key, value)
        self.length(key, arr, n)
        if arr.dtype == bool:
            return arr
        bad = ~((arr == 0) | (arr == 1))
        if bad.any():
            row = first_true(bad)
            raise self.fail(key, f"row {row} is {arr[row]!r}; expected a boolean (0 or 1)")
        return arr.astype(bool)

    def vector(self, key: str, value: Any, n: int) -> np.ndarray:
        arr = self.numeric(key, value)
        self.length(key, arr, n)
        arr = arr.astype(np.float64, copy=False)
        bad = ~np.isfinite(arr)
        if bad.any():
            row = first_true(bad)
            raise self.fail(key, f"row {row} is {arr[row]}; NaN and inf are not allowed")
        return arr

    def finite_rows(self, key: str, arr: np.ndarray) -> None:
        # One value broadcast to every element (a lazy dataset's stand-in for a column it has
        # not read) is checked once, not once per element.
        if arr.size and not any(arr.strides):
            arr = arr.reshape(-1)[:1].reshape((1,) * arr.ndim)
        # The sum is finite iff no element is NaN/inf (barring overflow), so the common clean case
        # costs one pass and no N×d temporary.
        with np.errstate(over="ignore", invalid="ignore"):
            if np.isfinite(arr.sum()):
                return
        bad = ~np.isfinite(arr)
        if bad.any():
            row = first_true(bad.any(axis=1))
            col = first_true(bad[row])
            raise self.fail(key, f"row {row} has NaN or inf (column {col}: {arr[row, col]})")


def dataset_digest(dataset: Dataset) -> str:
    """sha256 over the dataset's arrays (names, dtypes, shapes, bytes), not its file format."""
    digest = hashlib.sha256()
    for key, value in sorted(dataset.to_arrays().items()):
        array = np.ascontiguousarray(value)
        digest.update(f"{key}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return "sha256:" + digest.hexdigest()
