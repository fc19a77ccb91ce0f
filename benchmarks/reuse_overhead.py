"""Benchmark of the gymnasium wrappers' cost (a script, not a test).

    PYTHONPATH=. python benchmarks/reuse_overhead.py [--steps 1000] [--rounds 21] [--envs 16 256]

Measures, side by side in one run:

- single environment: a bare ``env.step`` against the same step through
  ``ArtifactRewardWrapper`` (the reward by the single-transition kernel), on Pendulum-v1 and on
  a still environment whose step costs almost nothing (so the wrapper's own cost stands out of
  the environment's noise). Target: the wrapper adds < 3 µs per step.
- vector environment: a bare ``SyncVectorEnv.step`` against the same step through
  ``ArtifactRewardVectorWrapper`` (the rewards by one batch-kernel call), for each ``--envs``
  count, on Pendulum-v1 and on a still vector environment that only returns arrays it holds;
  and the raw batch kernel on a table of that many rows, and on 1M rows (its throughput).

The machine may be shared and noisy: each round times every variant once, in turn, so all see
the same background load; the best rounds are compared, and the median of the rounds'
differences (wrapped less bare, timed back to back) is printed too. The reward is
Pendulum's own (angle, angular velocity, torque).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.vector import SyncVectorEnv, VectorEnv
from gymnasium.vector.utils import batch_space

from symreward import RewardArtifact
from symreward.gym import ArtifactRewardVectorWrapper, ArtifactRewardWrapper

PENDULUM = """
schema = "symreward/1"
name = "pendulum"

[features]
theta = "atan2(obs[1], obs[0])"
theta_dot = "obs[2]"
torque = "act[0]"

[[terms]]
name = "upright"
expr = "-theta**2"

[[terms]]
name = "spin"
expr = "-0.1 * theta_dot**2"

[[terms]]
name = "effort"
expr = "-0.001 * torque**2"
"""


class StillEnv(gymnasium.Env):
    """Pendulum's spaces and an observation that never changes: a step costs about a µs."""

    observation_space = spaces.Box(-8.0, 8.0, shape=(3,), dtype=np.float32)
    action_space = spaces.Box(-2.0, 2.0, shape=(1,), dtype=np.float32)

    def __init__(self) -> None:
        self._obs = np.array([1.0, 0.0, 0.0], dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        return self._obs, {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        return self._obs, -1.0, False, False, {}


class StillVectorEnv(VectorEnv):
    """``n`` still environments as one vector environment whose step only returns arrays it
    holds: what remains of a wrapped step is the wrapper's own cost."""

    metadata: dict[str, Any] = {"autoreset_mode": "NextStep"}  # noqa: RUF012 - as gymnasium's

    def __init__(self, n: int) -> None:
        self.num_envs = n
        self.single_observation_space = StillEnv.observation_space
        self.single_action_space = StillEnv.action_space
        self.observation_space = batch_space(self.single_observation_space, n)
        self.action_space = batch_space(self.single_action_space, n)
        self._obs = np.tile(np.array([1.0, 0.0, 0.0], dtype=np.float32), (n, 1))
        self._rewards, self._flags = np.full(n, -1.0), np.zeros(n, dtype=bool)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[np.ndarray, dict[str, Any]]:
        return self._obs.copy(), {}

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                          dict[str, Any]]:
        return self._obs.copy(), self._rewards.copy(), self._flags, self._flags, {}


def per_call(run: Callable[[], None], calls: int) -> float:
    start = time.perf_counter()
    run()
    return (time.perf_counter() - start) / calls * 1e6


def stepper(env: Any, actions: list[Any]) -> Callable[[], None]:
    def run() -> None:
        env.reset(seed=0)
        step = env.step
        for action in actions:
            step(action)
    return run


def compare(variants: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Each variant timed once per round, in turn; µs per call of every round."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, measure in variants.items():
            times[name].append(measure())
    return times


def show(times: dict[str, list[float]], unit: str) -> None:
    for name, values in times.items():
        print(f"  {name:<34} best {min(values):9.3f} {unit}   median "
              f"{statistics.median(values):9.3f} {unit}")


def vector_section(artifact: RewardArtifact, n_envs: int, steps: int, rounds: int,
                   rng: np.random.Generator) -> None:
    """Bare and wrapped ``SyncVectorEnv`` steps, and the batch kernel on as many rows."""
    kernels = artifact.compile()
    steps = max(20, steps // n_envs)
    batch = [rng.uniform(-2, 2, size=(n_envs, 1)).astype(np.float32) for _ in range(steps)]
    obs, act = rng.normal(size=(n_envs, 3)), rng.normal(size=(n_envs, 1))

    def kernel_calls() -> None:
        for _ in range(steps):
            kernels.rewards(obs, act, obs)

    print(f"\nvector environment, {n_envs} sub-environments, µs per vector step ({steps} "
          f"steps a round):")
    makers = {"Pendulum-v1": lambda: SyncVectorEnv([lambda: gymnasium.make("Pendulum-v1")
                                                     for _ in range(n_envs)]),
              "still": lambda: StillVectorEnv(n_envs)}
    for label, make in makers.items():
        bare, wrapped = make(), ArtifactRewardVectorWrapper(make(), artifact)
        stepper(wrapped, batch[:3])()
        times = compare({
            f"{label} bare": lambda b=bare: per_call(stepper(b, batch), steps),
            f"{label} wrapped": lambda w=wrapped: per_call(stepper(w, batch), steps),
            f"batch kernel, {n_envs} rows": lambda: per_call(kernel_calls, steps),
        }, rounds)
        show(times, "µs")
        added = min(times[f"{label} wrapped"]) - min(times[f"{label} bare"])
        paired = statistics.median(w - b for w, b in zip(times[f"{label} wrapped"],
                                                         times[f"{label} bare"], strict=True))
        kernel = min(times[f"batch kernel, {n_envs} rows"])
        print(f"  {label}: the wrapper adds {added:.2f} µs per vector step, best rounds "
              f"({added / n_envs * 1e3:.0f} ns per transition; {paired:.2f} µs, median of the "
              f"rounds' differences); the batch kernel's call on {n_envs} rows is "
              f"{kernel:.2f} µs of it")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1000, help="steps per round")
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--envs", type=int, nargs="+", default=[16, 256],
                        help="sub-environment counts of the vector runs")
    args = parser.parse_args(argv)
    artifact = RewardArtifact.loads(PENDULUM, source="pendulum.toml")
    kernels = artifact.compile()
    rng = np.random.default_rng(0)
    actions = [rng.uniform(-2, 2, size=1).astype(np.float32) for _ in range(args.steps)]
    print(f"command: PYTHONPATH=. {sys.executable} benchmarks/reuse_overhead.py "
          f"--steps {args.steps} --rounds {args.rounds} --envs {' '.join(map(str, args.envs))}")
    print(f"gymnasium {gymnasium.__version__}; reward {artifact.formula_text()}")

    print(f"\nsingle environment, µs per step ({args.steps} steps a round, best of "
          f"{args.rounds} rounds):")
    for label, make in (("Pendulum-v1", lambda: gymnasium.make("Pendulum-v1")),
                        ("still", StillEnv)):
        bare, wrapped = make(), ArtifactRewardWrapper(make(), artifact)
        stepper(wrapped, actions[:10])()  # compiled and warm before timing
        times = compare({f"{label} bare": lambda b=bare: per_call(stepper(b, actions),
                                                                 args.steps),
                         f"{label} wrapped": lambda w=wrapped: per_call(stepper(w, actions),
                                                                       args.steps)},
                        args.rounds)
        show(times, "µs")
        best = min(times[f"{label} wrapped"]) - min(times[f"{label} bare"])
        paired = statistics.median(w - b for w, b in zip(times[f"{label} wrapped"],
                                                         times[f"{label} bare"], strict=True))
        print(f"  {label}: the wrapper adds {best:.3f} µs per step (best rounds), "
              f"{paired:.3f} µs (median of the rounds' differences); target < 3 µs")

    for n_envs in args.envs:
        vector_section(artifact, n_envs, args.steps, args.rounds, rng)

    rows = 1_000_000
    obs, act = rng.normal(size=(rows, 3)), rng.normal(size=(rows, 1))
    kernels.rewards(obs, act, obs)
    times = compare({"batch kernel, 1M rows": lambda: per_call(
        lambda: kernels.rewards(obs, act, obs), 1)}, args.rounds)
    print(f"\nbatch kernel throughput: {min(times['batch kernel, 1M rows']) / rows * 1e3:.1f} "
          f"ns per row on {rows} rows (best of {args.rounds})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
