"""Helpers shared by test modules: small datasets and the real command line. Fixtures built on
them are in ``conftest.py``; modules that need other sizes or seeds import these directly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

from symreward.data import Dataset


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
