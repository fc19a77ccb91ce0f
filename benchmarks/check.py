"""Benchmark of ``symreward check`` (a script, not a test).

    PYTHONPATH=. python benchmarks/check.py [--examples 200] [--time-budget 2] [--repeat 1]

Builds synthetic artifacts with 5–20 terms over 2–10 features (ranges [-3, 3] recorded in
provenance) and eight invariants each — bounded (hi = 0; and lo = 5% below the sum of the terms'
sampled minima), decreasing in abs(f0), sign (nonpositive where f1 > 0; negative where
abs(f0) > 0.5), independent of an unused feature, prefers (abs(f0) < 0.1 over abs(f0) > 2, true
or not depending on the other terms) and a planted false one (increasing in abs(f0)) — and
times ``check`` on each. The last row replaces one term by ``-(f1**2 - 2*f1*f2 + f2**2)``,
whose interval bound is never tight on the diagonal: proofs that involve it run out of budget
and fall back to property tests (the worst case). Target: a 20-term artifact over 10
features checked in under 10 s on 2 cores.
"""

from __future__ import annotations

import argparse
import datetime
import os
import time

import numpy as np

from symreward.artifact import RewardArtifact
from symreward.invariants import check

INVARIANTS = [
    '[[invariants]]\nrule = "bounded"\nhi = 0',
    '[[invariants]]\nrule = "decreasing"\nof = "abs(f0)"',
    '[[invariants]]\nrule = "sign"\nis = "nonpositive"\nwhen = "f1 > 0"',
    '[[invariants]]\nrule = "independent"\nof = "unused"',
    '[[invariants]]\nrule = "sign"\nis = "negative"\nwhen = "abs(f0) > 0.5"',
    '[[invariants]]\nrule = "prefers"\nbetter = "abs(f0) < 0.1"\nworse = "abs(f0) > 2"',
    '[[invariants]]\nrule = "increasing"\nof = "abs(f0)"',  # planted: false
]


def _terms(rng: np.random.Generator, n_terms: int, n_features: int) -> list[str]:
    """Non-negative building blocks with negative weights, so the reward is <= 0 and
    non-increasing in abs(f0)."""
    f0_terms = ["f0**2", "abs(f0)", "tanh(f0)**2", "f0**2 * f{j}**2"]
    others = ["f{i}**2", "abs(f{i})", "max(0, f{i} - {k})", "(f{i} > {k})",
              "f{i}**2 * f{j}**2", "exp(-f{i}**2)", "sqrt(1 + f{i}**2)", "tanh(f{i})**2"]
    terms = []
    for t in range(n_terms):
        i, j = int(rng.integers(1, n_features)), int(rng.integers(1, n_features))
        k = round(float(rng.uniform(-1, 1)), 2)
        shape = (f0_terms[t % len(f0_terms)] if t % 3 == 0
                 else others[int(rng.integers(len(others)))])
        weight = round(float(rng.uniform(0.1, 2.0)), 3)
        terms.append(f"-{weight} * " + shape.format(i=i, j=j, k=k))
    return terms


def build(n_terms: int, n_features: int, seed: int = 0, hard: bool = False) -> RewardArtifact:
    rng = np.random.default_rng(seed)
    names = [f"f{i}" for i in range(n_features)] + ["unused"]
    lines = ['schema = "symreward/1"', f'name = "bench-{n_terms}x{n_features}"', "",
             "[features]"]
    lines += [f'{n} = "obs[{i}]"' for i, n in enumerate(names)]
    terms = _terms(rng, n_terms, n_features)
    if hard:  # -(f1 - f2)**2 written out: interval bounds overestimate it near f1 = f2
        terms[-1] = "-(f1**2 - 2*f1*f2 + f2**2)"
    for index, expr in enumerate(terms):
        lines += ["", "[[terms]]", f'name = "t{index}"', f'expr = "{expr}"']
    for invariant in INVARIANTS:
        lines += ["", invariant]
    # a lower bound 5% below the sum of each term's sampled minimum: true, and proved only by
    # interval arithmetic (sympy's sign rules cannot)
    probe = RewardArtifact.loads("\n".join(lines) + "\n")
    grid = {n: rng.uniform(-3, 3, 4000) for n in names}
    grid = {n: np.concatenate([v, [-3.0, 0.0, 3.0]]) for n, v in grid.items()}
    from symreward.invariants import point_function

    floor = 0.0
    for expr in probe.term_exprs():
        values = np.vectorize(point_function(expr, names))(*(grid[n] for n in names))
        floor += float(np.min(values))
    lines += ["", f'[[invariants]]\nrule = "bounded"\nlo = {1.05 * floor - 0.01:.4f}']
    ranges = ", ".join(f"{n} = [-3.0, 3.0]" for n in names)
    lines += ["", "[provenance]", f"feature_ranges = {{ {ranges} }}"]
    return RewardArtifact.loads("\n".join(lines) + "\n", source=f"bench-{n_terms}x{n_features}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--time-budget", type=float, default=2.0)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    print(f"# symreward check benchmark, {datetime.date.today()}, {os.cpu_count()} cores, "
          f"examples={args.examples}, time budget={args.time_budget} s per invariant")
    print("| terms | features | seconds (best) | per invariant: status (s) |")
    print("|---:|---:|---:|---|")
    for n_features, n_terms, hard in [(2, 5, False), (5, 5, False), (5, 10, False),
                                      (10, 10, False), (10, 20, False), (10, 20, True)]:
        artifact = build(n_terms, n_features, hard=hard)
        best, results = float("inf"), []
        for _ in range(args.repeat):
            start = time.perf_counter()
            results = check(artifact, examples=args.examples, time_budget=args.time_budget)
            best = min(best, time.perf_counter() - start)
        shown = ", ".join(f"{r.rule} {r.status} ({r.seconds:.2f})" for r in results)
        label = f"{n_terms} (one hard)" if hard else str(n_terms)
        print(f"| {label} | {n_features} | {best:.2f} | {shown} |", flush=True)


if __name__ == "__main__":
    main()
