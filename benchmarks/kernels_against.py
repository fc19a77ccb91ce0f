"""The kernels of an earlier commit against the current ones, in one process (a script, not a
test): throughput of the fused ``rewards`` kernel and latency of ``single`` on the kernel
benchmark's reward, timed in interleaved rounds so both see the same background load, and the
bits of both compared.

    PYTHONPATH=. python benchmarks/kernels_against.py 49758a0 [--rows 10000000] [--repeat 7]

The earlier commit must have the kernels as one module, ``symreward/kernels.py`` (before they
became a package); it is read with ``git show`` and imported under another name, beside the
current package, with its own kernel cache directory.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import symreward.kernels as current
from symreward.kernels import compile_reward

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from kernels import ACT_DIM, OBS_DIM, reward_exprs  # noqa: E402


def earlier_kernels(revision: str, folder: Path):
    source = subprocess.run(["git", "-C", str(ROOT), "show", f"{revision}:symreward/kernels.py"],
                            check=True, capture_output=True, text=True).stdout
    path = folder / "earlier_kernels.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("earlier_kernels", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["earlier_kernels"] = module
    spec.loader.exec_module(module)
    # Its generated modules import their vector-math intrinsics from symreward.kernels.
    current._vector_function = module._vector_function
    return module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("revision")
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--calls", type=int, default=100_000)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="symreward-against-") as folder:
        earlier = earlier_kernels(args.revision, Path(folder))
        features, terms = reward_exprs()
        mine = compile_reward(features, terms, cache_dir=Path(folder) / "now")
        theirs = earlier.compile_reward(features, terms, cache_dir=Path(folder) / "then")
        rng = np.random.default_rng(0)
        n = args.rows
        obs, act, next_obs = (rng.normal(size=(n, OBS_DIM)), rng.normal(size=(n, ACT_DIM)),
                              rng.normal(size=(n, OBS_DIM)))
        same = np.array_equal(mine.rewards(obs, act, next_obs).view(np.uint64),
                              theirs.rewards(obs, act, next_obs).view(np.uint64))
        rows = (np.ascontiguousarray(obs[0]), np.ascontiguousarray(act[0]),
                np.ascontiguousarray(next_obs[0]))
        same_single = mine.single(*rows) == theirs.single(*rows)
        batch: dict[str, list[float]] = {"now": [], "then": []}
        single: dict[str, list[float]] = {"now": [], "then": []}
        for _ in range(args.repeat):
            for name, kernels in (("now", mine), ("then", theirs)):
                start = time.perf_counter()
                kernels.rewards(obs, act, next_obs)
                batch[name].append(time.perf_counter() - start)
                call = kernels.single
                start = time.perf_counter()
                for _ in range(args.calls):
                    call(*rows)
                single[name].append((time.perf_counter() - start) / args.calls)
    print(f"kernels now vs at {args.revision}: {n:,} rows, best of {args.repeat} interleaved "
          f"rounds (median in brackets); load {load_before:.2f} -> {os.getloadavg()[0]:.2f}")
    print(f"same bits: rewards {same}, single {same_single}")
    for name in ("now", "then"):
        print(f"  {name:4}  rewards {n / min(batch[name]) / 1e6:6.1f} M rows/s "
              f"({n / statistics.median(batch[name]) / 1e6:.1f})   single "
              f"{min(single[name]) * 1e6:.3f} µs ({statistics.median(single[name]) * 1e6:.3f})")
    print(f"  now / then: rewards throughput {min(batch['then']) / min(batch['now']):.3f}x, "
          f"single time {min(single['now']) / min(single['then']):.3f}x")


if __name__ == "__main__":
    main()
