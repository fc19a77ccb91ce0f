"""Peak memory of ``symreward learn`` from preferences (or rankings) against the dataset's size
(a script, not a test).

    PYTHONPATH=. python benchmarks/learn_memory.py [--sizes 100000,1000000,4000000]
                                                   [--pairs 1000] [--segment 25]
                                                   [--objective preferences] [--dir /tmp]

For each size, a seeded synthetic Pendulum-like dataset (float32, as Pendulum-v1's spaces:
``obs = [cos θ, sin θ, θ̇]``, one torque, the environment's dynamics and reward, episodes of 200
steps, a third of them under a noisy PD controller and the rest under random torques) is
written as an uncompressed npz, with ``--pairs`` Bradley–Terry preference pairs of
``--segment``-step windows labelled from the true reward (``--objective rankings``:
``2 * pairs`` ranked windows instead, the same labelled transitions). Then, each in a new
process:

- ``load``: ``symreward.data.load_dataset`` of the file alone (reading and validating it);
- ``learn``: ``symreward learn DATA --features F.toml --objective ...`` end to end with three
  features (θ, θ̇, torque) and the default sparse engine.

Printed per size: the arrays' size in memory, each command's peak resident memory
(``ru_maxrss``) and seconds, and ``learn - load``: what learning adds above holding the loaded
dataset (issue 17's figure: under 1 GiB at 4M transitions, set by the labelled transitions, not
by N). Kernels compile into a throw-away ``SYMREWARD_CACHE_DIR`` warmed on the smallest size
first, so no figure includes compilation.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from relabel import measured  # benchmarks/: the same measure of a command in a new process

EPISODE = 200
FEATURES = """\
[features]
theta = "atan2(obs[1], obs[0])"
theta_dot = "obs[2]"
torque = "act[0]"
"""
LOAD = "import sys; from symreward.data import load_dataset; load_dataset(sys.argv[1])"


def build(path: Path, rows: int, pairs: int, segment: int, objective: str) -> None:
    """The seeded Pendulum-like dataset of ``rows`` transitions (module doc), written to
    ``path``."""
    from symreward.data import Dataset, bradley_terry_preferences, rankings_from_rewards

    rng = np.random.default_rng(0)
    episodes = -(-rows // EPISODE)
    theta = rng.uniform(-np.pi, np.pi, episodes)
    speed = rng.uniform(-1.0, 1.0, episodes)
    controlled = np.arange(episodes) % 3 == 0
    obs = np.empty((EPISODE, episodes, 3), dtype=np.float32)
    next_obs = np.empty_like(obs)
    torque = np.empty((EPISODE, episodes, 1), dtype=np.float32)
    reward = np.empty((EPISODE, episodes))
    for step in range(EPISODE):
        obs[step] = np.column_stack([np.cos(theta), np.sin(theta), speed])
        wrapped = (theta + np.pi) % (2 * np.pi) - np.pi
        pd = -4.0 * wrapped - speed + rng.normal(0.0, 0.3, episodes)
        u = np.clip(np.where(controlled, pd, rng.uniform(-2.0, 2.0, episodes)), -2.0, 2.0)
        torque[step, :, 0] = u
        reward[step] = -(wrapped**2 + 0.1 * speed**2 + 0.001 * u**2)
        # Pendulum-v1: g = 10, m = l = 1, dt = 0.05, |θ̇| <= 8
        speed = np.clip(speed + (15.0 * np.sin(theta) + 3.0 * u) * 0.05, -8.0, 8.0)
        theta = theta + speed * 0.05
        next_obs[step] = np.column_stack([np.cos(theta), np.sin(theta), speed])

    def rows_of(array: np.ndarray) -> np.ndarray:  # (step, episode, ...) -> episode-major rows
        return np.ascontiguousarray(np.swapaxes(array, 0, 1)).reshape(-1, *array.shape[2:])[:rows]

    ends = np.arange(rows) % EPISODE == EPISODE - 1
    ends[-1] = True
    data = Dataset(observations=rows_of(obs), actions=rows_of(torque),
                   next_observations=rows_of(next_obs), terminals=np.zeros(rows, dtype=bool),
                   timeouts=ends, source="pendulum-like")
    rewards = rows_of(reward)
    if objective == "preferences":
        data = data.replace(preferences=bradley_terry_preferences(data, rewards, pairs, segment,
                                                                  seed=1))
    else:
        data = data.replace(rankings=rankings_from_rewards(data, rewards, 2 * pairs, segment,
                                                           seed=1))
    np.savez(path, **data.to_arrays())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000,4000000",
                        help="comma-separated numbers of transitions")
    parser.add_argument("--pairs", type=int, default=1000)
    parser.add_argument("--segment", type=int, default=25)
    parser.add_argument("--objective", choices=["preferences", "rankings"],
                        default="preferences")
    parser.add_argument("--dir", default=None, help="where the temporary files go")
    parser.add_argument("--build", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build is not None:  # the child that writes one dataset to --dir
        build(Path(args.dir), args.build, args.pairs, args.segment, args.objective)
        return
    sizes = sorted(int(size) for size in args.sizes.split(","))
    with tempfile.TemporaryDirectory(prefix="symreward-learn-memory-", dir=args.dir) as folder:
        root = Path(folder)
        features = root / "features.toml"
        features.write_text(FEATURES)
        env = os.environ | {"SYMREWARD_CACHE_DIR": str(root / "cache")}
        print(f"symreward learn --objective {args.objective}: {args.pairs} pairs of "
              f"{args.segment}-step segments, 3 features, sparse engine")
        print(f"{'transitions':>12}{'arrays GiB':>12}{'load GiB':>10}{'load s':>8}"
              f"{'learn GiB':>11}{'learn s':>9}{'learn - load':>14}")
        for k, size in enumerate(sizes):
            data = root / f"data-{size}.npz"
            # built in a new process, so this one stays small: a child started by fork counts
            # its parent's resident pages in its own peak until it runs its command
            subprocess.run([sys.executable, __file__, "--build", str(size), "--dir", str(data),
                            "--pairs", str(args.pairs), "--segment", str(args.segment),
                            "--objective", args.objective], check=True, env=env)
            learn = [sys.executable, "-m", "symreward", "learn", str(data), "--features",
                     str(features), "--objective", args.objective, "-o",
                     str(root / "reward.toml")]
            if k == 0:  # compile the kernels once, outside every figure
                subprocess.run(learn, check=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env=env)
            with np.load(data) as archive:
                arrays = sum(archive[key].nbytes for key in archive.files) / (1 << 30)
            load_seconds, load_peak = measured([sys.executable, "-c", LOAD, str(data)], env,
                                               quiet=True)
            learn_seconds, learn_peak = measured(learn, env, quiet=True)
            print(f"{size:>12}{arrays:>12.3f}{load_peak:>10.2f}{load_seconds:>8.1f}"
                  f"{learn_peak:>11.2f}{learn_seconds:>9.1f}{learn_peak - load_peak:>14.2f}",
                  flush=True)
            data.unlink()
        print("reproduce: PYTHONPATH=. python benchmarks/learn_memory.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
