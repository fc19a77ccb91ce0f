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
