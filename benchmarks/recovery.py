"""Reward-recovery benchmark: does symreward find the true reward from segment preferences?

Four tasks whose true reward is known (Pendulum-v1, MountainCarContinuous-v0, HalfCheetah-v5,
Hopper-v5). For each: offline data from a mix of policy qualities (random, noisy heuristic
controllers, open-loop gaits; one policy per collected part, parts joined with
``Dataset.concatenate``), a features dict holding the true reward's features plus distractors,
250 / 1000 / 4000 segment pairs labelled Bradley-Terry from the environment's own per-step
rewards, then symreward (``SymbolicRewardLearner``, default options) and the neural peer
(``imitation``'s ``BasicRewardNet``, ``benchmarks/peer_imitation.py``) learn from the same pairs.

Metrics, all on held-out data collected with other seeds:

* EPIC distance to the true reward. Both methods are canonicalised on *identical* inputs: the
  samples are drawn exactly as ``symreward.audit.epic_distance`` draws them; symreward's reward
  goes through ``epic_distance`` itself, and the peer's through ``audit.canonicalize`` with a
  record/replay reward (a first pass records every (s, a, s') the canonicalisation asks for,
  the peer is evaluated on exactly those arrays, a second pass replays its outputs). The two
  paths are checked to agree on symreward's reward.
* Preference accuracy against the noiseless truth: fresh held-out pairs labelled at
  temperature 0, ties dropped.
* Support recovery (symreward only): a learned term *matches* a true term when its library
  candidate has the same canonical text as the true term's feature expression (coefficient
  ignored) and its coefficient has the true sign. Precision = matched / learned terms; recall
  over the *dominant* true terms (>= 1% of the true reward's term variance on held-out data) and
  over all true terms.
* Spurious variance share: variance of unmatched learned terms over the summed variance of all
  learned terms, per term on held-out data (the largest single one and the total).
* Learning time: wall time around ``learner.fit`` (featurise + library + search + CV), with the
  feature kernel compiled beforehand (compile time reported separately, cold, in a fresh
  kernel cache directory). The peer's time is its own ``train_seconds``.

Run ``python benchmarks/recovery.py --help``; results go to ``benchmarks/.out/recovery.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
OUT_DIR = HERE / ".out"
sys.path.insert(0, str(HERE))

from symreward import formula  # noqa: E402
from symreward.artifact import RewardArtifact, Term  # noqa: E402
from symreward.audit import canonicalize, epic_distance, pearson_distance  # noqa: E402
from symreward.data import Dataset, Preferences, bradley_terry_preferences, collect  # noqa: E402
from symreward.data.oracle import segment_returns  # noqa: E402
from symreward.errors import SymrewardError  # noqa: E402
from symreward.features import FeatureSet  # noqa: E402
from symreward.learner import Model, SymbolicRewardLearner, feature_matrix  # noqa: E402
from symreward.search.front import FrontEntry, ParetoFront  # noqa: E402
from symreward.search.library import TermLibrary  # noqa: E402
from symreward.search.sparse import (  # noqa: E402
    LinearFit,
    fit_loss,
    l1_supports,
    stepwise_supports,
)
from symreward.search.weights import fit_support  # noqa: E402

# ---------------------------------------------------------------------------- settings

PAIR_COUNTS = (250, 1000, 4000)
SEGMENT_LENGTH = 25           # transitions per segment (Hopper's short episodes bound it)
TEMPERATURE = 1.0             # Bradley-Terry temperature, in the env's reward units
TEST_PAIRS = 2000             # noiseless held-out pairs for the accuracy metric
DOMINANT_SHARE = 0.01         # a true term is "dominant" at >= 1% of the true term variance
SPURIOUS_LIMIT = 0.05         # target: no spurious term above 5% of the learned variance
EPIC_TARGET = 0.05
TIME_TARGET_S = 10.0          # learning time target at 100k transitions
TIMING_TRANSITIONS = 100_000
TIMING_REPEATS = 5
# EPIC sample sizes, shared by both methods. The peer has to be evaluated on
# ~(2 * EPIC_EVAL + EPIC_MEAN) * EPIC_MEAN synthetic transitions, which sets the budget.
EPIC_EVAL = 2048
EPIC_MEAN = 256
DISCOUNT = 0.99               # EPIC's discount (the library default)


def peer_epochs(pairs: int) -> int:
    """imitation's default 50 epochs (batch 32, AdamW lr 1e-3) at every pair count: about
    0.6 s per epoch per 1000 pairs of length 25 here, ~2 minutes at 4000 pairs."""
    return 50


# ---------------------------------------------------------------------------- policies

Policy = Callable[[np.ndarray, np.random.Generator], Any]
# A policy family: draws its parameters from the generator, returns the policy and them.
Family = Callable[[np.random.Generator], tuple[Policy, dict[str, Any]]]


def _params(**values: Any) -> dict[str, Any]:
    return {k: (np.round(v, 3).tolist() if isinstance(v, np.ndarray) else round(float(v), 3))
            for k, v in values.items()}


def _uniform_family(low: float, high: float) -> Family:
    def make(p: np.random.Generator) -> tuple[Policy, dict[str, Any]]:
        def policy(obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            return rng.uniform(low, high, size=1)
        return policy, {}
    return make


def _pendulum_pd_law(kp: float, kd: float, noise: float) -> Policy:
    def policy(obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        theta = np.arctan2(obs[1], obs[0])
        return np.clip([-kp * theta - kd * obs[2] + rng.normal(0.0, noise)], -2.0, 2.0)
    return policy


def _pendulum_pd(p: np.random.Generator) -> tuple[Policy, dict[str, Any]]:
    kp, kd, noise = p.uniform(2, 6), p.uniform(0.5, 1.5), p.uniform(0.1, 1.0)
    return _pendulum_pd_law(kp, kd, noise), _params(kp=kp, kd=kd, noise=noise)


def _pendulum_energy(p: np.random.Generator) -> tuple[Policy, dict[str, Any]]:
    """Energy pumping (push along the swing), handing over to PD near the top."""
    low, switch = p.uniform(0.3, 0.9), p.uniform(0.7, 0.95)
    pd = _pendulum_pd_law(4.0, 1.0, p.uniform(0.1, 0.5))

    def policy(obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if obs[0] > switch:
            return pd(obs, rng)
        return np.array([2.0 if obs[2] * obs[0] >= 0 else -2.0]) * rng.uniform(low, 1.0)
    return policy, _params(low=low, switch=switch)


def _car_pump(p: np.random.Generator) -> tuple[Policy, dict[str, Any]]:
    """Energy pumping: push in the direction of motion; low gains often fail to reach the goal."""
    gain, noise, p_random = p.uniform(0.15, 1.0), p.uniform(0.05, 0.5), p.uniform(0.0, 0.5)

    def policy(obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if rng.random() < p_random:
            return rng.uniform(-1.0, 1.0, size=1)
        direction = 1.0 if obs[1] >= 0 else -1.0
        return np.clip([gain * direction + rng.normal(0.0, noise)], -1.0, 1.0)
    return policy, _params(gain=gain, noise=noise, p_random=p_random)


def _car_coast(p: np.random.Generator) -> tuple[Policy, dict[str, Any]]:
    noise = p.uniform(0.02, 0.3)

    def policy(obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return np.clip(rng.normal(0.0, noise, size=1), -1.0, 1.0)
    return policy, _params(noise=noise)


def _box_random(act_dim: int) -> Family:
    def make(p: np.random.Generator) -> tuple[Policy, dict[str, Any]]:
        def policy(obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            return rng.uniform(-1.0, 1.0, size=act_dim)
        return policy, {}
    return make


def _gait(act_dim: int, dt: float, f_low: float, f_high: float) -> Family:
    """Open-loop sinusoid per joint (amplitude, shared frequency, phase, bias) plus noise."""
    def make(p: np.random.Generator) -> tuple[Policy, dict[str, Any]]:
        amp, freq = p.uniform(0.3, 1.0, act_dim), p.uniform(f_low, f_high)
        phase, bias = p.uniform(0, 2 * np.pi, act_dim), p.uniform(-0.3, 0.3, act_dim)
        noise = p.uniform(0.0, 0.5)
        clock = [0]

        def policy(obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            clock[0] += 1
            a = bias + amp * np.sin(2 * np.pi * freq * dt * clock[0] + phase)
            return np.clip(a + rng.normal(0.0, noise, act_dim), -1.0, 1.0)
        return policy, _params(amp=amp, freq=freq, phase=phase, bias=bias, noise=noise)
    return make


def _hopper_stand(rock: bool) -> Family:
    """PD holding the joints at zero (stands for long episodes), optionally rocking."""
    def make(p: np.random.Generator) -> tuple[Policy, dict[str, Any]]:
        kp, kd, noise = p.uniform(1, 3), p.uniform(0.1, 0.3), p.uniform(0.05, 0.3)
        amp = p.uniform(0.1, 0.6) if rock else 0.0
        freq, phase = p.uniform(0.5, 3.0), p.uniform(0, 2 * np.pi, 3)
        clock = [0]

        def policy(obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            clock[0] += 1
            a = -kp * obs[2:5] - kd * obs[8:11] + rng.normal(0.0, noise, 3)
            a = a + amp * np.sin(2 * np.pi * freq * 0.008 * clock[0] + phase)
            return np.clip(a, -1.0, 1.0)
        return policy, _params(kp=kp, kd=kd, noise=noise, amp=amp, freq=freq)
    return make


# ---------------------------------------------------------------------------- tasks


@dataclass
class Task:
    key: str
    env_id: str
    features: dict[str, str]
    true_terms: list[tuple[float, str]]   # (coefficient, feature expression)
    families: list[tuple[str, Family]]    # cycled over the collected parts
    part_steps: int
    train_parts: int
    heldout_parts: int
    tolerance: float                      # true formula vs env reward, max abs difference
    notes: str = ""

    def feature_set(self) -> FeatureSet:
        return FeatureSet(self.features, source=f"{self.key} features")

    def true_artifact(self) -> RewardArtifact:
        terms = [Term(f"true_{k}", f"{coef!r} * ({text})")
                 for k, (coef, text) in enumerate(self.true_terms)]
        return RewardArtifact(name=f"{self.key}-true", features=self.feature_set(), terms=terms)

    def true_texts(self) -> list[str]:
        names = list(self.features)
        return [formula.to_text(formula.parse(text, names)) for _, text in self.true_terms]


HALFCHEETAH_CTRL = " + ".join(f"act[{i}]**2" for i in range(6))
HOPPER_CTRL = " + ".join(f"act[{i}]**2" for i in range(3))

TASKS: dict[str, Task] = {
    "pendulum": Task(
        "pendulum", "Pendulum-v1",
        {"theta": "atan2(obs[1], obs[0])", "theta_dot": "obs[2]", "torque": "act[0]",
         "height": "obs[0]", "next_theta_dot": "next_obs[2]"},
        [(-1.0, "theta**2"), (-0.1, "theta_dot**2"), (-0.001, "torque**2")],
        [("random", _uniform_family(-2.0, 2.0)), ("pd", _pendulum_pd),
         ("energy", _pendulum_energy)],
        part_steps=1000, train_parts=30, heldout_parts=15, tolerance=1e-4,
        notes="obs are float32, so theta = atan2(obs[1], obs[0]) differs from the env's angle "
              "by float32 rounding"),
    "mountaincar": Task(
        "mountaincar", "MountainCarContinuous-v0",
        {"position": "obs[0]", "velocity": "obs[1]", "force": "act[0]",
         "at_goal": "(next_obs[0] >= 0.45)", "next_position": "next_obs[0]",
         "next_velocity": "next_obs[1]", "slope_height": "sin(3 * obs[0])"},
        [(-0.1, "force**2"), (100.0, "at_goal")],
        [("random", _uniform_family(-1.0, 1.0)), ("pump", _car_pump), ("coast", _car_coast),
         ("pump", _car_pump)],
        part_steps=3000, train_parts=10, heldout_parts=6, tolerance=1e-6,
        notes="the goal test also needs velocity >= 0, which always holds on arrival; "
              "reaching the goal ends the episode, so at_goal fires once per success"),
    "halfcheetah": Task(
        "halfcheetah", "HalfCheetah-v5",
        {"x_vel": "info.x_velocity", "ctrl": HALFCHEETAH_CTRL, "height": "obs[0]",
         "pitch": "obs[1]", "vx_before": "obs[8]", "pitch_rate": "obs[10]",
         "back_thigh": "act[0]"},
        [(1.0, "x_vel"), (-0.1, "ctrl")],
        [("random", _box_random(6)), ("gait", _gait(6, 0.05, 0.5, 4.0)),
         ("gait", _gait(6, 0.05, 0.5, 4.0))],
        part_steps=1000, train_parts=30, heldout_parts=15, tolerance=1e-9,
        notes="vx_before = obs[8] is the root's x velocity before the step, a correlated "
              "distractor for x_vel (the step's finite-difference velocity, infos/x_velocity)"),
    "hopper": Task(
        "hopper", "Hopper-v5",
        {"x_vel": "info.x_velocity", "ctrl": HOPPER_CTRL,
         "healthy": "(next_obs[0] > 0.7) * (next_obs[1] > -0.2) * (next_obs[1] < 0.2)",
         "height": "obs[0]", "pitch": "obs[1]", "vz_before": "obs[6]", "thigh": "act[0]"},
        [(1.0, "healthy"), (1.0, "x_vel"), (-0.001, "ctrl")],
        [("random", _box_random(3)), ("stand", _hopper_stand(False)),
         ("rock", _hopper_stand(True)), ("gait", _gait(3, 0.008, 0.5, 3.0))],
        part_steps=1500, train_parts=20, heldout_parts=10, tolerance=1e-9,
        notes="gymnasium 1.4's Hopper-v5 pays healthy_reward = is_healthy after the step: 1 on "
              "every step except the terminating one (0), so it is not a pure constant; "
              "healthy(next_obs) omits the |state| < 100 test, which the data never reach. "
              "obs[5] (x velocity before the step) is NOT a distractor here: at dt = 0.008 it "
              "correlates 0.997 with x_vel and equals it up to potential shaping, so no "
              "preference could tell them apart"),
}


# ---------------------------------------------------------------------------- data


REWARD_INFOS = ("reward_forward", "reward_ctrl", "reward_survive")


def collect_mix(task: Task, n_parts: int, seed: int, part_steps: int | None = None
                ) -> tuple[Dataset, list[dict[str, Any]]]:
    """``n_parts`` datasets, part k from family k mod F with parameters and env seed drawn from
    ``seed + k``; joined with ``Dataset.concatenate``. Reward components in infos are dropped
    (only the env's total reward is kept, for labelling and checks)."""
    steps = part_steps or task.part_steps
    parts, described = [], []
    for k in range(n_parts):
        name, family = task.families[k % len(task.families)]
        part_seed = seed + k
        policy, params = family(np.random.default_rng(part_seed))
        part = collect(task.env_id, policy, steps, part_seed)
        infos = {key: v for key, v in part.infos.items() if key not in REWARD_INFOS}
        parts.append(part.replace(infos=infos))
        described.append({"family": name, "seed": part_seed, "params": params,
                          "mean_reward": round(float(part.rewards.mean()), 4),
                          "episodes": part.n_episodes})
    data = Dataset.concatenate(parts, source=f"{task.env_id} policy mix (seed {seed})")
    return data, described


def verify_true_reward(task: Task, data: Dataset) -> float:
    """Max |true formula - env reward| on ``data``; raises if above the task's tolerance."""
    recorded = np.asarray(data.rewards)
    mine = task.true_artifact().evaluate(data).rewards
    gap = float(np.max(np.abs(mine - recorded)))
    if gap > task.tolerance:
        worst = int(np.argmax(np.abs(mine - recorded)))
        raise AssertionError(f"{task.env_id}: true formula differs from the env reward by {gap:g} "
                             f"at row {worst} ({mine[worst]} vs {recorded[worst]})")
    return gap


def data_summary(data: Dataset, length: int) -> dict[str, Any]:
    """Size, episodes, and how segments of ``length`` cover the data: a segment must lie in
    one episode, so a terminal transition lies in exactly one valid segment window (the one
    ending there) while an interior transition lies in ``length`` of them."""
    lengths = data.episode_lengths
    short = lengths < length
    windows = int(np.sum(np.maximum(lengths - length + 1, 0)))
    ends_covered = int(np.sum(data.terminals[data.episode_ends[~short] - 1]))
    return {"transitions": data.n, "episodes": data.n_episodes,
            "terminal_transitions": int(np.sum(data.terminals)),
            "mean_episode_length": round(float(lengths.mean()), 1),
            "share_in_episodes_shorter_than_segment": round(
                float(lengths[short].sum() / data.n), 4),
            "segment_windows": windows,
            "share_of_windows_with_a_terminal": round(ends_covered / max(windows, 1), 5),
            "share_of_transitions_terminal": round(float(np.mean(data.terminals)), 5),
            "reward_mean": round(float(np.mean(data.rewards)), 4),
            "reward_std": round(float(np.std(data.rewards)), 4)}


def label_noise(data: Dataset, prefs: Preferences) -> dict[str, float]:
    """How noisy the Bradley-Terry labels are: share disagreeing with the noiseless truth."""
    diff = segment_returns(data.rewards, prefs.a) - segment_returns(data.rewards, prefs.b)
    decided = diff != 0
    flips = (prefs.label[decided] > 0.5) != (diff[decided] > 0)
    return {"flip_rate": round(float(np.mean(flips)), 4),
            "median_abs_return_gap": round(float(np.median(np.abs(diff))), 4),
            "share_gap_below_temperature": round(float(np.mean(np.abs(diff) < TEMPERATURE)), 4)}


def pair_accuracy(rewards: np.ndarray, pairs: Preferences) -> float:
    diff = segment_returns(rewards, pairs.a) - segment_returns(rewards, pairs.b)
    decided = pairs.label != 0.5
    return float(np.mean((diff[decided] > 0) == (pairs.label[decided] > 0.5)))


# ---------------------------------------------------------------------------- EPIC


def epic_inputs(data: Dataset, *, n_eval: int, n_mean: int, seed: int) -> dict[str, Any]:
    """The arguments of ``audit.canonicalize``, sampled exactly as ``epic_distance`` does."""
    rng = np.random.default_rng(seed)
    n = data.n
    rows = np.arange(n) if n_eval >= n else np.sort(rng.choice(n, size=n_eval, replace=False))
    pool_obs = np.concatenate((data.observations, data.next_observations), axis=0)
    previous = np.arange(n, dtype=np.int64) - 1
    previous[data.episode_starts] = data.episode_starts
    pool_info_rows = np.concatenate((previous, np.arange(n, dtype=np.int64)))
    s_idx = rng.integers(2 * n, size=n_mean)
    a_idx = rng.integers(n, size=n_mean)
    sp_idx = rng.integers(2 * n, size=n_mean)
    return {
        "obs": data.observations[rows], "act": data.actions[rows],
        "next_obs": data.next_observations[rows],
        "infos": {k: col[rows] for k, col in data.infos.items()},
        "coverage_obs": pool_obs[s_idx], "coverage_act": data.actions[a_idx],
        "coverage_next_obs": pool_obs[sp_idx],
        "coverage_infos": {k: col[pool_info_rows[sp_idx]] for k, col in data.infos.items()},
        "discount": DISCOUNT,
    }


class Recorder:
    """A reward that records every batch it is asked for (and answers zeros)."""

    def __init__(self) -> None:
        self.batches: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def __call__(self, obs: np.ndarray, act: np.ndarray, next_obs: np.ndarray,
                 infos: dict[str, np.ndarray]) -> np.ndarray:
        self.batches.append((np.array(obs, dtype=np.float64), np.array(act, dtype=np.float64),
                             np.array(next_obs, dtype=np.float64)))
        return np.zeros(obs.shape[0])

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return tuple(np.concatenate([b[i] for b in self.batches]) for i in range(3))


class Replay:
    """A reward that answers recorded batches, in the same order, from precomputed values."""

    def __init__(self, recorder: Recorder, values: np.ndarray):
        self.recorder, self.values, self.position, self.call = recorder, values, 0, 0

    def __call__(self, obs: np.ndarray, act: np.ndarray, next_obs: np.ndarray,
                 infos: dict[str, np.ndarray]) -> np.ndarray:
        expected = self.recorder.batches[self.call]
        if obs.shape[0] != expected[0].shape[0] or not np.array_equal(obs, expected[0]):
            raise AssertionError("replay out of step with the recorded canonicalisation")
        k = obs.shape[0]
        out = self.values[self.position:self.position + k]
        self.position += k
        self.call += 1
        return out

    def finished(self) -> bool:
        return self.position == len(self.values) and self.call == len(self.recorder.batches)


def epic_from_canonical(canon: np.ndarray, canon_true: np.ndarray) -> float:
    try:
        return pearson_distance(canon, canon_true)
    except SymrewardError:
        return math.nan     # a constant canonical reward: EPIC undefined


# ---------------------------------------------------------------------------- support metrics


def term_metrics(task: Task, learner: SymbolicRewardLearner, heldout: Dataset
                 ) -> dict[str, Any]:
    """Precision / recall of true terms, spurious variance, coefficient ratios on held-out."""
    true_texts = task.true_texts()
    true_coefs = [c for c, _ in task.true_terms]
    true_columns = task.true_artifact().evaluate(heldout).term_columns
    true_var = true_columns.var(axis=0)
    true_share = true_var / true_var.sum()
    dominant = [bool(s >= DOMINANT_SHARE) for s in true_share]

    learned = learner.model_.terms()
    coefficients = learner.coefficients_
    artifact = learner.artifact_
    columns = artifact.evaluate(heldout).term_columns if learned else np.zeros((heldout.n, 0))
    var = columns.var(axis=0) if learned else np.zeros(0)
    total = float(var.sum())
    matched_true: dict[int, float] = {}
    spurious_shares, rows = [], []
    for k, ((candidate, _), coef) in enumerate(zip(learned, coefficients, strict=True)):
        share = float(var[k] / total) if total > 0 else 0.0
        j = true_texts.index(candidate.text) if candidate.text in true_texts else None
        hit = j is not None and np.sign(coef) == np.sign(true_coefs[j])
        if hit:
            matched_true[j] = coef
        else:
            spurious_shares.append(share)
        rows.append({"term": candidate.text, "coef": coef, "variance_share": round(share, 6),
                     "matches": true_texts[j] if hit else None})
    n_learned = len(learned)
    precision = len(matched_true) / n_learned if n_learned else math.nan
    n_dom = sum(dominant)
    recall_dom = sum(1 for j in matched_true if dominant[j]) / n_dom
    recall_all = len(matched_true) / len(true_texts)
    # Coefficients relative to the truth, normalised by the largest-share matched term.
    ratios = {}
    if matched_true:
        ref = max(matched_true, key=lambda j: true_share[j])
        scale = matched_true[ref] / true_coefs[ref]
        ratios = {true_texts[j]: round(c / true_coefs[j] / scale, 4)
                  for j, c in matched_true.items()}
    return {
        "precision": precision, "recall_dominant": recall_dom, "recall_all": recall_all,
        "spurious_share_total": float(sum(spurious_shares)),
        "spurious_share_max": float(max(spurious_shares, default=0.0)),
        "terms": rows, "coefficient_ratio_to_truth": ratios,
        "true_term_shares": {t: round(float(s), 6) for t, s in zip(true_texts, true_share,
                                                                      strict=True)},
        "dominant_true_terms": [t for t, d in zip(true_texts, dominant, strict=True) if d],
    }


def diagnose(task: Task, learner: SymbolicRewardLearner, train: Dataset) -> dict[str, Any]:
    """Where the true support stands under the learner's own criterion.

    Rebuilds the learner's library and folds (same seed) and cross-validates exactly as
    ``SymbolicRewardLearner._search`` does: the chosen support, the true support (all true
    terms), the dominant true terms only, and each true term alone; whether the search proposed
    them; what the selection rule would have chosen had they been proposed; and the loss of the
    label-generating model (true coefficients / temperature, fixed), the floor of the loss.
    """
    features = task.feature_set()
    matrix = feature_matrix(train, features)
    library = learner.library or TermLibrary()
    candidates, columns = library.build(features.names, matrix, seed=learner.seed)
    texts = [c.text for c in candidates]
    if texts != [c.text for c in learner.candidates_]:
        raise AssertionError("rebuilt library differs from the learner's")
    objective = learner.objective_
    full = objective.problem(columns, None)
    folds = objective.folds(learner.n_folds, learner.seed)
    units = np.arange(objective.n_units)
    splits = [(objective.problem(columns, None, np.setdiff1d(units, held)),
               objective.problem(columns, None, held)) for held in folds]
    proposals = {tuple(sorted(s)) for s in (
        *l1_supports(full, max_terms=learner.max_terms, seed=learner.seed),
        *stepwise_supports(full, max_terms=learner.max_terms, seed=learner.seed))}

    def cv(support: tuple[int, ...]) -> tuple[dict[str, Any], FrontEntry]:
        fit = fit_support(full, support)
        losses, weights = [], []
        for tr, te in splits:
            if tr.n_rows == 0 or te.n_rows == 0:
                continue
            losses.append(fit_loss(te, fit_support(tr, support)))
            weights.append(te.n_rows)
        arr = np.asarray(losses)
        loss = float(np.average(arr, weights=weights))
        se = float(arr.std(ddof=1) / math.sqrt(len(arr)))
        model = Model(fit, candidates)
        expr = model.expression()
        entry = FrontEntry(complexity=formula.complexity(expr), loss=loss, loss_se=se,
                           accuracy=math.nan, formula=formula.to_text(expr), payload=model)
        return {"terms": [texts[k] for k in support], "proposed": support in proposals,
                "complexity": entry.complexity, "cv_loss": loss, "cv_se": se,
                "fold_losses": [round(x, 5) for x in losses],
                "train_loss": float(fit_loss(full, fit)), "formula": entry.formula}, entry

    true_texts = task.true_texts()
    shares = term_shares(task, train)
    present = [t for t in true_texts if t in texts]
    supports = {"chosen": tuple(sorted(learner.model_.fit.support)),
                "true_support": tuple(sorted(texts.index(t) for t in present)),
                "dominant_support": tuple(sorted(texts.index(t) for t in present
                                                 if shares[t] >= DOMINANT_SHARE))}
    for t in present:
        supports[f"only {t}"] = (texts.index(t),)
    report: dict[str, Any] = {"true_terms_in_library": {t: t in texts for t in true_texts}}
    extra = []
    for name, support in supports.items():
        report[name], entry = cv(support)
        if name != "chosen" and support:
            extra.append(entry)
    if len(present) == len(true_texts):
        coef = np.array([c / TEMPERATURE for c, _ in task.true_terms])
        oracle = LinearFit(tuple(texts.index(t) for t in true_texts), coef)
        report["true_reward_fixed_loss"] = float(fit_loss(full, oracle))
    front = learner.front_
    best = min(front.entries, key=lambda e: e.loss)
    report["one_se_threshold"] = best.loss + best.loss_se
    widened = ParetoFront.from_models([*front.entries, *extra], rule=learner.selection,
                                      floor=full.reachable_floor())
    report["chosen_if_true_supports_proposed"] = widened.best.formula
    report["front"] = [{"complexity": e.complexity, "cv_loss": round(e.loss, 6),
                        "cv_se": round(e.loss_se, 6), "formula": e.formula,
                        "chosen": i == front.chosen} for i, e in enumerate(front.entries)]
    return report


def pair_signal(task: Task, data: Dataset, prefs: Preferences) -> dict[str, Any]:
    """What the pairs show of each true term: its share of the variance of the return
    difference across pairs, and the share of pairs where its return differs at all."""
    columns = task.true_artifact().evaluate(data).term_columns
    diffs = np.column_stack([segment_returns(columns[:, k], prefs.a)
                             - segment_returns(columns[:, k], prefs.b)
                             for k in range(columns.shape[1])])
    var = diffs.var(axis=0)
    return {t: {"pair_variance_share": round(float(v / var.sum()), 6),
                "pairs_where_it_differs": round(float(np.mean(np.abs(d) > 1e-12)), 4)}
            for t, v, d in zip(task.true_texts(), var, diffs.T, strict=True)}


def term_shares(task: Task, data: Dataset) -> dict[str, float]:
    columns = task.true_artifact().evaluate(data).term_columns
    var = columns.var(axis=0)
    return {t: float(v / var.sum()) for t, v in zip(task.true_texts(), var, strict=True)}


# ---------------------------------------------------------------------------- one task


def fmt(x: float, digits: int = 3) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def run_task(task: Task, pair_counts: list[int], seed: int, use_peer: bool,
             say: Callable[[str], None]) -> dict[str, Any]:
    features = task.feature_set()
    true_art = task.true_artifact()
    say(f"{task.key}: collecting {task.train_parts} x {task.part_steps} training and "
        f"{task.heldout_parts} x {task.part_steps} held-out transitions")
    train_seed, heldout_seed = 1000 * seed + 1, 1000 * seed + 500
    train, train_parts = collect_mix(task, task.train_parts, train_seed)
    heldout, heldout_parts = collect_mix(task, task.heldout_parts, heldout_seed)
    gap_train, gap_heldout = verify_true_reward(task, train), verify_true_reward(task, heldout)
    say(f"{task.key}: true formula reproduces the env reward to {max(gap_train, gap_heldout):.1e}")

    # Compile the feature kernel cold (fresh cache directory), so that fit times exclude it.
    started = time.perf_counter()
    RewardArtifact(name="features", features=features,
                   terms=[Term(f"f_{n}", n) for n in features.names]).compile()
    compile_seconds = time.perf_counter() - started
    feature_matrix(heldout, features)   # first execution (numba's thread pool starts here)

    true_fn = true_art.reward_fn()
    inputs = epic_inputs(heldout, n_eval=EPIC_EVAL, n_mean=EPIC_MEAN, seed=seed)
    canon_true = canonicalize(true_fn, **inputs)
    test_pairs = bradley_terry_preferences(heldout, heldout.rewards, TEST_PAIRS, SEGMENT_LENGTH,
                                           temperature=0.0, seed=seed + 1)
    recorder = Recorder()
    canonicalize(recorder, **inputs)
    rec_obs, rec_act, rec_next = recorder.arrays()

    result: dict[str, Any] = {
        "task": task.key, "env_id": task.env_id, "features": task.features,
        "true_reward": true_art.formula_text(), "notes": task.notes,
        "true_reward_max_abs_error": max(gap_train, gap_heldout),
        "train": data_summary(train, SEGMENT_LENGTH), "heldout": data_summary(heldout,
                                                                               SEGMENT_LENGTH),
        "train_parts": train_parts, "heldout_parts": heldout_parts,
        "true_term_shares_heldout": term_shares(task, heldout),
        "feature_compile_seconds": round(compile_seconds, 3),
        "peer_epic_evaluations": int(rec_obs.shape[0]),
        "runs": [],
    }
    checked_epic_path = False
    for pairs in pair_counts:
        prefs = bradley_terry_preferences(train, train.rewards, pairs, SEGMENT_LENGTH,
                                          temperature=TEMPERATURE, seed=seed + pairs)
        noise = label_noise(train, prefs)
        signal = pair_signal(task, train, prefs)
        labelled = train.replace(preferences=prefs, rewards=None)

        learner = SymbolicRewardLearner(objective="preferences", seed=seed,
                                        name=f"{task.key}-{pairs}")
        started, cpu = time.perf_counter(), time.process_time()
        learner.fit(labelled, features)
        fit_seconds, fit_cpu = time.perf_counter() - started, time.process_time() - cpu
        artifact = learner.artifact_
        learned_fn = artifact.reward_fn()
        try:
            epic = epic_distance(learned_fn, true_fn, heldout, discount=DISCOUNT,
                                 n_eval=EPIC_EVAL, n_mean=EPIC_MEAN, seed=seed)
        except SymrewardError:
            epic = math.nan
        if not checked_epic_path and not math.isnan(epic):
            mine = epic_from_canonical(canonicalize(learned_fn, **inputs), canon_true)
            if abs(mine - epic) > 1e-9:
                raise AssertionError(f"EPIC paths disagree: {mine} vs {epic}")
            result["epic_path_check"] = {"library": epic, "explicit_arrays": mine}
            checked_epic_path = True
        accuracy = pair_accuracy(artifact.evaluate(heldout).rewards, test_pairs)
        terms = term_metrics(task, learner, heldout)
        diagnosis = diagnose(task, learner, labelled)
        run = {"pairs": pairs, "method": "symreward", "epic": epic, "accuracy": accuracy,
               "seconds": fit_seconds, "cpu_seconds": fit_cpu,
               "load_average": os.getloadavg()[0], "formula": artifact.formula_text(),
               "label_noise": noise, "pair_signal": signal, **terms, "diagnosis": diagnosis,
               "cv_accuracy": learner.metrics_["heldout_accuracy"]}
        result["runs"].append(run)
        say(f"{task.key} {pairs:>4} pairs symreward: EPIC {fmt(epic, 4)}, acc {fmt(accuracy)}, "
            f"{fit_seconds:.2f} s, {artifact.formula_text()}")

        if use_peer:
            from peer_imitation import train_peer

            epochs = peer_epochs(pairs)
            eval_obs = np.concatenate([heldout.observations, rec_obs])
            eval_act = np.concatenate([heldout.actions, rec_act])
            eval_next = np.concatenate([heldout.next_observations, rec_next])
            started = time.perf_counter()
            peer = train_peer(train.observations, train.actions, train.next_observations,
                              prefs.a, prefs.b, prefs.label, eval_obs, eval_act, eval_next,
                              epochs=epochs, seed=seed, timeout=3600)
            wall = time.perf_counter() - started
            heldout_rewards = peer.eval_rewards[:heldout.n]
            replay = Replay(recorder, peer.eval_rewards[heldout.n:])
            canon_peer = canonicalize(replay, **inputs)
            if not replay.finished():
                raise AssertionError("replay did not consume every recorded evaluation")
            peer_epic = epic_from_canonical(canon_peer, canon_true)
            peer_acc = pair_accuracy(heldout_rewards, test_pairs)
            result["runs"].append({
                "pairs": pairs, "method": "peer", "epic": peer_epic, "accuracy": peer_acc,
                "seconds": peer.train_seconds, "wall_seconds": wall, "epochs": peer.epochs,
                "final_train_loss": peer.final_loss, "final_train_accuracy": peer.final_accuracy,
                "next_obs_mismatch": peer.n_next_obs_mismatch, "versions": peer.versions,
                "formula": f"BasicRewardNet MLP 32-32 ({epochs} epochs)"})
            say(f"{task.key} {pairs:>4} pairs peer:      EPIC {fmt(peer_epic, 4)}, acc "
                f"{fmt(peer_acc)}, {peer.train_seconds:.1f} s train ({wall:.0f} s wall)")
    return result


def run_timing(task: Task, seed: int, say: Callable[[str], None]) -> dict[str, Any]:
    """Learning time on ~100k transitions and 1000 pairs (median of a few fits, warm kernels)."""
    n_parts = math.ceil(TIMING_TRANSITIONS / task.part_steps)
    data, _ = collect_mix(task, n_parts, 1000 * seed + 900)
    prefs = bradley_terry_preferences(data, data.rewards, 1000, SEGMENT_LENGTH,
                                      temperature=TEMPERATURE, seed=seed + 3)
    labelled = data.replace(preferences=prefs, rewards=None)
    features = task.feature_set()
    feature_matrix(labelled, features)   # warm (the kernel is already compiled by run_task)
    seconds, cpu_seconds, loads, learner = [], [], [], None
    for _ in range(TIMING_REPEATS):
        learner = SymbolicRewardLearner(objective="preferences", seed=seed)
        started, cpu = time.perf_counter(), time.process_time()
        learner.fit(labelled, features)
        seconds.append(time.perf_counter() - started)
        cpu_seconds.append(time.process_time() - cpu)
        loads.append(os.getloadavg()[0])
    median = float(np.median(seconds))
    say(f"{task.key}: {data.n} transitions, 1000 pairs: fit median {median:.2f} s, min "
        f"{min(seconds):.2f} s (runs {', '.join(f'{s:.2f}' for s in seconds)})")
    return {"task": task.key, "transitions": data.n, "pairs": 1000,
            "seconds": seconds, "median_seconds": median, "min_seconds": min(seconds),
            "cpu_seconds": cpu_seconds,
            "load_average_1min": loads,
            "candidates": len(learner.candidates_),
            "formula": learner.artifact_.formula_text()}


# ---------------------------------------------------------------------------- reporting


def table(results: list[dict[str, Any]]) -> list[str]:
    header = ("| task | pairs | method | EPIC | acc | prec | rec dom | rec all | spur max | "
              "spur tot | time s | learned formula |")
    lines = [header, "|" + "---|" * 12]
    for res in results:
        for run in res["runs"]:
            sym = run["method"] == "symreward"
            cells = [res["task"], str(run["pairs"]), run["method"], fmt(run["epic"], 4),
                     fmt(run["accuracy"]),
                     fmt(run["precision"], 2) if sym else "",
                     fmt(run["recall_dominant"], 2) if sym else "",
                     fmt(run["recall_all"], 2) if sym else "",
                     fmt(run["spurious_share_max"]) if sym else "",
                     fmt(run["spurious_share_total"]) if sym else "",
                     f"{run['seconds']:.2f}" if sym else f"{run['seconds']:.1f}",
                     f"`{_short(run['formula'])}`" if sym else run["formula"]]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def diagnostics_table(results: list[dict[str, Any]]) -> list[str]:
    lines = ["| task | pairs | chosen: CV loss (terms) | true support: CV loss, proposed? | "
             "label model loss | chosen had the true supports been proposed |",
             "|" + "---|" * 6]
    for res in results:
        for run in res["runs"]:
            if run["method"] != "symreward":
                continue
            g = run["diagnosis"]
            chosen, true = g["chosen"], g["true_support"]
            lines.append(
                f"| {res['task']} | {run['pairs']} | {chosen['cv_loss']:.4f} ± "
                f"{chosen['cv_se']:.4f} ({len(chosen['terms'])}) | {true['cv_loss']:.4f} ± "
                f"{true['cv_se']:.4f}, {'yes' if true['proposed'] else 'no'} | "
                f"{fmt(g.get('true_reward_fixed_loss', math.nan), 4)} | "
                f"`{_short(g['chosen_if_true_supports_proposed'])}` |")
    return lines


def data_table(results: list[dict[str, Any]]) -> list[str]:
    lines = ["| task | train / held-out transitions (episodes) | label flips @1000 | "
             "true terms: share of per-step variance / of pair-difference variance @1000 | "
             "windows with a terminal step | compile s |", "|" + "---|" * 6]
    for res in results:
        runs = [r for r in res["runs"] if r["method"] == "symreward"]
        at = next((r for r in runs if r["pairs"] == 1000), runs[0])
        shares = ", ".join(
            f"{t}: {res['true_term_shares_heldout'][t]:.2%} / "
            f"{at['pair_signal'][t]['pair_variance_share']:.2%}"
            for t in res["true_term_shares_heldout"])
        tr, he = res["train"], res["heldout"]
        lines.append(
            f"| {res['task']} | {tr['transitions']} ({tr['episodes']}) / {he['transitions']} "
            f"({he['episodes']}) | {at['label_noise']['flip_rate']:.1%} | {shares} | "
            f"{tr['share_of_windows_with_a_terminal']:.2%} | "
            f"{res['feature_compile_seconds']:.2f} |")
    return lines


def _short(text: str) -> str:
    """Coefficients to 3 significant digits, for tables."""
    return re.sub(r"\d+\.\d{4,}(e-?\d+)?", lambda m: f"{float(m.group()):.3g}", text)


def targets(results: list[dict[str, Any]], timing: list[dict[str, Any]]) -> list[str]:
    lines = []
    for res in results:
        runs = {(r["method"], r["pairs"]): r for r in res["runs"]}
        sym, peer = runs.get(("symreward", 1000)), runs.get(("peer", 1000))
        if sym is None:
            continue
        checks = [f"EPIC {fmt(sym['epic'], 4)} <= {EPIC_TARGET}: "
                  + ("met" if sym["epic"] <= EPIC_TARGET else "MISSED"),
                  f"dominant terms recovered ({fmt(sym['recall_dominant'], 2)}) and no spurious "
                  f"term > {SPURIOUS_LIMIT:.0%} (max {fmt(sym['spurious_share_max'])}): "
                  + ("met" if sym["recall_dominant"] == 1.0
                     and sym["spurious_share_max"] <= SPURIOUS_LIMIT else "MISSED")]
        if peer is not None:
            ok = sym["epic"] <= 0.5 * peer["epic"]
            checks.append(f"EPIC <= half the peer's ({fmt(peer['epic'], 4)}): "
                          + ("met" if ok else "MISSED"))
        lines.append(f"- {res['task']} @ 1000 pairs: " + "; ".join(checks))
    for t in timing:
        ok = t["median_seconds"] < TIME_TARGET_S
        lines.append(f"- {t['task']} learning time, {t['transitions']} transitions / 1000 pairs: "
                     f"median {t['median_seconds']:.2f} s, min {t['min_seconds']:.2f} s over "
                     f"{len(t['seconds'])} fits (1-min load average "
                     f"{min(t['load_average_1min']):.1f}-{max(t['load_average_1min']):.1f}) "
                     f"< {TIME_TARGET_S:.0f} s: " + ("met" if ok else "MISSED"))
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: Pendulum only, 1000 pairs, no peer, no 100k timing")
    ap.add_argument("--no-peer", action="store_true", help="skip the neural peer")
    ap.add_argument("--no-timing", action="store_true", help="skip the 100k-transition timing")
    ap.add_argument("--tasks", default=",".join(TASKS),
                    help=f"comma-separated subset of {', '.join(TASKS)}")
    ap.add_argument("--pairs", default=",".join(map(str, PAIR_COUNTS)),
                    help="comma-separated preference-pair counts")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(OUT_DIR / "recovery.json"))
    args = ap.parse_args(argv)

    tasks = ["pendulum"] if args.quick else [t.strip() for t in args.tasks.split(",") if t]
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        ap.error(f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(TASKS)}")
    pair_counts = [1000] if args.quick else [int(p) for p in args.pairs.split(",") if p]
    use_peer = not (args.quick or args.no_peer)
    do_timing = not (args.quick or args.no_timing)

    def say(message: str) -> None:
        print(f"[{time.perf_counter() - t0:7.1f} s] {message}", flush=True)

    t0 = time.perf_counter()
    out = Path(args.out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    # MuJoCo writes its warnings (HalfCheetah/Hopper's deprecated 'settotalmass') to
    # MUJOCO_LOG.TXT in the working directory: keep that file out of the repository.
    os.chdir(out.parent)
    cache = tempfile.mkdtemp(prefix="symreward-recovery-kernels-")
    os.environ["SYMREWARD_CACHE_DIR"] = cache   # cold compiles, measured separately
    command = "/tmp/venv/bin/python benchmarks/recovery.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    try:
        results = [run_task(TASKS[t], pair_counts, args.seed, use_peer, say) for t in tasks]
        timing = [run_timing(TASKS[t], args.seed, say) for t in tasks] if do_timing else []
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    total = time.perf_counter() - t0

    meta = {"date": datetime.date.today().isoformat(), "command": command.strip(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "seed": args.seed, "total_seconds": round(total, 1),
            "segment_length": SEGMENT_LENGTH, "temperature": TEMPERATURE,
            "test_pairs": TEST_PAIRS, "dominant_share": DOMINANT_SHARE,
            "epic": {"n_eval": EPIC_EVAL, "n_mean": EPIC_MEAN, "discount": DISCOUNT},
            "peer_epochs": {str(p): peer_epochs(p) for p in pair_counts} if use_peer else None}
    out.write_text(json.dumps({"meta": meta, "tasks": results, "timing": timing}, indent=1,
                              default=_json_default))
    lines = [f"date {meta['date']}, os.cpu_count() = {meta['cpu_count']}, "
             f"total {total:.0f} s", f"command: {meta['command']}", "", *table(results), "",
             "Targets at 1000 pairs:", *targets(results, timing), "", "Data and labels:",
             "", *data_table(results), "", "Learner diagnostics (symreward's own 5-fold CV):",
             "", *diagnostics_table(results)]
    print("\n".join(lines))
    (out.with_suffix(".md")).write_text("\n".join(lines) + "\n")
    print(f"\nraw results: {out}")
    return 0


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


if __name__ == "__main__":
    sys.exit(main())
