"""Benchmark of learning from labelled rewards (a script, not a test): in memory, and chunk by
chunk from the moments of the rows.

    PYTHONPATH=. python benchmarks/rewards_moments.py [--rows 500000] [--chunk-rows 100000]
                                                      [--modes memory chunked]

Each mode runs in a new process on the same synthetic data (three features of a random walk in
episodes of 100 steps; the reward a hinge, an indicator and a square plus noise; the default
term library), made in that process before the clock starts. Printed per mode: the seconds of
``fit``, the process's peak resident memory (``ru_maxrss``) above what it held once the data
were made, the chosen formula and its weights. ``memory`` is ``fit(dataset)``; ``chunked`` is
``fit(DatasetChunks.of(dataset, chunk_rows))``, which holds one chunk's candidate columns at a
time (the dataset itself is in memory either way: a lazy dataset would read each chunk from
disk). With the code of a version before the moments (``PYTHONPATH`` of that checkout), only
``memory`` runs.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import time

import numpy as np

FEATURES = {"x": "obs[0]", "y": "obs[1]", "z": "obs[2]"}


def labelled_walk(rows: int, seed: int = 0):
    from symreward.data import Dataset

    rng = np.random.default_rng(seed)
    episode = 100
    steps = rng.normal(scale=0.3, size=(rows, 3))
    starts = np.arange(0, rows, episode)
    steps[starts] = rng.normal(size=(len(starts), 3))
    total = np.cumsum(steps, axis=0)
    before = np.vstack([np.zeros((1, 3)), total[starts[1:] - 1]])
    obs = total - before[np.arange(rows) // episode]
    x, y, z = obs.T
    reward = (2.0 * np.maximum(0.0, x - 0.4) - 1.0 * (y > 0.2) - 0.5 * z**2 + 1.5
              + 0.1 * rng.normal(size=rows))
    return Dataset(observations=obs, actions=np.zeros((rows, 1)), next_observations=obs,
                   terminals=np.zeros(rows, bool),
                   timeouts=np.arange(rows) % episode == episode - 1, rewards=reward)


def run(mode: str, rows: int, chunk_rows: int) -> None:
    from symreward.learner import SymbolicRewardLearner

    data = labelled_walk(rows)
    if mode == "chunked":
        from symreward.data.dataset_chunks import DatasetChunks

        data = DatasetChunks.of(data, chunk_rows)
    held = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    learner = SymbolicRewardLearner("rewards", seed=0).fit(data, FEATURES)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    terms = ", ".join(f"{c:.6g}*{cand.text}" for (cand, _), c in
                      zip(learner.model_.terms(), learner.model_.fit.coef, strict=True))
    print(f"{mode:8s} rows={rows} fit {seconds:7.2f} s, peak memory above the data "
          f"{(peak - held) / 1024:7.1f} MB; {terms} + {learner.model_.fit.intercept:.6g}",
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--chunk-rows", type=int, default=100_000)
    parser.add_argument("--modes", nargs="+", default=["memory", "chunked"],
                        choices=["memory", "chunked"])
    parser.add_argument("--run", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        run(args.run, args.rows, args.chunk_rows)
        return
    for mode in args.modes:
        subprocess.run([sys.executable, __file__, "--run", mode, "--rows", str(args.rows),
                        "--chunk-rows", str(args.chunk_rows)], check=True)


if __name__ == "__main__":
    main()
