"""The scale benchmark's data: Pendulum-shaped transitions in shards on disk, with preferences.

    PYTHONPATH=. python benchmarks/scale_data.py OUT_FOLDER [--rows 100000000]
        [--shard-rows 1000000] [--pairs 10000] [--seed 0] [--dtype float32]

Each shard is a dataset file of its own (``part-00000.npz``, ...): float32 observations
``(cos θ, sin θ, θ̇)``, next observations, a float32 torque, episodes of ``EPISODE`` steps,
float32 true rewards ``-(θ² + 0.1 θ̇² + 0.001 u²)`` and its share of the preference pairs
(25-step segments inside the shard, Bradley–Terry labels from the true rewards). The dynamics
are a damped pendulum under a noisy swing-and-balance torque, vectorised over a shard's
episodes, so a shard of a million rows is made in well under a second; shards are written one
at a time, so making 100M rows needs the memory of one shard. ``--dtype float64`` stores the
observations and actions (the same values, widened) as float64, for a comparison in which
neither the in-memory kernel nor a task converts them.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from symreward.data import Dataset, bradley_terry_preferences, save_dataset

EPISODE = 200
SEGMENT = 25
FEATURES = {"theta": "atan2(obs[1], obs[0])", "theta_dot": "obs[2]", "torque": "act[0]"}
TRUE_REWARD = "-theta**2 - 0.1*theta_dot**2 - 0.001*torque**2"


def true_rewards(theta: np.ndarray, theta_dot: np.ndarray, torque: np.ndarray) -> np.ndarray:
    return -(theta ** 2 + 0.1 * theta_dot ** 2 + 0.001 * torque ** 2)


def shard(rows: int, pairs: int, seed: int, dtype: str = "float32") -> Dataset:
    """One shard of ``rows`` transitions (a whole number of episodes) with ``pairs`` pairs."""
    rng = np.random.default_rng(seed)
    episodes = rows // EPISODE
    theta = rng.uniform(-np.pi, np.pi, episodes)
    speed = rng.uniform(-1.0, 1.0, episodes)
    gain = rng.uniform(0.0, 1.0, episodes)  # how well each episode's controller balances
    thetas = np.empty((episodes, EPISODE + 1))
    speeds = np.empty((episodes, EPISODE + 1))
    torques = np.empty((episodes, EPISODE))
    thetas[:, 0], speeds[:, 0] = theta, speed
    for t in range(EPISODE):
        push = -gain * (4.0 * theta + speed) + (1.0 - gain) * 2.0 * np.sign(speed)
        torque = np.clip(push + rng.normal(0.0, 0.5, episodes), -2.0, 2.0)
        speed = np.clip(speed + 0.05 * (15.0 * np.sin(theta) + 3.0 * torque), -8.0, 8.0)
        theta = (theta + 0.05 * speed + np.pi) % (2 * np.pi) - np.pi
        torques[:, t], thetas[:, t + 1], speeds[:, t + 1] = torque, theta, speed

    def observations(step: slice) -> np.ndarray:
        th, sp = thetas[:, step].reshape(-1), speeds[:, step].reshape(-1)
        return np.column_stack([np.cos(th), np.sin(th), sp]).astype(np.float32)

    obs, next_obs = observations(slice(0, EPISODE)), observations(slice(1, EPISODE + 1))
    act = torques.reshape(-1, 1).astype(np.float32)
    # The reward of the stored (float32) transition, as a user's logged reward would be.
    reward = true_rewards(np.arctan2(obs[:, 1], obs[:, 0]).astype(np.float64),
                          obs[:, 2].astype(np.float64), act[:, 0].astype(np.float64))
    n = episodes * EPISODE
    data = Dataset(observations=obs.astype(dtype), actions=act.astype(dtype),
                   next_observations=next_obs.astype(dtype),
                   terminals=np.zeros(n, bool), timeouts=np.arange(n) % EPISODE == EPISODE - 1,
                   rewards=reward.astype(np.float32))
    if pairs:
        data = data.replace(preferences=bradley_terry_preferences(
            data, reward, pairs, SEGMENT, seed=seed + 1))
    return data


def write_shards(folder: Path, rows: int, shard_rows: int, pairs: int, seed: int,
                 say=print, dtype: str = "float32") -> list[Path]:
    """Write ``rows`` transitions as shards of ``shard_rows`` into ``folder``; the pairs are
    spread evenly over the shards."""
    folder.mkdir(parents=True, exist_ok=True)
    count = -(-rows // shard_rows)
    paths = []
    for k in range(count):
        size = min(shard_rows, rows - k * shard_rows)
        share = pairs // count + (k < pairs % count)
        path = folder / f"part-{k:05d}.npz"
        if not path.exists():
            save_dataset(shard(size, share, seed + 7919 * k, dtype), path)
        paths.append(path)
        if k % 10 == 9 or k == count - 1:
            say(f"  {k + 1}/{count} shards")
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--rows", type=float, default=1e8)
    parser.add_argument("--shard-rows", type=int, default=1_000_000)
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    write_shards(args.out, int(args.rows), args.shard_rows, args.pairs, args.seed,
                 dtype=args.dtype)
    print(f"wrote {int(args.rows)} transitions to {args.out} in "
          f"{time.perf_counter() - started:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
