"""Benchmark of the audit's distances (a script, not a test): their cost on 100k transitions, and
how DARD and the STARC family rank learned rewards beside EPIC.

    PYTHONPATH=. python benchmarks/audit_distances.py timing [--transitions 100000] [--repeat 3]
    PYTHONPATH=. python benchmarks/audit_distances.py recovery [--tasks pendulum,...]
                 [--pairs 100,250,1000] [--label-seeds 0-2] [--runners-up 5]

``timing``: HalfCheetah-v5 data from the recovery benchmark's policy mix (``recovery.TASKS``,
``recovery.collect_mix``; 1000-step parts), ``--transitions`` of them. One artifact (the task's
true reward) against one other (a plausible learned one with a distractor and a hinge), with
``compare_rewards`` at its defaults (EPIC, DARD, STARC-epic-L1/L2, STARC-value-L1/L2; 4096
evaluated transitions, 1024 EPIC samples, 16 neighbours in a pool of 16384, 200 resamples) and
with every measure (``MEASURES``). Reported: the wall time of the whole call, first with the
kernels compiled cold (a fresh kernel cache) and then warm (median of ``--repeat``), and the
warm time of each step (drawing and the neighbour search, each canonicalisation of each
reward, the bootstrap); then the same with every transition evaluated (``n_eval`` = all). The
target: under 60 s on 2 cores.

``recovery``: the recovery benchmark's tasks, data, labels and learner (``benchmarks/recovery.py``:
``collect_mix``, ``calibrate_temperature``, ``draw_pairs`` with fresh 25-step windows, the
learner with its default options), for each pair count and label seed. The learned rewards are
each fit's artifact and the ``--runners-up`` best alternatives of its front
(``symreward.audit.runners_up``). For each learned reward, on the task's held-out data: the
EPIC distance to the true reward exactly as ``recovery.py`` computes it (``epic_distance``,
n_eval 2048, n_mean 256, γ 0.99), the held-out accuracy on noiseless preference pairs, and
every measure of ``compare_rewards`` to the true reward. Reported: the Spearman and Pearson
correlation of each measure with that EPIC (and with the accuracy), per task and pooled over
tasks, for the chosen rewards and for all of them. Results go to
``benchmarks/.out/audit_distances_{timing,recovery}.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

HERE = Path(__file__).resolve().parent
OUT_DIR = HERE / ".out"
sys.path.insert(0, str(HERE))

import recovery  # noqa: E402  (the recovery benchmark's tasks, data and labels)

from symreward.artifact import RewardArtifact, Term  # noqa: E402
from symreward.audit import (  # noqa: E402
    DEFAULT_MEASURES,
    MEASURES,
    compare_rewards,
    epic_distance,
    runners_up,
)
from symreward.audit.bootstrap import bootstrap_estimate  # noqa: E402
from symreward.audit.canonical import Canonicalizer  # noqa: E402
from symreward.audit.distances import _statistic, single_threaded_blas  # noqa: E402
from symreward.data import bradley_terry_preferences  # noqa: E402
from symreward.errors import SymrewardError  # noqa: E402
from symreward.learner import SymbolicRewardLearner  # noqa: E402

TIME_TARGET_S = 60.0


def header(command: str) -> dict[str, Any]:
    return {"date": datetime.datetime.now().isoformat(timespec="seconds"),
            "command": command, "machine": platform.node(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "load_average_1min": round(os.getloadavg()[0], 2)}


def say(message: str) -> None:
    print(message, flush=True)


# ---------------------------------------------------------------------------- timing


def other_reward(task: recovery.Task) -> RewardArtifact:
    """A plausible learned HalfCheetah reward: the velocity term slightly off, the control cost
    too large, a correlated distractor (the velocity before the step) and a hinge on pitch."""
    return RewardArtifact(name="halfcheetah-learned", features=task.feature_set(), terms=[
        Term("speed", "0.9*x_vel"), Term("effort", "-0.13*ctrl"),
        Term("before", "0.15*vx_before"), Term("tilt", "-0.2*max(0, pitch - 0.3)")])


@single_threaded_blas   # as compare_rewards runs
def step_times(true_fn: Any, other_fn: Any, data: Any, measures: tuple[str, ...],
               n_eval: int) -> dict[str, float]:
    """The warm time of each step of ``compare_rewards``, by calling its parts."""
    canon_kinds = list(dict.fromkeys(
        m.split("-")[1] if m.startswith("STARC-") else m.lower() for m in measures))
    times: dict[str, float] = {}
    started = time.perf_counter()
    canonicalizer = Canonicalizer(data, discount=0.99, canonicalizations=canon_kinds,
                                  n_eval=n_eval)
    times["draws and neighbour search"] = time.perf_counter() - started
    canonical = {}
    for name, fn in (("true", true_fn), ("other", other_fn)):
        for kind in canon_kinds:
            started = time.perf_counter()
            canonical[(name, kind)] = canonicalizer(fn, name, (kind,))[kind]
            times[f"canonicalise {name} ({kind})"] = time.perf_counter() - started
    started = time.perf_counter()
    for measure in measures:
        kind = measure.split("-")[1] if measure.startswith("STARC-") else measure.lower()
        a, b = canonical[("true", kind)], canonical[("other", kind)]
        bootstrap_estimate(_statistic(measure, a, b), a.values, b.values, resamples=200,
                           level=0.95, seed=(0, 1))
    times[f"bootstrap, 200 resamples x {len(measures)} measures"] = time.perf_counter() - started
    return times


def timing(args: argparse.Namespace, command: str) -> dict[str, Any]:
    task = recovery.TASKS["halfcheetah"]
    parts = math.ceil(args.transitions / 1000)
    say(f"collecting {parts} x 1000 HalfCheetah-v5 transitions (recovery.collect_mix)")
    started = time.perf_counter()
    data, _ = recovery.collect_mix(task, parts, 4242, part_steps=1000)
    data = data.replace(rewards=None)
    say(f"  {data.n} transitions in {time.perf_counter() - started:.1f} s")
    true_art, other = task.true_artifact(), other_reward(task)
    result: dict[str, Any] = {**header(command), "transitions": data.n,
                              "obs_dim": data.obs_dim, "act_dim": data.act_dim,
                              "rewards": {"true": true_art.formula_text(),
                                          "other": other.formula_text()}, "runs": []}
    configurations = [("defaults", DEFAULT_MEASURES, 4096), ("every measure", MEASURES, 4096),
                      ("defaults, every transition evaluated", DEFAULT_MEASURES, data.n)]
    for label, measures, n_eval in configurations:
        run: dict[str, Any] = {"configuration": label, "measures": list(measures),
                               "n_eval": n_eval}
        with tempfile.TemporaryDirectory(prefix="audit-distances-kernels-") as cache:
            os.environ["SYMREWARD_CACHE_DIR"] = cache
            fresh_true = RewardArtifact.loads(true_art.dumps())
            fresh_other = RewardArtifact.loads(other.dumps())
            started = time.perf_counter()
            out = compare_rewards(fresh_true, {"other": fresh_other}, data,
                                  measures=measures, n_eval=n_eval)
            run["cold_seconds"] = time.perf_counter() - started
            true_fn, other_fn = fresh_true.batch_reward(), fresh_other.batch_reward()
            warm = []
            for _ in range(args.repeat):
                started = time.perf_counter()
                again = compare_rewards(true_fn, {"other": other_fn}, data, measures=measures,
                                        n_eval=n_eval)
                warm.append(time.perf_counter() - started)
            assert [m.as_dict() for m in again[0].measures] == \
                [m.as_dict() for m in out[0].measures], "not deterministic"
            run["warm_seconds"] = warm
            run["steps_seconds"] = step_times(true_fn, other_fn, data, tuple(measures), n_eval)
        run["result"] = out[0].as_dict()
        run["load_average_1min"] = round(os.getloadavg()[0], 2)
        result["runs"].append(run)
        say(f"\n{label} ({len(measures)} measures, {n_eval} evaluated transitions): cold "
            f"{run['cold_seconds']:.1f} s, warm median {statistics.median(warm):.1f} s "
            f"(of {', '.join(f'{w:.1f}' for w in warm)}); target < {TIME_TARGET_S:.0f} s: "
            f"{'met' if max(run['cold_seconds'], *warm) < TIME_TARGET_S else 'MISSED'}")
        for step, seconds in run["steps_seconds"].items():
            say(f"    {step:<48} {seconds:6.2f} s")
        for m in out[0].measures:
            say(f"    {m.name:<18} {m.value:.4f}  95% CI [{m.ci[0]:.4f}, {m.ci[1]:.4f}]")
    return result


# ---------------------------------------------------------------------------- recovery


def learned_rewards(task: recovery.Task, train: Any, temperature: float, pairs: int,
                    label_seed: int, seed: int, limit: int) -> list[tuple[str, RewardArtifact]]:
    """One fit as recovery.py's ``symreward_run`` fits (fresh 25-step windows, default learner
    options), and the best ``limit`` alternatives of its front."""
    prefs, _ = recovery.draw_pairs(task, train, pairs, recovery.Variant("windows", 1),
                                   temperature, recovery.draw_seed(seed, pairs, label_seed))
    labelled = train.replace(preferences=prefs, rewards=None)
    learner = SymbolicRewardLearner(objective="preferences", seed=seed,
                                    name=f"{task.key}-{pairs}")
    learner.fit(labelled, task.feature_set())
    artifact = learner.artifact_
    out = [(f"{pairs} pairs, seed {label_seed}: chosen", artifact)]
    for member in runners_up(artifact, limit):
        out.append((f"{pairs} pairs, seed {label_seed}: {member.label}", member.artifact))
    return out


def correlations(table: list[dict[str, Any]], reference: str) -> dict[str, dict[str, Any]]:
    out = {}
    for measure in MEASURES:
        rows = [r for r in table if r.get(measure) is not None and r.get(reference) is not None]
        if len(rows) < 3:
            out[measure] = {"n": len(rows), "spearman": None, "pearson": None}
            continue
        x = np.array([r[measure] for r in rows])
        y = np.array([r[reference] for r in rows])
        out[measure] = {"n": len(rows),
                        "spearman": float(stats.spearmanr(x, y).statistic),
                        "pearson": float(stats.pearsonr(x, y).statistic)}
    return out


def recovery_run(args: argparse.Namespace, command: str) -> dict[str, Any]:
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    pair_counts = [int(p) for p in args.pairs.split(",") if p.strip()]
    label_seeds = recovery.parse_seeds(args.label_seeds)
    out = OUT_DIR.resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.chdir(out)   # MuJoCo writes MUJOCO_LOG.TXT in the working directory
    result: dict[str, Any] = {**header(command), "tasks": {}, "pair_counts": pair_counts,
                              "label_seeds": label_seeds, "runners_up": args.runners_up,
                              "reference_epic": {"n_eval": recovery.EPIC_EVAL,
                                                 "n_mean": recovery.EPIC_MEAN,
                                                 "discount": recovery.DISCOUNT}}
    seed = args.seed
    table: list[dict[str, Any]] = []
    for key in tasks:
        task = recovery.TASKS[key]
        started = time.perf_counter()
        train, _ = recovery.collect_mix(task, task.train_parts, 1000 * seed + 1)
        heldout, _ = recovery.collect_mix(task, task.heldout_parts, 1000 * seed + 500)
        temperature = (recovery.TEMPERATURE if task.label_accuracy is None else
                       recovery.calibrate_temperature(train, task.label_accuracy,
                                                      seed + 7)["temperature"])
        test_pairs = bradley_terry_preferences(heldout, heldout.rewards, recovery.TEST_PAIRS,
                                               recovery.SEGMENT_LENGTH, temperature=0.0,
                                               seed=seed + 1)
        say(f"{key}: data in {time.perf_counter() - started:.0f} s "
            f"({train.n} training, {heldout.n} held-out transitions)")
        learned: list[tuple[str, RewardArtifact]] = []
        for pairs in pair_counts:
            for label_seed in label_seeds:
                learned += learned_rewards(task, train, temperature, pairs, label_seed, seed,
                                           args.runners_up)
        true_art = task.true_artifact()
        true_fn = true_art.batch_reward()
        rows = []
        comparable = {}
        for label, art in learned:
            row: dict[str, Any] = {"task": key, "reward": label, "formula": art.formula_text(),
                                   "chosen": label.endswith("chosen")}
            fn = art.batch_reward()
            try:
                row["EPIC (recovery.py)"] = epic_distance(
                    fn, true_fn, heldout, discount=recovery.DISCOUNT, n_eval=recovery.EPIC_EVAL,
                    n_mean=recovery.EPIC_MEAN, seed=seed)
                comparable[label] = art
            except SymrewardError as error:   # a constant learned reward
                row["skipped"] = str(error)
            row["accuracy"] = recovery.pair_accuracy(art.evaluate(heldout).rewards, test_pairs)
            rows.append(row)
        started = time.perf_counter()
        distances = compare_rewards(true_art, comparable, heldout, measures=MEASURES,
                                    bootstrap=args.bootstrap, seed=seed)
        seconds = time.perf_counter() - started
        by_label = {d.against: d for d in distances}
        for row in rows:
            if row["reward"] in by_label:
                for m in by_label[row["reward"]].measures:
                    row[m.name] = m.value
                    row[f"{m.name} ci"] = m.ci
        say(f"{key}: {len(learned)} learned rewards; compare_rewards to the truth in "
            f"{seconds:.0f} s")
        result["tasks"][key] = {"rows": rows, "compare_seconds": seconds,
                                "epic": correlations(rows, "EPIC (recovery.py)"),
                                "accuracy": correlations(rows, "accuracy")}
        table += rows
    for name, rows in (("pooled, all", table),
                       ("pooled, chosen only", [r for r in table if r["chosen"]])):
        result[name] = {"epic": correlations(rows, "EPIC (recovery.py)"),
                        "accuracy": correlations(rows, "accuracy")}
    print_recovery(result, tasks)
    return result


def fmt(value: float | None) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:+.3f}"


def print_recovery(result: dict[str, Any], tasks: list[str]) -> None:
    for reference, title in (
            ("epic", "Correlation of each measure (compare_rewards, to the true reward) with the "
                     "EPIC to the true reward as recovery.py computes it; Spearman / Pearson:"),
            ("accuracy", "Correlation of each measure with the held-out accuracy on noiseless "
                         "preference pairs (a distance should correlate negatively); Spearman / "
                         "Pearson:")):
        groups = [(key, result["tasks"][key][reference]) for key in tasks] + [
            (name, result[name][reference]) for name in ("pooled, all", "pooled, chosen only")]
        say(f"\n{title}")
        say("| measure | " + " | ".join(f"{g} (n={c[MEASURES[0]]['n']})" for g, c in groups)
            + " |")
        say("|---|" + "---|" * len(groups))
        for m in MEASURES:
            say(f"| {m} | " + " | ".join(f"{fmt(c[m]['spearman'])} / {fmt(c[m]['pearson'])}"
                                         for _, c in groups) + " |")


# ---------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="part", required=True)
    t = sub.add_parser("timing", help="compare_rewards on 100k HalfCheetah transitions")
    t.add_argument("--transitions", type=int, default=100_000)
    t.add_argument("--repeat", type=int, default=3)
    r = sub.add_parser("recovery", help="DARD/STARC against EPIC on the recovery tasks")
    r.add_argument("--tasks", default=",".join(recovery.TASKS))
    r.add_argument("--pairs", default="100,250,1000")
    r.add_argument("--label-seeds", default="0-2")
    r.add_argument("--runners-up", type=int, default=5)
    r.add_argument("--bootstrap", type=int, default=50)
    r.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    command = "PYTHONPATH=. python benchmarks/audit_distances.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    head = header(command)
    say(f"{head['date']} on {head['machine']} ({head['processor']}, {head['cpu_count']} CPUs, "
        f"load {head['load_average_1min']}); command: {command}")
    result = timing(args, command) if args.part == "timing" else recovery_run(args, command)
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / f"audit_distances_{args.part}.json"
    path.write_text(json.dumps(result, indent=1, default=str))
    say(f"\nraw results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
