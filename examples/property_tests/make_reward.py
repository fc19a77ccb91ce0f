"""Learns ``reacher.reward.toml``, the reward the property tests beside this script test.

    PYTHONPATH=. python examples/property_tests/make_reward.py   # from the repository root

A point on a plane moves toward a goal: ``obs = [x, y, goal_x, goal_y, wind]`` and ``act =
[dx, dy]``; the point moves by ``0.1 * act`` plus noise. ``wind`` is a reading that changes from
step to step and has nothing to do with the task. Offline data from a mix of policies (random
moves, a noisy go-to-goal controller) are labelled with preferences between segments, by
Bradley–Terry on the true reward ``-distance - 0.3 * |act|**2`` (a stand-in for a person), and
a sparse symbolic reward is learned from them over four features, one of them ``wind``. The
invariants a person would state are then added, so ``pytest`` checks them too (the symreward
plugin collects ``*.reward.toml`` files). The same seed gives the same file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from symreward.data import Dataset, bradley_terry_preferences
from symreward.learner import SymbolicRewardLearner

FEATURES = {
    "dist": "sqrt((next_obs[0] - next_obs[2])**2 + (next_obs[1] - next_obs[3])**2)",
    "a0": "act[0]",
    "a1": "act[1]",
    "wind": "obs[4]",
}
# What a person knows about this task, whatever the learned weights become.
INVARIANTS = [
    {"rule": "bounded", "hi": 0, "note": "a cost: never a reward for being somewhere"},
    {"rule": "decreasing", "of": "dist", "note": "closer to the goal is never worse"},
    {"rule": "independent", "of": "wind", "note": "the wind reading has nothing to do with it"},
]
EPISODES, STEPS = 120, 50


def reacher_dataset(seed: int) -> Dataset:
    """Episodes of the point-mass task, half driven at random and half by a noisy controller."""
    rng = np.random.default_rng(seed)
    obs, act, nxt = [], [], []
    for episode in range(EPISODES):
        position = rng.uniform(-1, 1, size=2)
        goal = rng.uniform(-1, 1, size=2)
        for _ in range(STEPS):
            if episode % 2:
                move = np.clip(3.0 * (goal - position) + rng.normal(0, 0.3, size=2), -1, 1)
            else:
                move = rng.uniform(-1, 1, size=2)
            after = position + 0.1 * move + rng.normal(0, 0.01, size=2)
            obs.append([*position, *goal, rng.normal()])
            act.append(move)
            nxt.append([*after, *goal, rng.normal()])
            position = after
    n = EPISODES * STEPS
    timeouts = np.arange(n) % STEPS == STEPS - 1
    return Dataset(np.array(obs), np.array(act), np.array(nxt), np.zeros(n, bool), timeouts,
                   source=f"point-mass reacher (seed {seed})")


def true_reward(data: Dataset) -> np.ndarray:
    distance = np.hypot(*(data.next_observations[:, :2] - data.next_observations[:, 2:4]).T)
    return -distance - 0.3 * (data.actions ** 2).sum(axis=1)


def main() -> None:
    data = reacher_dataset(seed=0)
    labels = bradley_terry_preferences(data, true_reward(data), 1500, 10, temperature=0.2,
                                       seed=0)
    learner = SymbolicRewardLearner(seed=0, name="reacher-learned")
    learner.fit(data.replace(preferences=labels), FEATURES)
    artifact = learner.artifact_
    artifact.invariants.extend(INVARIANTS)
    path = Path(__file__).with_name("reacher.reward.toml")
    artifact.save(path)
    print(f"wrote {path}: {artifact.formula_text()}")


if __name__ == "__main__":
    main()
