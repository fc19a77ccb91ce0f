"""A Minari dataset read a chunk at a time: its HDF5 data file as the members of the flat
transition table (``FileHeader`` of kind ``"minari"``), and the rows of a chunk read from the
episodes that hold them.

The table is, value for value, the one ``symreward.data.minari`` flattens in memory: episode
after episode (in the order of their ids), step t of an episode is ``observations[t]`` to
``observations[t + 1]``, an episode whose last step has no flag ends in a truncation, and the
infos are the numeric scalar ones every episode records, one per step (the reset's row
dropped). Opening reads Minari's metadata (the spaces are checked as in memory) and every
episode's shapes, never its values; a chunk task opens the file and reads its rows only. Only
Minari's HDF5 data format is read this way (``DataError`` for another).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from symreward.data.headers import FileHeader, Member
from symreward.data.io import MINARI_PREFIX, import_h5py
from symreward.data.minari import find_minari_data_dir, import_minari
from symreward.data.spaces import require_supported_spaces
from symreward.errors import DataError

__all__ = ["MinariEpisode", "minari_data_file", "minari_table_bytes", "read_minari_header",
           "read_minari_members"]

_DATA_FILE = "main_data.hdf5"


@dataclass(frozen=True)
class MinariEpisode:
    """One episode of the data file: its group, its first row in the table, its steps, and for
    each info kept how many rows its array has before the first step's (1: the reset's)."""

    group: str
    first: int
    steps: int
    info_offsets: tuple[tuple[str, int], ...]


def minari_data_file(source: str) -> Path:
    """The HDF5 data file of the Minari dataset ``source``: a dataset directory (or its
    ``data/``), its ``data/main_data.hdf5``, or an id (``minari:ID``) in local storage."""
    path = Path(source)
    if path.is_file():
        return path
    if path.is_dir():
        data_dir = find_minari_data_dir(path)
        if data_dir is None:
            raise DataError(f"{source}: is a directory but not a Minari dataset (no "
                            "metadata.json in it or in its data/ subdirectory)")
        return data_dir / _DATA_FILE
    dataset_id = source.removeprefix(MINARI_PREFIX)
    minari = import_minari(source)
    data_dir = Path(minari.storage.get_dataset_path(dataset_id)) / "data"
    if not (data_dir / "metadata.json").is_file():
        raise DataError(f"{source}: no local Minari dataset with that id (download it first "
                        f"with `minari download {dataset_id}`)")
    return data_dir / _DATA_FILE


def minari_table_bytes(source: str) -> int | None:
    """About how many bytes the Minari dataset ``source``'s table would take in memory, from its
    metadata alone (steps, and the Box or Discrete spaces' shapes and dtypes; the infos, which
    the metadata does not describe, left out); None where that cannot be told (another data
    format, an unreadable or unusual metadata file, a dataset not found: the in-memory reader
    then says what is wrong)."""
    try:
        metadata = _metadata(minari_data_file(source).parent, source)
        if _data_format(metadata) != "hdf5":
            return None
        steps = int(metadata["total_steps"])
        observation, action = (_space_row_bytes(json.loads(metadata[key]))
                               for key in ("observation_space", "action_space"))
    except (DataError, OSError, ValueError, KeyError, TypeError):
        return None
    # observations and next observations, actions, float64 rewards, two flags
    return steps * (2 * observation + action + 8 + 2)


def _space_row_bytes(space: dict[str, Any]) -> int:
    if space["type"] == "Discrete":
        return 8
    if space["type"] != "Box":
        raise ValueError(f"a {space['type']} space")
    return int(np.prod(space["shape"], dtype=np.int64)) * np.dtype(space["dtype"]).itemsize


def read_minari_header(source: str) -> FileHeader:
    """The header of the Minari dataset ``source`` (``minari_data_file``) as a flat table;
    ``DataError`` naming ``source`` when it cannot be read lazily."""
    path = minari_data_file(source)
    metadata = _metadata(path.parent, source)
    if not path.is_file():
        raise DataError(f"{source}: the Minari dataset has no data file {path.name} beside its "
                        "metadata.json")
    if _data_format(metadata) != "hdf5":
        raise DataError(f"{source}: a Minari dataset stored as {_data_format(metadata)!r} "
                        "cannot be read lazily (only Minari's hdf5 format can); read it in "
                        "memory (lazy=False)")
    minari = import_minari(source)
    try:
        spaces = minari.MinariDataset(str(path.parent))
    except (ValueError, OSError, KeyError, ImportError) as e:
        raise DataError(f"{source}: cannot open Minari dataset: {e}") from e
    require_supported_spaces(spaces.observation_space, spaces.action_space, source)
    h5py = import_h5py(str(path))
    try:
        with h5py.File(path, "r") as f:
            episodes, kinds = _episodes(h5py, f, source)
    except OSError as e:
        raise DataError(f"{path}: unreadable HDF5 file: {e}") from e
    n = sum(episode.steps for episode in episodes)
    if n == 0:
        raise DataError(f"{source}: the Minari dataset has no steps")
    members = {key: Member((n, *tail), dtype, True) for key, (tail, dtype) in kinds.items()}
    return FileHeader(str(path), "minari", members, episodes=tuple(episodes))


def read_minari_members(header: FileHeader, keys: Iterable[str], rows: slice | None = None
                        ) -> dict[str, np.ndarray]:
    """The table's arrays of ``keys``, all rows or ``rows`` (a ``start:stop`` range), read
    from the episodes that hold them."""
    keys = list(keys)
    total = header.members["observations"].shape[0]
    start, stop = (0, total) if rows is None else (rows.start, rows.stop)
    parts: dict[str, list[np.ndarray]] = {key: [] for key in keys}
    h5py = import_h5py(header.path)
    try:
        with h5py.File(header.path, "r") as f:
            for episode in header.episodes:
                first, last = max(start, episode.first), min(stop, episode.first + episode.steps)
                if first >= last:
                    continue
                group = f.get(episode.group)
                try:
                    if not isinstance(group, h5py.Group) or _steps(group) != episode.steps:
                        raise KeyError(episode.group)
                    for key in keys:
                        parts[key].append(_episode_rows(group, episode, key,
                                                        first - episode.first,
                                                        last - episode.first))
                except (KeyError, TypeError, ValueError) as e:
                    raise DataError(f"{header.path}: episode {episode.group!r} has changed "
                                    "since the dataset was opened: reopen the dataset") from e
    except OSError as e:
        raise DataError(f"{header.path}: unreadable HDF5 file: {e}") from e
    return {key: (np.concatenate(found) if found else
                  np.empty((0, *header.members[key].shape[1:]), header.members[key].dtype))
            for key, found in parts.items()}


def _metadata(data_dir: Path, source: str) -> dict[str, Any]:
    try:
        return json.loads((data_dir / "metadata.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(f"{source}: cannot read Minari's metadata.json: {e}") from e


def _data_format(metadata: dict[str, Any]) -> str:
    return str(metadata.get("data_format", "hdf5"))


# The datasets every episode group holds (infos are optional).
_EPISODE_KEYS = ("observations", "actions", "rewards", "terminations", "truncations")


def _steps(group: Any) -> int:
    return int(group["rewards"].shape[0])


def _episodes(h5py: Any, f: Any, source: str
              ) -> tuple[list[MinariEpisode], dict[str, tuple[tuple[int, ...], np.dtype]]]:
    """Every episode with a step, in the order of their ids, and each member's row shape and
    dtype; the checks ``symreward.data.minari`` makes in memory."""
    groups = sorted((name for name in f if name.startswith("episode_")
                     and name.removeprefix("episode_").isdigit()),
                    key=lambda name: int(name.removeprefix("episode_")))
    first = 0
    kinds: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    infos: dict[str, int] | None = None
    found = []
    for name in groups:
        group = f[name]
        missing = [key for key in _EPISODE_KEYS if not isinstance(group, h5py.Group)
                   or not isinstance(group.get(key), h5py.Dataset)]
        if missing:
            raise DataError(f"{source}: episode {name.removeprefix('episode_')} has no "
                            f"{missing[0]!r} array (a Minari episode holds "
                            f"{', '.join(_EPISODE_KEYS)})")
        steps = _steps(group)
        if steps <= 0:
            continue
        observations, actions = group["observations"], group["actions"]
        if observations.shape[0] != steps + 1:
            raise DataError(f"{source}: episode {name.removeprefix('episode_')} has "
                            f"{observations.shape[0]} observations for {steps} steps; Minari "
                            "episodes have one more observation than steps")
        for key, dataset in (("observations", observations), ("next_observations", observations),
                             ("actions", actions)):
            tail = (int(np.prod(dataset.shape[1:], dtype=np.int64)),)
            if key in kinds and kinds[key][0] != tail:
                raise DataError(f"{source}: episode {name} has {key} of {tail[0]} columns, "
                                f"the episodes before it {kinds[key][0][0]}")
            dtype = dataset.dtype if key not in kinds else np.result_type(kinds[key][1],
                                                                          dataset.dtype)
            kinds[key] = (tail, dtype)
        offsets = _info_offsets(h5py, group.get("infos"), steps)
        infos = offsets if infos is None else {k: v for k, v in infos.items() if k in offsets}
        found.append((name, first, steps, offsets))
        first += steps
    for key, dtype in (("rewards", np.float64), ("terminals", np.bool_), ("timeouts", np.bool_)):
        kinds[key] = ((), np.dtype(dtype))
    for key in infos or {}:
        kinds[f"infos/{key}"] = ((), np.dtype(np.float64))
    kept = list(infos or {})
    return [MinariEpisode(name, start, steps, tuple((key, offsets[key]) for key in kept))
            for name, start, steps, offsets in found], kinds


def _info_offsets(h5py: Any, infos: Any, steps: int) -> dict[str, int]:
    """The numeric scalar infos of one episode and how many rows precede its first step's: 1
    for an array of steps + 1 rows (the reset info first), 0 for one of steps rows."""
    if not isinstance(infos, h5py.Group):
        return {}
    out = {}
    for name, dataset in infos.items():
        if (not isinstance(dataset, h5py.Dataset) or dataset.ndim != 1
                or dataset.dtype.kind not in "biuf"):
            continue
        if dataset.shape[0] == steps + 1:
            out[name] = 1
        elif dataset.shape[0] == steps:
            out[name] = 0
    return out


def _episode_rows(group: Any, episode: MinariEpisode, key: str, first: int, last: int
                  ) -> np.ndarray:
    """Rows ``first:last`` of one episode's steps as the table's member ``key``."""
    count = last - first
    if key in ("observations", "next_observations"):
        shift = key == "next_observations"
        return np.asarray(group["observations"][first + shift:last + shift]).reshape(count, -1)
    if key == "actions":
        return np.asarray(group["actions"][first:last]).reshape(count, -1)
    if key == "rewards":
        return np.asarray(group["rewards"][first:last], dtype=np.float64).reshape(count)
    if key == "terminals":
        return np.asarray(group["terminations"][first:last], dtype=bool).reshape(count)
    if key == "timeouts":
        truncations = np.asarray(group["truncations"][first:last], dtype=bool).reshape(count)
        if last == episode.steps and not (truncations[-1] or group["terminations"][last - 1]):
            truncations = truncations.copy()
            truncations[-1] = True  # cut short by the collector, as symreward.data.minari says
        return truncations
    offset = dict(episode.info_offsets)[key.removeprefix("infos/")]
    return np.asarray(group["infos"][key.removeprefix("infos/")][first + offset:last + offset],
                      dtype=np.float64)
