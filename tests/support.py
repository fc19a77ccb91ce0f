"""Helpers shared by test modules: small datasets and the real command line. Fixtures built on
them are in ``conftest.py``; modules that need other sizes or seeds import these directly."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np

from symreward.data import (
    Dataset,
    Preferences,
    Rankings,
    bradley_terry_preferences,
    load_dataset,
    rankings_from_rewards,
    save_dataset,
)
from symreward.data.dataset import dataset_digest
from symreward.data.subset import take


def random_walk(n: int = 600, episode: int = 50, seed: int = 0, obs_dim: int = 3) -> Dataset:
    """``n`` transitions of normal observations in episodes of ``episode`` steps (time limits),
    one action, each successor the observation plus 0.1."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, obs_dim))
    done = (np.arange(n) % episode) == episode - 1
    return Dataset(observations=obs, actions=rng.normal(size=(n, 1)),
                   next_observations=obs + 0.1, terminals=np.zeros(n, bool), timeouts=done)


def true_reward(dataset: Dataset) -> np.ndarray:
    """The reward the tests plant: ``-1.5 * obs[0]**2 + 0.8 * obs[1]``."""
    x, y = dataset.observations[:, 0], dataset.observations[:, 1]
    return -1.5 * x**2 + 0.8 * y


def run_cli(*args: object, cwd: str | Path | None = None) -> subprocess.CompletedProcess[str]:
    """The real ``symreward`` command, in a new process, as a user would run it."""
    return subprocess.run([sys.executable, "-m", "symreward", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd)


def nonlinear_system(seed: int = 0, episodes: int = 5, length: int = 40,
                     dtype: type = np.float64) -> Dataset:
    """A few episodes of a noisy, mildly nonlinear 3-D system driven by 2-D actions; the info
    ``h`` is a function of the next state, ``x_velocity`` a finite difference (like MuJoCo)."""
    rng = np.random.default_rng(seed)
    obs, act, nxt = [], [], []
    for _ in range(episodes):
        s = rng.normal(size=3)
        for _ in range(length):
            a = rng.uniform(-1.0, 1.0, size=2)
            s2 = 0.9 * s + 0.2 * np.array([np.sin(s[1]), a[0], a[1] * s[0]])
            s2 = s2 + 0.1 * rng.normal(size=3)
            obs.append(s)
            act.append(a)
            nxt.append(s2)
            s = s2
    obs, act, nxt = (np.asarray(x, dtype=dtype) for x in (obs, act, nxt))
    n = obs.shape[0]
    terminals = np.zeros(n, dtype=bool)
    timeouts = np.zeros(n, dtype=bool)
    timeouts[length - 1::length] = True
    return Dataset(
        observations=obs, actions=act, next_observations=nxt, terminals=terminals,
        timeouts=timeouts,
        infos={"h": np.tanh(nxt[:, 0]), "x_velocity": (nxt[:, 0] - obs[:, 0]) * 10.0},
    )


def labelled(seed: int = 0, episodes: int = 8, length: int = 25,
             dtype: type = np.float32) -> Dataset:
    """Episodes of ``nonlinear_system`` with everything a dataset can carry: rewards, infos,
    expert flags, terminals and time limits, preferences and rankings."""
    base = nonlinear_system(seed=seed, episodes=episodes, length=length, dtype=dtype)
    rng = np.random.default_rng(seed)
    terminal = base.timeouts & (rng.random(base.n) < 0.5)
    base = base.replace(terminals=terminal, timeouts=base.timeouts & ~terminal,
                        rewards=rng.normal(size=base.n), expert=rng.random(base.n) < 0.3)
    segment = max(1, length // 4)
    return base.replace(
        preferences=bradley_terry_preferences(base, None, 4 * episodes, segment, seed=seed),
        rankings=rankings_from_rewards(base, None, 2 * episodes, segment, seed=seed))


def write_shards(dataset: Dataset, folder: Path, cuts: list[int], suffix: str = ".npz",
                 compress: bool = False, unflag: tuple[int, ...] = ()) -> list[Path]:
    """``dataset`` cut at rows ``cuts`` (episode ends) into shards ``part-000`` ...; shards in
    ``unflag`` have their last row's flags cleared (their last row still ends an episode)."""
    folder.mkdir(parents=True, exist_ok=True)
    bounds = [0, *cuts, dataset.n]
    paths = []
    for i, (start, stop) in enumerate(itertools.pairwise(bounds)):
        part = take(dataset, np.arange(start, stop))
        if part.preferences is None:  # every shard has the same keys; none in it: empty ones
            part = part.replace(preferences=Preferences(np.zeros((0, 2)), np.zeros((0, 2)),
                                                        np.zeros(0)))
        if part.rankings is None:
            part = part.replace(rankings=Rankings(np.zeros((0, 2)), np.zeros(0)))
        if i in unflag:
            cleared = np.arange(part.n) == part.n - 1
            part = part.replace(terminals=part.terminals & ~cleared,
                                timeouts=part.timeouts & ~cleared)
        paths.append(folder / f"part-{i:03d}{suffix}")
        save_dataset(part, paths[-1], compress=compress)
    return paths


def concatenation(folder: Path | str) -> Dataset:
    """What the shards stand for: ``Dataset.concatenate`` of each loaded in memory."""
    paths = sorted(p for p in Path(folder).iterdir() if p.suffix in (".npz", ".h5"))
    return Dataset.concatenate([load_dataset(p) for p in paths], source=str(folder))


def assert_same_data(got: Dataset, expected: Dataset, *, same_source: bool = True) -> None:
    """Every array equal, dtype and all (and the digest), and the same source unless told."""
    got_arrays, expected_arrays = got.to_arrays(), expected.to_arrays()
    assert sorted(got_arrays) == sorted(expected_arrays)
    for key, value in expected_arrays.items():
        assert got_arrays[key].dtype == value.dtype, key
        np.testing.assert_array_equal(got_arrays[key], value, err_msg=key)
    if same_source:
        assert got.source == expected.source
    assert dataset_digest(got) == dataset_digest(expected)
