"""The end-to-end example behind ``symreward demo``.

Pendulum-v1 offline data from a mix of policies (random torques, a PD controller, energy
pumping), preferences between segments labelled from the environment's own reward as a
stand-in for a person's judgements, a sparse symbolic reward learned from them, compared with
the true reward on fresh held-out data, written as an artifact and evaluated.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from symreward.artifact import RewardArtifact, Term
from symreward.atomic import save_npy
from symreward.audit import epic_distance
from symreward.data import Dataset, Preferences, bradley_terry_preferences, collect
from symreward.data.oracle import return_differences
from symreward.features import FeatureSet
from symreward.learner import SymbolicRewardLearner

FEATURES = {
    "theta": "atan2(obs[1], obs[0])",
    "theta_dot": "obs[2]",
    "torque": "act[0]",
    "height": "obs[0]",
    "next_theta_dot": "next_obs[2]",
}
TRUE_TERMS = [Term("upright", "-theta**2"), Term("spin", "-0.1*theta_dot**2"),
              Term("effort", "-0.001*torque**2")]


def _random(obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(-2.0, 2.0, size=1)


def _pd(obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    theta = np.arctan2(obs[1], obs[0])
    return np.clip([-4.0 * theta - 1.0 * obs[2] + rng.normal(0, 0.3)], -2.0, 2.0)


def _energy_pumping(obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    # Push along the swing to add energy; near the top, hand over to the PD controller.
    if obs[0] > 0.8:
        return _pd(obs, rng)
    return np.array([2.0 if obs[2] * obs[0] >= 0 else -2.0]) * rng.uniform(0.5, 1.0)


POLICIES: dict[str, Callable[[np.ndarray, np.random.Generator], np.ndarray]] = {
    "random": _random, "pd": _pd, "energy": _energy_pumping}


def pendulum_dataset(steps_per_policy: int, seed: int) -> Dataset:
    """Offline Pendulum-v1 transitions, the same number from each policy."""
    parts = [collect("Pendulum-v1", policy, steps_per_policy, seed + 101 * k)
             for k, policy in enumerate(POLICIES.values())]
    return Dataset.concatenate(parts, source=f"Pendulum-v1 mixed policies (seed {seed})")


@dataclass
class DemoResult:
    artifact: RewardArtifact
    learner: SymbolicRewardLearner
    true_reward: RewardArtifact
    epic: float
    heldout_accuracy_vs_truth: float
    train_transitions: int
    pairs: int
    seconds: float
    output: Path
    rewards_path: Path


def run_demo(output_dir: str | Path, *, steps_per_policy: int = 4000, pairs: int = 1000,
             segment_length: int = 25, seed: int = 0,
             progress: Callable[[str], None] | None = None) -> DemoResult:
    """Collect, label, learn, compare with the truth, save and evaluate the artifact."""
    say = progress or (lambda message: None)
    started = time.perf_counter()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    features = FeatureSet(FEATURES, source="demo features")
    true_reward = RewardArtifact(name="pendulum-v1-true", features=features, terms=TRUE_TERMS)

    say(f"collecting {3 * steps_per_policy} Pendulum-v1 transitions from random, PD and "
        "energy-pumping policies")
    train = pendulum_dataset(steps_per_policy, seed)
    say(f"labelling {pairs} segment pairs (length {segment_length}) with the environment's "
        "reward, Bradley-Terry")
    labels = bradley_terry_preferences(train, train.rewards, pairs, segment_length, seed=seed)
    train = train.replace(preferences=labels)

    learner = SymbolicRewardLearner(objective="preferences", seed=seed, name="pendulum-learned",
                                    progress=say)
    learner.fit(train, features)
    artifact = learner.artifact_
    path = output_dir / "reward.toml"
    artifact.save(path)

    say("comparing with the true reward on fresh held-out data")
    heldout = pendulum_dataset(steps_per_policy // 2, seed + 7919)
    learned_fn, true_fn = artifact.batch_reward(), true_reward.batch_reward()
    epic = epic_distance(learned_fn, true_fn, heldout, seed=seed)
    test_pairs = bradley_terry_preferences(heldout, heldout.rewards, 2000, segment_length,
                                           temperature=0.0, seed=seed + 1)
    accuracy = _pair_accuracy(artifact.evaluate(heldout).rewards, test_pairs)

    rewards_path = output_dir / "rewards.npy"
    save_npy(rewards_path, artifact.evaluate(train).rewards)
    return DemoResult(artifact, learner, true_reward, epic, accuracy, train.n, pairs,
                      time.perf_counter() - started, path, rewards_path)


def _pair_accuracy(rewards: np.ndarray, pairs: Preferences) -> float:
    difference = return_differences(rewards, pairs)
    decided = pairs.label != 0.5
    return float(np.mean((difference[decided] > 0) == (pairs.label[decided] > 0.5)))
