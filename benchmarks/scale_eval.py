"""Throughput of an artifact's rewards over dask arrays against the in-memory kernel, per core
(a script, not a test).

    PYTHONPATH=. python benchmarks/scale_eval.py [--rows 2000000] [--chunk-rows 250000]
                                                 [--cores 1 2] [--repeat 3]

Builds MuJoCo-shaped transitions in memory (HalfCheetah's sizes: 17 observation and 6 action
columns, float32 as D4RL stores them, and an info column), then times, alternating rounds,
for each number of cores:

- ``in memory``: the ``rewards`` kernel on the whole table, as ``symreward relabel`` and
  ``batch_reward`` run it (numba's parallel kernel on that many threads; float32 converted to
  float64 inside the call);
- ``dask``: ``symreward.blocks.dask_rewards`` over the same arrays as dask arrays of
  ``--chunk-rows`` rows, computed on dask's threads scheduler with that many workers (each
  task the serial kernel), the rewards gathered into one array.

Throughput per core is rows / second / cores; the ratio dask / in memory is the issue's figure
(at least 0.8). Both read arrays already in memory, so the ratio is the cost of the blocks and
the scheduler, not of reading; ``eval_throughput`` takes any dask arrays (a lazy dataset's
read from shards, in ``benchmarks/scale.py``) to measure that as well. The best of
``--repeat`` rounds is kept (the machine may be shared).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from relabel import ACT_DIM, OBS_DIM
from relabel import ARTIFACT as RELABEL_ARTIFACT

# relabel.py's HalfCheetah-shaped reward (benchmarks/ is on the path of a script run from it),
# with vector math added (sin, exp): the calls where the serial kernel differs most from the
# parallel one.
ARTIFACT = RELABEL_ARTIFACT.replace(
    'expr = "-0.05 * abs(pitch) + 0.5 * (height > -0.2)"',
    'expr = "-0.05 * abs(pitch) + 0.5 * (height > -0.2) + 0.01 * sin(height) * exp(-pitch**2)"')


def transitions(rows: int, seed: int = 0) -> dict[str, Any]:
    """HalfCheetah-shaped float32 inputs and a float64 info column."""
    rng = np.random.default_rng(seed)
    obs = rng.standard_normal((rows, OBS_DIM), dtype=np.float32)
    return {"observations": obs, "actions": rng.standard_normal((rows, ACT_DIM), dtype=np.float32),
            "next_observations": obs + rng.standard_normal((rows, OBS_DIM), dtype=np.float32),
            "infos": {"x_velocity": rng.standard_normal(rows)}}


def eval_throughput(artifact: Any, arrays: Mapping[str, Any], lazy: Mapping[str, Any],
                    cores: int, repeat: int = 3) -> dict[str, float]:
    """Rows per second per core of the in-memory ``rewards`` kernel on ``arrays`` (numpy) and
    of ``dask_rewards`` on ``lazy`` (dask arrays of the same rows) on ``cores`` threads, the
    best of ``repeat`` alternating rounds; checks that both give the same rewards."""
    import dask
    import numba

    from symreward.blocks import dask_rewards
    from symreward.evaluate import info_matrix

    kernels = artifact.compile()
    rows = len(arrays["observations"])
    info = info_matrix(arrays["infos"], kernels.info_names, rows)
    rewards = dask_rewards(artifact, lazy["observations"], lazy["actions"],
                           lazy["next_observations"], lazy["infos"])
    numba.set_num_threads(cores)
    expected = kernels.rewards(arrays["observations"], arrays["actions"],
                               arrays["next_observations"], info)  # compiled before timing
    best = {"in memory": np.inf, "dask": np.inf}
    with dask.config.set(scheduler="threads", num_workers=cores):
        for _ in range(repeat):
            start = time.perf_counter()
            kernels.rewards(arrays["observations"], arrays["actions"],
                            arrays["next_observations"], info)
            best["in memory"] = min(best["in memory"], time.perf_counter() - start)
            start = time.perf_counter()
            got = rewards.compute()
            best["dask"] = min(best["dask"], time.perf_counter() - start)
    if not np.array_equal(got, expected):
        raise AssertionError("dask_rewards differs from the in-memory kernel")
    per_core = {name: rows / seconds / cores for name, seconds in best.items()}
    return {"rows": rows, "cores": cores, "seconds in memory": best["in memory"],
            "seconds dask": best["dask"], "rows/s/core in memory": per_core["in memory"],
            "rows/s/core dask": per_core["dask"],
            "ratio": per_core["dask"] / per_core["in memory"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--chunk-rows", type=int, default=250_000)
    parser.add_argument("--cores", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import dask.array as da

    from symreward.artifact import RewardArtifact

    artifact = RewardArtifact.loads(ARTIFACT, source="cheetah-like.toml")
    arrays = transitions(args.rows)

    def chunked(array: np.ndarray) -> Any:
        return da.from_array(array, chunks=(args.chunk_rows, *array.shape[1:]))

    lazy = {key: chunked(value) for key, value in arrays.items() if key != "infos"}
    lazy["infos"] = {name: chunked(value) for name, value in arrays["infos"].items()}
    print(f"{args.rows} rows, chunks of {args.chunk_rows}, float32 ({OBS_DIM} + {ACT_DIM} "
          "columns) and one float64 info")
    for cores in args.cores:
        result = eval_throughput(artifact, arrays, lazy, cores, args.repeat)
        print(f"  {cores} core{'s' * (cores > 1)}: in memory "
              f"{result['rows/s/core in memory'] / 1e6:6.1f} M rows/s/core "
              f"({result['seconds in memory']:.3f} s), dask "
              f"{result['rows/s/core dask'] / 1e6:6.1f} M rows/s/core "
              f"({result['seconds dask']:.3f} s): ratio {result['ratio']:.2f}")


if __name__ == "__main__":
    main()
