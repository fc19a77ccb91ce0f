"""The scale-out benchmark (issue 17): eval, relabel and learning over 100M transitions in
shards on disk, with dask (a script, not a test).

    PYTHONPATH=. python benchmarks/scale.py [--dir /tmp/symreward-scale] [--rows 1e8]
        [--shard-rows 1000000] [--pairs 10000] [--fits 10] [--steps all] [--dtype float32]

The data are ``benchmarks/scale_data.py``'s: Pendulum-shaped float32 transitions in npz shards
of ``--shard-rows`` rows (made once, kept in ``--dir``), with ``--pairs`` preference pairs
of 25-step segments spread over the shards. Every step runs in a new process with its own
``dask.distributed.LocalCluster`` (worker processes of one thread each, on the loopback
address), and prints one JSON line; a thread samples the resident memory of the client and of
every worker every 20 ms, so each step reports its peaks. The steps:

Times leave out the cluster's start; eval also leaves out the workers' first task's fixed
cost (imports, the kernel loaded from the disk cache: ``worker_start_seconds``), reported
apart, as is each command's whole time (``total_seconds``).

- ``kernel``: the in-memory baseline. The first ``--fits`` shards (a size that fits in memory)
  loaded as one dataset, then the artifact's ``rewards`` kernel on them on one thread (numba's
  kernel as ``symreward eval`` runs it, float32 converted inside the call): rows per second
  per core, best of 5.
- ``eval-fit``: ``symreward eval``'s lazy path (``blocks.lazy_rewards`` over the same shards
  read lazily, one task per chunk) on one worker: the same rows, per core; the rewards
  computed into memory, chunk by chunk as ``eval`` takes them (timed, best of 3: like for
  like with the kernel, which writes one array), then again streamed to an .npy
  (``save_rewards``, as the command does: ``save_seconds``; ``peak_gib`` is this, the
  command's, and ``peak_gib_computing_into_memory`` the timed part's, which holds all N
  rewards in the client).
- ``eval-W``: the same over all ``--rows`` transitions on W = 1 and 2 workers (speed-up).
- ``...-threads``: the same on dask's threads scheduler (what ``eval`` uses without
  ``--scheduler``), W threads, in this process.
- ``relabel``: ``relabel_shards`` of all shards into a new folder on 2 workers.
- ``learn``: ``SymbolicRewardLearner`` (preferences, the sparse engine, seed 0) on the lazy
  dataset, on 2 workers; then, in the same process, the same learner on the labelled
  segments alone, gathered without dask (each shard loaded in memory, its labelled rows taken
  and the parts concatenated): the two artifacts' terms must be identical.

At the end, a written estimate of where a 100-node cluster would spend its time on 10 billion
transitions, from the measured per-chunk costs and the sizes of the reductions.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402
import scale_data  # noqa: E402

GiB = 1 << 30


def artifact_text() -> str:
    features = "\n".join(f'{name} = "{text}"' for name, text in scale_data.FEATURES.items())
    return (f'schema = "symreward/1"\nname = "pendulum-true"\n\n[features]\n{features}\n\n'
            f'[[terms]]\nname = "true"\nexpr = "{scale_data.TRUE_REWARD}"\n')


class PeakMemory:
    """The largest resident set of this process and of each of ``pids`` (workers), sampled
    every ``interval`` seconds on a thread until the block ends."""

    def __init__(self, pids: dict[str, int] | None = None, interval: float = 0.02):
        import psutil

        self.processes = {"client": psutil.Process()}
        self.processes |= {f"worker {k}": psutil.Process(pid)
                           for k, pid in enumerate(sorted((pids or {}).values()))}
        self.peaks = dict.fromkeys(self.processes, 0)
        self.interval = interval
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.is_set():
            for name, process in self.processes.items():
                with contextlib.suppress(Exception):
                    self.peaks[name] = max(self.peaks[name], process.memory_info().rss)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def gib(self) -> dict[str, float]:
        return {name: round(value / GiB, 3) for name, value in self.peaks.items()}


@contextlib.contextmanager
def cluster(workers: int):
    """A LocalCluster of ``workers`` one-thread worker processes, its client the default
    scheduler, and the workers' pids."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      host="127.0.0.1", dashboard_address=None,
                      memory_limit=None) as local, Client(local) as client:
        yield client, client.run(os.getpid)


def shard_glob(folder: Path, count: int) -> list[str]:
    return [str(p) for p in sorted(folder.glob("part-*.npz"))[:count]]


def step_kernel(args: argparse.Namespace) -> dict[str, Any]:
    import numba

    from symreward.artifact import RewardArtifact
    from symreward.data import Dataset, load_dataset
    from symreward.evaluate import info_matrix

    artifact = RewardArtifact.loads(artifact_text())
    kernels = artifact.compile()
    numba.set_num_threads(1)
    with PeakMemory() as memory:
        started = time.perf_counter()
        data = Dataset.concatenate([load_dataset(p) for p in shard_glob(args.data, args.fits)])
        loaded = time.perf_counter() - started
        info = info_matrix(data.infos, kernels.info_names, data.n)
        kernels.rewards(data.observations[:10], data.actions[:10],
                        data.next_observations[:10], info[:10])
        best = np.inf
        for _ in range(5):
            started = time.perf_counter()
            rewards = kernels.rewards(data.observations, data.actions, data.next_observations,
                                      info)
            best = min(best, time.perf_counter() - started)
    np.save(args.dir / "kernel-rewards.npy", rewards)
    return {"step": "kernel", "rows": data.n, "load_seconds": round(loaded, 2),
            "seconds": round(best, 3), "rows_per_s_per_core": data.n / best,
            "peak_gib": memory.gib()}


def step_eval(args: argparse.Namespace, workers: int, fits: bool,
              threads: bool = False) -> dict[str, Any]:
    """``eval``'s lazy path: the rewards computed into memory (like for like with the
    in-memory kernel), then computed again and streamed to an .npy as the command does."""
    import dask

    from symreward.artifact import RewardArtifact
    from symreward.blocks import lazy_rewards, save_rewards
    from symreward.data import LazyDataset

    artifact = RewardArtifact.loads(artifact_text())
    source = (str(args.data / "part-*.npz") if not fits else
              _subset_folder(args, args.fits))
    out = args.dir / f"eval-{workers}.npy"
    where = (dask.config.set(scheduler="threads", num_workers=workers) if threads
             else cluster(workers))
    with where as found:
        pids = {} if threads else found[1]
        with PeakMemory(pids) as computing:
            started = time.perf_counter()
            lazy = LazyDataset(source)
            opened = time.perf_counter() - started
            rewards = lazy_rewards(artifact, lazy)
            warm = time.perf_counter()
            if threads:
                _load_kernel(artifact_text(), lazy.obs_dim, lazy.act_dim)
            else:
                found[0].run(_load_kernel, artifact_text(), lazy.obs_dim, lazy.act_dim)
            warm = time.perf_counter() - warm
            seconds = np.inf
            for _ in range(3):
                if not threads:
                    _drained(found[0])
                timed = time.perf_counter()
                blocks = dask.compute(*rewards.to_delayed())
                seconds = min(seconds, time.perf_counter() - timed)
            computed = np.concatenate(blocks) if fits else None
            del blocks
        with PeakMemory(pids) as saving:
            timed = time.perf_counter()
            summary = save_rewards(rewards, out)
            saved = time.perf_counter() - timed
    name = ("eval-fit" if fits else f"eval-{workers}") + ("-threads" if threads else "")
    result = {"step": name, "rows": lazy.n, "chunks": len(lazy.chunks), "workers": workers,
              "scheduler": "threads" if threads else "LocalCluster",
              "open_seconds": round(opened, 2), "worker_start_seconds": round(warm, 2),
              "seconds": round(seconds, 3), "save_seconds": round(saved, 2),
              "rows_per_s_per_core": lazy.n / seconds / workers,
              "mean_reward": summary.mean, "peak_gib": saving.gib(),
              "peak_gib_computing_into_memory": computing.gib()}
    if fits:
        expected = np.load(args.dir / "kernel-rewards.npy")
        result["equal_to_kernel"] = bool(np.array_equal(computed, expected)
                                         and np.array_equal(np.load(out), expected))
    out.unlink()
    return result


def _drained(client: Any, timeout: float = 30.0) -> None:
    """Wait until the workers hold no result: a cluster forgets the results of a computation
    some time after the client has them, and a repeat of the same graph in between would find
    them there instead of computing them."""
    deadline = time.monotonic() + timeout
    while any(client.run(lambda dask_worker: len(dask_worker.data)).values()):
        if time.monotonic() > deadline:
            raise SystemExit("the workers kept results for 30 s")
        time.sleep(0.05)


def _load_kernel(text: str, obs_dim: int, act_dim: int) -> None:
    """On a worker: what its first task does once, timed apart (imports, the artifact read,
    the kernel loaded from the disk cache)."""
    from symreward.blocks import block_rewards

    block_rewards(np.zeros((1, obs_dim), np.float32), np.zeros((1, act_dim), np.float32),
                  np.zeros((1, obs_dim), np.float32), None, text=text)


def _subset_folder(args: argparse.Namespace, count: int) -> str:
    """A folder of links to the first ``count`` shards (a dataset that fits in memory)."""
    folder = args.dir / f"first-{count}"
    if not folder.exists():
        folder.mkdir()
        for path in shard_glob(args.data, count):
            os.symlink(path, folder / Path(path).name)
    return str(folder)


def step_relabel(args: argparse.Namespace, workers: int) -> dict[str, Any]:
    from symreward.artifact import RewardArtifact
    from symreward.data.relabel_shards import relabel_shards

    artifact = RewardArtifact.loads(artifact_text())
    out = args.dir / "relabelled"
    shutil.rmtree(out, ignore_errors=True)
    with cluster(workers) as (_, pids), PeakMemory(pids) as memory:
        started = time.perf_counter()
        result = relabel_shards(artifact, str(args.data), str(out))
        seconds = time.perf_counter() - started
    shutil.rmtree(out, ignore_errors=True)
    return {"step": "relabel", "workers": workers, "rows": result.rows,
            "shards": len(result.shards), "seconds": round(seconds, 2),
            "rows_per_s_per_core": result.rows / seconds / workers, "peak_gib": memory.gib()}


def step_learn(args: argparse.Namespace, workers: int) -> dict[str, Any]:
    from symreward.data import Dataset, LazyDataset, load_dataset
    from symreward.data.subset import labelled_rows, take
    from symreward.learner import SymbolicRewardLearner

    def learner() -> SymbolicRewardLearner:
        return SymbolicRewardLearner(objective="preferences", seed=0)

    with cluster(workers) as (_, pids), PeakMemory(pids) as memory:
        started = time.perf_counter()
        lazy = LazyDataset(str(args.data))
        fitted = learner().fit(lazy, scale_data.FEATURES)
        seconds = time.perf_counter() - started
    alone_started = time.perf_counter()
    parts = []
    for path in shard_glob(args.data, len(lazy.shards)):
        shard = load_dataset(path, lazy=False)
        parts.append(take(shard, labelled_rows(shard)))
    labelled = Dataset.concatenate(parts)
    alone = learner().fit(labelled, scale_data.FEATURES)
    alone_seconds = time.perf_counter() - alone_started

    def terms(artifact: Any) -> list[tuple[str, str]]:
        return [(t.name, t.expr) for t in artifact.terms]

    return {"step": "learn", "workers": workers, "rows": lazy.n,
            "pairs": len(lazy.preferences), "labelled_rows": labelled.n,
            "seconds": round(seconds, 2), "formula": fitted.artifact_.formula_text(),
            "same_as_labelled_alone": terms(fitted.artifact_) == terms(alone.artifact_),
            "labelled_alone_formula": alone.artifact_.formula_text(),
            "labelled_alone_seconds": round(alone_seconds, 2), "peak_gib": memory.gib()}


def run_step(args: argparse.Namespace) -> dict[str, Any]:
    name = args.step
    if name == "kernel":
        return step_kernel(args)
    if name.startswith("eval-fit"):
        return step_eval(args, 1, fits=True, threads=name.endswith("threads"))
    if name.startswith("eval"):
        return step_eval(args, int(name.split("-")[1]), fits=False,
                         threads=name.endswith("threads"))
    if name == "relabel":
        return step_relabel(args, 2)
    if name == "learn":
        return step_learn(args, 2)
    raise SystemExit(f"unknown step {name}")


STEPS = ("kernel", "eval-fit-threads", "eval-fit", "eval-1-threads", "eval-2-threads",
         "eval-1", "eval-2", "relabel", "learn")


def estimate(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> list[str]:
    """Where 100 nodes (2 cores each, as here) would spend their time on 10 billion rows."""
    rows, nodes, cores = 10_000_000_000, 100, 2
    shard_rows = args.shard_rows
    chunks = rows // shard_rows
    lines = [f"Estimate for {rows:.0e} transitions in {chunks} shards of {shard_rows:.0e} rows "
             f"on {nodes} nodes of {cores} cores (from this run's per-chunk costs):"]
    for name in ("eval-2", "relabel"):
        found = results.get(name)
        if not found or not found.get("rows_per_s_per_core"):
            continue
        per_chunk = shard_rows / found["rows_per_s_per_core"]
        wall = chunks * per_chunk / (nodes * cores)
        lines.append(f"- {name}: {per_chunk:.3f} s per chunk per core -> {wall:.0f} s of "
                     f"compute per core; the scheduler's ~1 ms per task adds "
                     f"{chunks * 1e-3:.0f} s in total, ~{chunks * 1e-3 / nodes:.1f} s per node "
                     "if spread, and each chunk reads its shard where it lies (no transfer "
                     "but the rewards back: 8 bytes a row if gathered, none when written "
                     "beside the shard)")
    learn = results.get("learn")
    if learn:
        lines.append(f"- learn from {learn['pairs']} pairs: the gather moves only the labelled "
                     f"rows ({learn['labelled_rows']} here, ~40 bytes each: "
                     f"{learn['labelled_rows'] * 40 / 2**20:.0f} MiB whatever N); each chunk "
                     "task reads and checks its chunk (memory-mapped) and keeps those rows, "
                     "a pass like eval's; then the fit runs on one node on the reduced "
                     "problem, whose size is set by the labels "
                     f"({learn['labelled_alone_seconds']} s here from the labelled rows alone, "
                     f"{learn['seconds']} s in all from the shards)")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/symreward-scale"))
    parser.add_argument("--rows", type=float, default=1e8)
    parser.add_argument("--shard-rows", type=int, default=1_000_000)
    parser.add_argument("--pairs", type=int, default=10_000)
    parser.add_argument("--fits", type=int, default=10,
                        help="shards of the in-memory comparison (default 10)")
    parser.add_argument("--steps", default="all", help="comma-separated: " + ",".join(STEPS))
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                        help="the shards' observations and actions (made once per --dir)")
    parser.add_argument("--step", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.data = args.dir / "data"
    if args.step:
        print(json.dumps(run_step(args)), flush=True)
        return 0
    started = time.perf_counter()
    scale_data.write_shards(args.data, int(args.rows), args.shard_rows, args.pairs, seed=0,
                            say=lambda line: print(line, file=sys.stderr), dtype=args.dtype)
    print(f"data: {int(args.rows)} rows in {args.data} ({time.perf_counter() - started:.0f} s)",
          file=sys.stderr)
    results: dict[str, dict[str, Any]] = {}
    steps = STEPS if args.steps == "all" else tuple(args.steps.split(","))
    for name in steps:
        command = [sys.executable, __file__, "--dir", str(args.dir), "--rows", str(args.rows),
                   "--shard-rows", str(args.shard_rows), "--pairs", str(args.pairs),
                   "--fits", str(args.fits), "--step", name]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"step {name} failed:\n{done.stderr[-3000:]}", file=sys.stderr)
            return 1
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
        print(json.dumps(results[name]), flush=True)
    for fit in ("eval-fit-threads", "eval-fit"):
        if "kernel" in results and fit in results:
            ratio = results[fit]["rows_per_s_per_core"] / results["kernel"][
                "rows_per_s_per_core"]
            print(f"{fit}: eval over the lazy dataset / in-memory kernel, per core: "
                  f"{ratio:.2f}x")
    for suffix in ("-threads", ""):
        one, two = results.get(f"eval-1{suffix}"), results.get(f"eval-2{suffix}")
        if one and two:
            print(f"speed-up from 1 to 2 workers ({one['scheduler']}): "
                  f"{one['seconds'] / two['seconds']:.2f}x")
    peaks = [v for r in results.values() for v in r.get("peak_gib", {}).values()]
    if peaks:
        print(f"largest peak resident memory of any process in any step: {max(peaks):.2f} GiB")
    print("\n".join(estimate(results, args)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
