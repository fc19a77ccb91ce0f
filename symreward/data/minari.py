"""Reading Minari datasets by flattening their episodes into the D4RL transition table.

Minari stores each episode with T+1 observations (the reset observation plus one per step) and T
actions, rewards and flags, so transition t is ``(obs[t], act[t]) -> obs[t+1]``; unlike D4RL files
this makes ``next_observations`` exact even at episode ends. Infos recorded by Minari's
``DataCollector`` also have T+1 rows (reset info first), so the info of step t is row t+1.

``minari`` is an optional dependency and is imported only here, only when a Minari dataset is read.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from symreward.data.dataset import Dataset
from symreward.data.spaces import require_supported_spaces
from symreward.errors import DataError

__all__ = ["find_minari_data_dir", "load_minari", "load_minari_id"]

_INSTALL_HINT = "reading Minari datasets needs the minari package: install symreward[minari]"


def import_minari(shown: str) -> Any:
    try:
        import minari
    except ImportError as e:
        raise DataError(f"{shown}: {_INSTALL_HINT}") from e
    return minari


def find_minari_data_dir(path: str | os.PathLike[str]) -> Path | None:
    """The directory holding ``metadata.json``: the dataset root's ``data/`` or ``path`` itself."""
    p = Path(path)
    for candidate in (p / "data", p):
        if (candidate / "metadata.json").is_file():
            return candidate
    return None


def load_minari(path: str | os.PathLike[str], *, source: str | None = None) -> Dataset:
    """Read a Minari dataset from its directory (the root or its ``data/`` subdirectory)."""
    shown = source if source is not None else str(path)
    data_dir = find_minari_data_dir(path)
    if data_dir is None:
        raise DataError(f"{shown}: not a Minari dataset (no metadata.json)")
    minari = import_minari(shown)
    try:
        mds = minari.MinariDataset(str(data_dir))
    except (ValueError, OSError, KeyError, ImportError) as e:
        raise DataError(f"{shown}: cannot open Minari dataset: {e}") from e
    return _flatten(mds, shown)


def load_minari_id(dataset_id: str) -> Dataset:
    """Read a Minari dataset by id from Minari's local storage (``MINARI_DATASETS_PATH``).

    Nothing is downloaded: a missing dataset is an error telling the user how to fetch it.
    """
    minari = import_minari(dataset_id)
    try:
        mds = minari.load_dataset(dataset_id, download=False)
    except FileNotFoundError as e:
        raise DataError(
            f"{dataset_id}: no such file, and no local Minari dataset with that id (download it "
            f"first with `minari download {dataset_id}`)"
        ) from e
    except (ValueError, OSError, KeyError, ImportError) as e:
        raise DataError(f"{dataset_id}: cannot open Minari dataset: {e}") from e
    return _flatten(mds, f"minari:{dataset_id}")


def _flatten(mds: Any, shown: str) -> Dataset:
    obs_space, act_space = mds.observation_space, mds.action_space
    require_supported_spaces(obs_space, act_space, shown)  # minari brings gymnasium along

    obs_parts, next_parts, act_parts = [], [], []
    rew_parts, term_parts, trunc_parts = [], [], []
    info_parts: dict[str, list[np.ndarray]] | None = None
    for episode in _read_episodes(mds, shown):
        t = len(episode.rewards)
        if t == 0:
            continue
        obs = np.asarray(episode.observations)
        obs = obs.reshape(obs.shape[0], -1)
        if obs.shape[0] != t + 1:
            raise DataError(
                f"{shown}: episode {episode.id} has {obs.shape[0]} observations for {t} steps; "
                "Minari episodes have one more observation than steps"
            )
        obs_parts.append(obs[:-1])
        next_parts.append(obs[1:])
        act_parts.append(np.asarray(episode.actions).reshape(t, -1))
        rew_parts.append(np.asarray(episode.rewards, dtype=np.float64).reshape(t))
        term = np.asarray(episode.terminations, dtype=bool).reshape(t)
        trunc = np.asarray(episode.truncations, dtype=bool).copy().reshape(t)
        if not (term[-1] or trunc[-1]):
            # An episode that stops without a flag was cut short by the collector.
            trunc[-1] = True
        term_parts.append(term)
        trunc_parts.append(trunc)
        steps = _scalar_infos(episode.infos, t)
        if info_parts is None:
            info_parts = {k: [v] for k, v in steps.items()}
        else:
            # Keep only infos every episode has, so the columns stay aligned with the rows.
            info_parts = {k: [*v, steps[k]] for k, v in info_parts.items() if k in steps}

    if not obs_parts:
        raise DataError(f"{shown}: the Minari dataset has no steps")
    infos = {k: np.concatenate(v) for k, v in (info_parts or {}).items()}
    return Dataset(
        observations=np.concatenate(obs_parts),
        actions=np.concatenate(act_parts),
        next_observations=np.concatenate(next_parts),
        terminals=np.concatenate(term_parts),
        timeouts=np.concatenate(trunc_parts),
        rewards=np.concatenate(rew_parts),
        infos=infos,
        source=shown,
    )


def _read_episodes(mds: Any, shown: str) -> Iterator[Any]:
    """Minari's episodes in order; ``DataError`` naming the dataset where one cannot be read (a
    data file edited or damaged after Minari wrote it)."""
    episodes = iter(mds.iterate_episodes())
    while True:
        try:
            episode = next(episodes)
        except StopIteration:
            return
        except (KeyError, ValueError, TypeError, OSError) as e:
            raise DataError(f"{shown}: cannot read the Minari dataset's episodes: {e}") from e
        yield episode


def _scalar_infos(infos: Any, t: int) -> dict[str, np.ndarray]:
    """Per-step numeric scalar infos of one episode, aligned to its T transitions."""
    out: dict[str, np.ndarray] = {}
    if not isinstance(infos, dict):
        return out
    for name, value in infos.items():
        if isinstance(value, dict) or not isinstance(name, str) or "/" in name:
            continue
        arr = np.asarray(value)
        if arr.dtype.kind not in "biuf" or arr.ndim != 1:
            continue
        if arr.shape[0] == t + 1:
            out[name] = arr[1:].astype(np.float64)
        elif arr.shape[0] == t:
            out[name] = arr.astype(np.float64)
    return out
