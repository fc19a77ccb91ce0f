"""Benchmark of ``symreward relabel`` on a large npz (a script, not a test).

    PYTHONPATH=. python benchmarks/relabel.py [--rows 10000000] [--dtype float32] [--compress]
                                              [--repeat 3] [--dir /tmp]

Builds a MuJoCo-shaped dataset (HalfCheetah's sizes: 17 observation and 6 action columns; float32
as D4RL and Minari store MuJoCo data, or float64) with ``numpy.savez`` (``--compress``:
``savez_compressed``) in a temporary folder, then times, side by side in the same run, each in a
new process:

- ``read + write``: what a user would compare with: ``numpy.load`` every key and write them all
  again with the same numpy function, then ``fsync`` (``relabel`` writes atomically, so it
  syncs its output to disk too; the same without ``fsync`` is printed as well);
- ``copy``: the file copied with ``shutil.copyfile`` (the floor of any rewrite);
- ``symreward relabel``: the command end to end (Python start, imports, the kernel loaded from a
  warm cache, reading, checks, rewards, writing, ``fsync``); and on a small file of the same
  shape (2 * PARALLEL_ROWS rows, so the same parallel kernel): what a run costs whatever its
  size.

The reward reads observations, next observations, actions and an info column, so the kernel
reads every big array. Before each command, everything written earlier is synced to disk
(``os.sync``, not timed), so no command pays for another's writeback. Each command's peak
resident memory (``ru_maxrss`` of the process) is printed beside the size of the arrays it
must read. Rounds alternate the commands, so all see the same background load; the best of
each is compared (the machine may be shared).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from symreward.kernels.runtime import PARALLEL_ROWS

OBS_DIM, ACT_DIM = 17, 6

ARTIFACT = """\
schema = "symreward/1"
name = "cheetah-like"

[features]
forward = "info.x_velocity"
control = "act[0]**2 + act[1]**2 + act[2]**2 + act[3]**2 + act[4]**2 + act[5]**2"
pitch = "next_obs[1] - obs[1]"
height = "obs[0]"

[[terms]]
name = "forward"
expr = "1.0 * forward"

[[terms]]
name = "control"
expr = "-0.1 * control"

[[terms]]
name = "steady"
expr = "-0.05 * abs(pitch) + 0.5 * (height > -0.2)"
"""

# numpy.load every key, numpy.savez(_compressed) them again, fsync or not: argv[1:] =
# source, output, save function, "sync" or "nosync".
READ_WRITE = """\
import os, sys
import numpy as np
source, output, save, sync = sys.argv[1:]
with np.load(source, allow_pickle=False) as archive:
    arrays = {key: archive[key] for key in archive.files}
with open(output, "wb") as fh:
    getattr(np, save)(fh, **arrays)
    fh.flush()
    if sync == "sync":
        os.fsync(fh.fileno())
"""


def build(path: Path, rows: int, dtype: np.dtype, compress: bool) -> None:
    """A seeded random dataset in episodes of 1000 steps, written block by block."""
    rng = np.random.default_rng(0)
    obs = np.empty((rows, OBS_DIM), dtype=dtype)
    for start in range(0, rows, 1 << 20):
        stop = min(rows, start + (1 << 20))
        obs[start:stop] = rng.standard_normal((stop - start, OBS_DIM), dtype=np.float32)
    next_obs = np.empty_like(obs)
    next_obs[:-1] = obs[1:]
    next_obs[-1] = obs[-1]
    actions = rng.uniform(-1, 1, size=(rows, ACT_DIM)).astype(dtype)
    arrays = {
        "observations": obs, "actions": actions, "next_observations": next_obs,
        "rewards": rng.standard_normal(rows, dtype=np.float32),
        "terminals": np.zeros(rows, dtype=bool),
        "timeouts": np.arange(rows) % 1000 == 999,
        "infos/x_velocity": rng.standard_normal(rows, dtype=np.float32),
    }
    (np.savez_compressed if compress else np.savez)(path, **arrays)


def measured(command: list[str], env: dict[str, str] | None = None,
             quiet: bool = False) -> tuple[float, float]:
    """Seconds and peak resident memory (GiB) of a command run in a new process (``quiet``:
    its errors not shown either)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL if quiet else None, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"failed ({status}): {' '.join(command)}")
    return seconds, usage.ru_maxrss / (1 << 20)  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--compress", action="store_true",
                        help="a deflated npz (savez_compressed) instead of a stored one")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where the temporary files go")
    parser.add_argument("--build", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build:  # the child that writes a dataset to --dir
        build(Path(args.dir), args.rows, np.dtype(args.dtype), args.compress)
        return
    dtype = np.dtype(args.dtype)
    save = "savez_compressed" if args.compress else "savez"
    with tempfile.TemporaryDirectory(prefix="symreward-relabel-", dir=args.dir) as folder:
        root = Path(folder)
        source, artifact = root / "data.npz", root / "reward.toml"
        artifact.write_text(ARTIFACT)
        started = time.perf_counter()
        # built in a new process, so this one stays small: a child started by fork or vfork
        # counts its parent's resident pages in its own peak until it runs its command
        built = [sys.executable, __file__, "--build", "--dtype", args.dtype,
                 *(["--compress"] if args.compress else [])]
        subprocess.run([*built, "--rows", str(args.rows), "--dir", str(source)], check=True)
        size = source.stat().st_size / (1 << 30)
        held = args.rows * ((2 * OBS_DIM + ACT_DIM) * dtype.itemsize + 4 + 1 + 1) / (1 << 30)
        print(f"{args.rows} transitions, {args.dtype}, {save}: {size:.2f} GiB file, "
              f"{held:.2f} GiB of arrays relabel reads (built in "
              f"{time.perf_counter() - started:.0f} s)")
        relabel = [sys.executable, "-m", "symreward", "relabel", str(artifact), str(source),
                   "-o", str(root / "relabelled.npz")]
        # warm the kernel cache (a user's first relabel of a new reward also compiles, once)
        small = root / "small.npz"
        subprocess.run([*built, "--rows", str(2 * PARALLEL_ROWS), "--dir", str(small)],
                       check=True)
        subprocess.run([*relabel[:5], str(small), "-o", str(root / "small-out.npz")],
                       check=True, stdout=subprocess.DEVNULL)
        commands = {
            # what every run pays whatever the size: Python, imports, the kernel from the cache
            f"relabel {2 * PARALLEL_ROWS} rows": [*relabel[:5], str(small), "-o",
                                                  str(root / "small-out.npz")],
            "read + write + fsync": [sys.executable, "-c", READ_WRITE, str(source),
                                     str(root / "rewritten.npz"), save, "sync"],
            "read + write": [sys.executable, "-c", READ_WRITE, str(source),
                             str(root / "rewritten.npz"), save, "nosync"],
            "copy": [sys.executable, "-c", "import shutil, sys; shutil.copyfile(*sys.argv[1:])",
                     str(source), str(root / "copied.npz")],
            "symreward relabel": relabel,
        }
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        for _ in range(args.repeat):
            for name, command in commands.items():
                results[name].append(measured(command))
                for leftover in ("rewritten.npz", "copied.npz", "relabelled.npz"):
                    (root / leftover).unlink(missing_ok=True)
                # every command starts with nothing left to write back: a command that does not
                # fsync would otherwise leave its writeback to slow the next one
                os.sync()
        best = {name: min(runs) for name, runs in results.items()}
        print(f"{'command':<22}{'best s':>9}{'runs s':>22}{'peak RSS GiB':>14}")
        for name, runs in results.items():
            shown = ", ".join(f"{s:.2f}" for s, _ in runs)
            print(f"{name:<22}{best[name][0]:>9.2f}{shown:>22}"
                  f"{max(m for _, m in runs):>14.2f}")
        baseline = best["read + write + fsync"][0]
        print(f"relabel / (read + write + fsync) = {best['symreward relabel'][0] / baseline:.2f}"
              f"  (target < 2); relabel / (read + write) = "
              f"{best['symreward relabel'][0] / best['read + write'][0]:.2f}")
        print("reproduce: PYTHONPATH=. python benchmarks/relabel.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
