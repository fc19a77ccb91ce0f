"""What the demonstrations objective's cap on unlabeled transitions (``max_unlabeled``) does to
the fit, its time and its memory (a script, not a test).

    PYTHONPATH=. python benchmarks/unlabeled_cap.py [--unlabeled 1000000] [--experts 20000]
                                                    [--caps 10000,30000,100000,300000]
                                                    [--seeds 0,1,2] [--dir /tmp]

The data have a known answer: unlabeled states are standard normal in three dimensions
(episodes of 50 steps), expert states are drawn from them with weight ``exp(r)``, ``r = -1.5 x²
+ 0.8 y``, so the expert-against-unlabeled logit is ``r`` plus a constant and a demonstrations
fit should find ``x**2`` and ``y`` with ``y / x**2 = -0.533``. Each cap is learned with each
seed (the seed draws the sample, and the folds), and once with no cap (every unlabeled row), each
in a new process. Printed per run: the terms learned, the ratio ``y / x**2`` where both are
found, the EPIC distance to the true reward on fresh held-out states, the rows learned from,
seconds and peak resident memory (``ru_maxrss``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FEATURES = {"x": "obs[0]", "y": "obs[1]", "z": "obs[2]"}
TRUTH = "-1.5*x**2 + 0.8*y"


def states(unlabeled: int, experts: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Unlabeled normal states, then expert states drawn from a further pool with weight
    exp(r); the expert mask."""
    rng = np.random.default_rng(seed)
    pool = rng.normal(size=(max(20 * experts, 100_000), 3))
    r = -1.5 * pool[:, 0] ** 2 + 0.8 * pool[:, 1]
    weights = np.exp(r - r.max())
    expert = pool[rng.choice(len(pool), experts, p=weights / weights.sum())]
    obs = np.vstack([rng.normal(size=(unlabeled, 3)), expert])
    return obs, np.arange(len(obs)) >= unlabeled


def dataset(obs: np.ndarray, expert: np.ndarray | None = None):  # -> Dataset
    from symreward.data import Dataset

    n = len(obs)
    return Dataset(observations=obs, actions=np.zeros((n, 1)), next_observations=obs,
                   terminals=np.zeros(n, dtype=bool), timeouts=np.arange(n) % 50 == 49,
                   expert=expert)


def fit(path: Path, cap: int, seed: int) -> dict:
    """One demonstrations fit of the data at ``path`` (a child process), and its figures."""
    from symreward.artifact import RewardArtifact, Term
    from symreward.audit import epic_distance
    from symreward.data import load_dataset
    from symreward.features import FeatureSet
    from symreward.learner import SymbolicRewardLearner

    data = load_dataset(path)
    features = FeatureSet(FEATURES)
    started = time.perf_counter()
    learner = SymbolicRewardLearner(objective="demonstrations", seed=seed,
                                    max_unlabeled=cap).fit(data, features)
    seconds = time.perf_counter() - started
    terms = {candidate.text: weight for (candidate, _), weight
             in zip(learner.model_.terms(), learner.coefficients_, strict=True)}
    truth = RewardArtifact(name="truth", features=features, terms=[Term("r", TRUTH)])
    heldout = dataset(np.random.default_rng(12345).normal(size=(20_000, 3)))
    epic = epic_distance(learner.artifact_.batch_reward(), truth.batch_reward(), heldout,
                         seed=0)
    return {"terms": sorted(terms), "ratio": (terms["y"] / terms["x**2"]
                                              if {"x**2", "y"} <= set(terms) else None),
            "epic": epic, "rows": learner.metrics_["rows"], "seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--unlabeled", type=int, default=1_000_000)
    parser.add_argument("--experts", type=int, default=20_000)
    parser.add_argument("--caps", default="10000,30000,100000,300000")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--dir", default=None, help="where the temporary files go")
    parser.add_argument("--fit", nargs=3, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fit is not None:  # the child: one fit, its figures as JSON on stdout
        path, cap, seed = args.fit
        print(json.dumps(fit(Path(path), int(cap), int(seed))))
        return
    from symreward.data import save_dataset

    caps = [int(cap) for cap in args.caps.split(",")]
    seeds = [int(seed) for seed in args.seeds.split(",")]
    with tempfile.TemporaryDirectory(prefix="symreward-unlabeled-cap-", dir=args.dir) as folder:
        path = Path(folder) / "data.npz"
        save_dataset(dataset(*states(args.unlabeled, args.experts, seed=0)), path)
        print(f"demonstrations: {args.experts} expert and {args.unlabeled} unlabeled "
              f"transitions; truth {TRUTH} (y / x**2 = {0.8 / -1.5:.3f})")
        print(f"{'cap':>9}{'seed':>5}{'rows':>9}  {'terms':<34}{'y/x**2':>8}{'EPIC':>8}"
              f"{'s':>7}{'GiB':>6}")
        runs = [(cap, seed) for cap in caps for seed in seeds] + [(args.unlabeled, seeds[0])]
        for cap, seed in runs:
            started = time.perf_counter()
            process = subprocess.Popen([sys.executable, __file__, "--fit", str(path), str(cap),
                                        str(seed)], stdout=subprocess.PIPE,
                                       stderr=subprocess.DEVNULL, text=True)
            output = process.stdout.read()
            _, status, usage = os.wait4(process.pid, 0)
            if status != 0:
                raise SystemExit(f"the fit at cap {cap}, seed {seed} failed ({status})")
            result = json.loads(output)
            ratio = "-" if result["ratio"] is None else f"{result['ratio']:.3f}"
            shown = "none" if cap >= args.unlabeled else str(cap)
            print(f"{shown:>9}{seed:>5}{result['rows']:>9}  {' + '.join(result['terms']):<34}"
                  f"{ratio:>8}{result['epic']:>8.4f}{time.perf_counter() - started:>7.1f}"
                  f"{usage.ru_maxrss / (1 << 20):>6.2f}", flush=True)
        print("reproduce: PYTHONPATH=. python benchmarks/unlabeled_cap.py "
              + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
