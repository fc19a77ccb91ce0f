"""Benchmark of the hand-editing loop (a script, not a test): `symreward patch`, then `symreward
eval` in a new process, as a person editing a reward runs them.

    PYTHONPATH=. python benchmarks/editing.py [--rows 100000] [--repeat 5]

The reward is the kernel benchmark's (6 features, 7 terms; `benchmarks/kernels.py`), written as
an artifact; the data are `--rows` random transitions in an npz file. In one run, with one kernel
cache directory made for it, every command in a new process:

- cold: `eval ... -o rewards.npy` with an empty kernel cache;
- cached: `eval` of the same artifact again;
- weight edit: `patch --set` of one term's weight (a new value each round), then the first `eval`
  of the edited artifact;
- structural edit: `patch --add` of a term of a new shape (a new one each round), then the first
  `eval`; and, for another new shape, the time from loading the edited artifact to its rewards
  in a process whose imports are done (what the edit itself costs).

Rounds interleave a cached eval, a weight edit and a structural edit, so all see the same
background load on a shared machine; the targets are the median weight-edit eval within 1.2x of
the median cached eval, and the structural edit's first eval under 2 s.
"""

from __future__ import annotations

import argparse
import datetime
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from symreward.data import Dataset, save_dataset

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from kernels import FEATURES, TERMS  # noqa: E402  (the kernel benchmark's reward)

# Terms of shapes the reward does not have, one per structural edit.
NEW_SHAPES = ["0.5*speed*tilt", "0.25*effort*height", "progress*speed**2", "abs(theta)*tilt",
              "0.1*max(height, tilt)", "0.2*theta*progress", "sin(speed)*0.3",
              "0.05*effort**3", "tanh(progress)*tilt", "0.4*(tilt > 0.5)*speed",
              "0.3*cos(height)*effort", "exp(-speed)*0.2"]


def artifact_text() -> str:
    lines = ['schema = "symreward/1"', 'name = "editing-benchmark"', "", "[features]"]
    lines += [f'{name} = "{text}"' for name, text in FEATURES.items()]
    for name, text in TERMS.items():
        lines += ["", "[[terms]]", f'name = "{name}"', f'expr = "{text}"']
    return "\n".join(lines) + "\n"


def write_data(path: Path, rows: int) -> None:
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(rows, 8))
    timeouts = np.zeros(rows, bool)
    timeouts[999::1000] = True
    save_dataset(Dataset(observations=obs, actions=rng.normal(size=(rows, 2)),
                         next_observations=obs + 0.01 * rng.normal(size=(rows, 8)),
                         terminals=np.zeros(rows, bool), timeouts=timeouts), path)


# In a new process, after the imports (which a cached eval pays too): load, compile, evaluate.
FIRST_REWARD = """
import sys, time
from symreward.artifact import RewardArtifact
from symreward.data import load_dataset
data = load_dataset(sys.argv[2])
start = time.perf_counter()
RewardArtifact.load(sys.argv[1]).evaluate(data)
print(time.perf_counter() - start)
"""


def first_reward(artifact: Path, data: Path, environment: dict[str, str]) -> float:
    """Seconds from loading ``artifact`` to its rewards on ``data``, imports done."""
    result = subprocess.run([sys.executable, "-c", FIRST_REWARD, str(artifact), str(data)],
                            capture_output=True, text=True, env=environment, check=True)
    return float(result.stdout)


def command(*args: str | Path, environment: dict[str, str]) -> float:
    """Seconds of ``symreward ARGS`` in a new process, which must succeed."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "symreward", *map(str, args)],
                            capture_output=True, text=True, env=environment)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"symreward {' '.join(map(str, args))} failed:\n{result.stderr}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if args.repeat > len(NEW_SHAPES) // 2:
        parser.error(f"--repeat is at most {len(NEW_SHAPES) // 2}")
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="symreward-editing-") as folder:
        work = Path(folder)
        environment = {**os.environ, "SYMREWARD_CACHE_DIR": str(work / "cache"),
                       "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH",
                                                                                  "")])}
        reward, data = work / "r.toml", work / "data.npz"
        reward.write_text(artifact_text(), encoding="utf-8")
        write_data(data, args.rows)
        out = ("-o", work / "rewards.npy")
        cold = command("eval", reward, data, *out, environment=environment)
        cached, patch, weight, structural, in_process = [], [], [], [], []
        for k in range(args.repeat):
            cached.append(command("eval", reward, data, *out, environment=environment))
            edited = work / f"weight-{k}.toml"
            patch.append(command("patch", reward, "--set",
                                 f"slow=-{0.11 + 0.01 * k:.2f}*speed", "-o", edited,
                                 environment=environment))
            weight.append(command("eval", edited, data, *out, environment=environment))
            grown = work / f"shape-{k}.toml"
            command("patch", reward, "--add", f"extra={NEW_SHAPES[k]}", "-o", grown,
                    environment=environment)
            structural.append(command("eval", grown, data, *out, environment=environment))
            shaped = work / f"shape-in-process-{k}.toml"
            command("patch", reward, "--add", f"extra={NEW_SHAPES[-1 - k]}", "-o", shaped,
                    environment=environment)
            in_process.append(first_reward(shaped, data, environment))
    ratio = statistics.median(weight) / statistics.median(cached)

    def seconds(values: list[float]) -> str:
        return (f"{statistics.median(values):.2f} s median ({min(values):.2f}–"
                f"{max(values):.2f} s over {len(values)})")

    print(f"# {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, "
          f"load {load_before:.2f} -> {os.getloadavg()[0]:.2f}; {args.rows} transitions")
    print("| step (each a new process) | time |\n|---|---|")
    print(f"| eval, empty kernel cache | {cold:.2f} s |")
    print(f"| eval, cached | {seconds(cached)} |")
    print(f"| patch --set of a weight | {seconds(patch)} |")
    print(f"| eval after the weight edit | {seconds(weight)} |")
    print(f"| eval after a structural edit (a term of a new shape) | {seconds(structural)} |")
    print(f"| weight edit vs cached | {ratio:.2f}x (target <= 1.2x: "
          f"{'met' if ratio <= 1.2 else 'MISSED'}) |")
    print("| structural edit: load, compile and evaluate, imports done (a new shape each) | "
          f"{seconds(in_process)} |")
    slowest = max(structural)
    print(f"| structural edit, slowest first eval | {slowest:.2f} s (target < 2 s: "
          f"{'met' if slowest < 2 else 'MISSED'}) |")


if __name__ == "__main__":
    main()
