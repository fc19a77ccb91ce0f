"""Reuse benchmark: policies trained on learned rewards.

Does a reward learned offline train a policy as well as the true reward does? Two tasks with
the environment's own reward as the truth, three rewards, two policy learners, three seeds:

* **Tasks.** Pendulum-v1, and Reacher-v5 as the MuJoCo task: its policy trains in minutes
  (``--quick`` prints the measured steps per second), its 50-step episodes have no early
  termination (nor have Pendulum's 200), so the constant per-step offset that preferences
  between equally long segments cannot identify changes no policy's ranking, and its reward is
  a formula over the transition: gymnasium's ``reward_dist`` is minus the fingertip-to-target
  distance after the step, ``next_obs[8:10]`` (the z offset is 0), ``reward_ctrl`` minus the
  squared action (weights 1 in v5); the true formula is checked against the environment's
  reward on every collected transition. Hopper and HalfCheetah need ~1M steps of SAC.
* **Rewards.** ``true``: the environment's. ``symbolic``: ``SymbolicRewardLearner`` (default
  options, objective ``preferences``) on 1000 Bradley-Terry pairs of 25-step windows labelled
  from the environment's reward at temperature 1 (as ``symreward demo`` labels), offline data
  from ``recovery.py``'s policy mix for the task (30 x 1000 steps) and its features (the true
  reward's plus distractors), applied with ``symreward.gym.ArtifactRewardWrapper``.
  ``neural``: the ``imitation`` peer of ``recovery.py`` (``BasicRewardNet``, 50 epochs) on the
  same pairs, its net evaluated in numpy (``peer_imitation.RewardMLP``, checked against the
  peer's own predictions on the held-out transitions) by :class:`NeuralRewardWrapper`. No
  environment interaction goes into either learned reward.
* **Learners.** stable-baselines3 SAC and PPO with rl-zoo3's tuned hyperparameters where the
  zoo has them (``LEARNERS`` says which entry), 3 seeds each, the same number of environment
  steps for every reward of a (task, learner).
* **Metric.** Each trained policy's return under the *true* reward, mean of 20 evaluation
  episodes (fixed reset seeds, deterministic actions), normalised per (task, learner): 0 is a
  uniform random policy on the same episodes, 1 the mean over seeds of the policies trained on
  the true reward with the same learner. Reported as mean +- sample std over the seeds. For
  scale, where a policy that always outputs action 0 lands is printed too (on Reacher about
  0.82: the random policy pays the torque cost, so most of the scale is merely not moving).
* **Cost.** Each run's training wall time (``model.learn``) and the share of it spent in the
  reward: the time inside the reward wrapper's ``step`` less the time inside the environment's
  own ``step`` (two clocks around the wrapper), over the wall time. The true reward is computed
  inside the environment's step, so it has no share of its own.

One training run per process, ``torch.set_num_threads(1)`` and one thread for BLAS and numba,
``--jobs`` processes at a time (default 2, one per core). ``--quick`` proves the pipeline with
tiny budgets and one seed in a few minutes (2 min here); the full run took 65 min on the shared
2-core machine (load ~2, its own two processes). Results go to ``benchmarks/.out/reuse.json`` (the
learned artifacts and nets beside it, in ``benchmarks/.out/reuse/``); the command, the machine
and the measured figures are printed. Needs the ``bench`` extra (stable-baselines3, with
``torch==2.13.0`` installed first) and the peer's venv (``peer_imitation.ensure_peer_venv``).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import math
import multiprocessing
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np

HERE = Path(__file__).resolve().parent
OUT_DIR = HERE / ".out"
sys.path.insert(0, str(HERE))

from peer_imitation import RewardMLP, train_peer  # noqa: E402
from recovery import (  # noqa: E402
    REACHER_FAMILIES,
    TASKS,
    Task,
    collect_mix,
    label_noise,
    pair_accuracy,
    verify_true_reward,
)

from symreward.artifact import RewardArtifact  # noqa: E402
from symreward.atomic import atomic_write_text  # noqa: E402
from symreward.data import bradley_terry_preferences  # noqa: E402
from symreward.learner import SymbolicRewardLearner  # noqa: E402

# ---------------------------------------------------------------------------- settings

PAIRS = 1000
SEGMENT_LENGTH = 25
TEMPERATURE = 1.0            # Bradley-Terry temperature in the env's reward units (as the demo)
TEST_PAIRS = 2000            # noiseless held-out pairs: how well each reward orders segments
PEER_EPOCHS = 50             # imitation's default, as in recovery.py
SEEDS = (0, 1, 2)
EVAL_EPISODES = 20
EVAL_SEED = 10_000           # evaluation episode i resets with EVAL_SEED + i, for every policy
REWARDS = ("true", "symbolic", "neural")
TARGET = 0.9                 # symbolic >= 0.9 normalised, and >= neural

# ---------------------------------------------------------------------------- tasks

REACHER = Task(
    "reacher", "Reacher-v5",
    {"dist": "sqrt(next_obs[8]**2 + next_obs[9]**2)",
     "joint_speed": "max(abs(next_obs[6]), abs(next_obs[7]))",
     "ctrl": "act[0]**2 + act[1]**2",
     "dx": "next_obs[8]", "shoulder_vel": "next_obs[6]", "elbow_cos": "next_obs[1]",
     "shoulder_torque": "act[0]"},
    [(-1.0, "dist"), (-1.0, "ctrl")],
    REACHER_FAMILIES, part_steps=1000, train_parts=30, heldout_parts=15, tolerance=1e-9,
    notes="the environment's own reward: -|fingertip - target| after the step (next_obs[8:10]; "
          "the z offset is 0) - |action|**2; recovery.py's reacher-gate features and policies")


@dataclass(frozen=True)
class Learner:
    """An SB3 algorithm with its hyperparameters for one task, where they come from, and the
    step budgets (full run, ``--quick``)."""

    algo: str                       # "sac" or "ppo"
    steps: int
    quick_steps: int
    source: str                     # which rl-zoo3 entry (or none) the hyperparameters are
    kwargs: dict[str, Any] = field(default_factory=dict)
    n_envs: int = 1
    normalize: bool = False         # VecNormalize (obs and reward; gamma = the algorithm's)


ZOO = "rl-baselines3-zoo hyperparams"
LEARNERS: dict[str, dict[str, Learner]] = {
    "pendulum": {
        "sac": Learner("sac", 10_000, 500, f"{ZOO}/sac.yml Pendulum-v1 (n_timesteps 2e4)",
                       {"learning_rate": 1e-3}),
        "ppo": Learner("ppo", 100_000, 4_096, f"{ZOO}/ppo.yml Pendulum-v1 (n_timesteps 1e5)",
                       {"n_steps": 1024, "gae_lambda": 0.95, "gamma": 0.9, "n_epochs": 10,
                        "ent_coef": 0.0, "learning_rate": 1e-3, "clip_range": 0.2,
                        "use_sde": True, "sde_sample_freq": 4}, n_envs=4),
    },
    "reacher": {
        "sac": Learner("sac", 20_000, 500,
                       f"{ZOO}/sac.yml has no Reacher entry: its 'default' (SB3's defaults)"),
        "ppo": Learner("ppo", 200_000, 2_048, f"{ZOO}/ppo.yml Reacher-v2 (n_timesteps 1e6)",
                       {"batch_size": 32, "n_steps": 512, "gamma": 0.9,
                        "learning_rate": 0.000104019, "ent_coef": 7.52585e-08,
                        "clip_range": 0.3, "n_epochs": 5, "gae_lambda": 1.0,
                        "max_grad_norm": 0.9, "vf_coef": 0.950368}, normalize=True),
    },
}
REUSE_TASKS: dict[str, Task] = {"pendulum": TASKS["pendulum"], "reacher": REACHER}

# Wall seconds per environment step of training for the printed estimate: one process with
# one torch thread on the shared 2-core project machine at a load of 1-3 (SAC 16 ms: a gradient
# step of three 256x256 MLPs per environment step; PPO 1.1-1.4 ms). Two runs at a time, each
# on a core of its own, should go at about this speed; on a loaded machine both go slower
# (SAC 60-70 ms at a load of 4).
STEP_SECONDS = {"sac": 0.016, "ppo": 0.0013}
PREPARE_SECONDS = 150        # per task: data, the symbolic fit, the peer (50 epochs)


# ---------------------------------------------------------------------------- pure pieces


def normalised(returns: Sequence[float] | np.ndarray, random_return: float,
               reference_return: float) -> np.ndarray:
    """Returns on the scale where ``random_return`` is 0 and ``reference_return`` is 1."""
    span = reference_return - random_return
    if not span > 0:
        raise ValueError(f"the reference return {reference_return} does not beat the random "
                         f"policy's {random_return}: nothing to normalise by")
    return (np.asarray(returns, dtype=float) - random_return) / span


def mean_std(values: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof 1; NaN for a single value)."""
    values = np.asarray(values, dtype=float)
    if values.size == 0:
        return math.nan, math.nan
    return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else math.nan


def summarise(runs: list[dict[str, Any]], random_returns: dict[str, float],
              still_returns: dict[str, float] | None = None) -> list[dict[str, Any]]:
    """One row per (task, algo, reward) over the seeds that finished: raw and normalised
    returns (reference: the true reward's mean return with the same algo), training time and
    the reward's share; with ``still_returns`` (a task's zero-action policy), where that policy
    lands on the same scale. A (task, algo) whose true-reward runs all failed gets no
    normalised figures (NaN)."""
    done = [r for r in runs if "error" not in r]
    rows = []
    for task, algo in sorted({(r["task"], r["algo"]) for r in runs}):
        reference = [r["mean_return"] for r in done
                     if (r["task"], r["algo"], r["reward"]) == (task, algo, "true")]
        ref = float(np.mean(reference)) if reference else math.nan
        for reward in REWARDS:
            mine = sorted((r for r in done if (r["task"], r["algo"], r["reward"]) ==
                           (task, algo, reward)), key=lambda r: r["seed"])
            planned = sum(1 for r in runs if (r["task"], r["algo"], r["reward"]) ==
                          (task, algo, reward))
            if planned == 0:
                continue
            returns = [r["mean_return"] for r in mine]
            scale_ok = ref > random_returns[task]
            norm = (normalised(returns, random_returns[task], ref) if mine and scale_ok
                    else np.full(len(mine), math.nan))
            still = (float(normalised([still_returns[task]], random_returns[task], ref)[0])
                     if still_returns is not None and scale_ok else math.nan)
            shares = [r["reward_share"] for r in mine if r["reward_share"] is not None]
            rows.append({
                "task": task, "algo": algo, "reward": reward, "seeds": [r["seed"] for r in mine],
                "failed": planned - len(mine), "returns": returns,
                "return_mean_std": mean_std(returns), "normalised": norm.tolist(),
                "normalised_mean_std": mean_std(norm),
                "random_return": random_returns[task], "reference_return": ref,
                "zero_action_normalised": still,
                "learn_seconds_mean": mean_std([r["learn_seconds"] for r in mine])[0],
                "reward_share_mean": mean_std(shares)[0] if shares else None,
                "reward_us_per_step_mean": (mean_std([r["reward_us_per_step"] for r in mine])[0]
                                            if shares else None)})
    return rows


def target_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Per (task, algo): symbolic >= TARGET normalised and >= neural (means over seeds)."""
    lines = []
    by_key = {(r["task"], r["algo"], r["reward"]): r for r in rows}
    for task, algo in sorted({(r["task"], r["algo"]) for r in rows}):
        sym = by_key.get((task, algo, "symbolic"))
        neu = by_key.get((task, algo, "neural"))
        if sym is None:
            continue
        s = sym["normalised_mean_std"][0]
        n = neu["normalised_mean_std"][0] if neu else math.nan
        # Without a neural figure the comparison cannot be made, and the target is not met.
        met = s >= TARGET and s >= n
        versus = (f"neural {fmt_ms(neu['normalised_mean_std'], 4)}, symbolic - neural "
                  f"{s - n:+.4f} (>= 0: {_yes(s >= n)})" if not math.isnan(n)
                  else "no neural figure")
        # Four digits and the seeds' spread: a difference far inside it is a tie in all
        # but the letter, and the reader should see that rather than the word alone.
        lines.append(f"- {task} {algo}: symbolic {fmt_ms(sym['normalised_mean_std'], 4)} "
                     f"(>= {TARGET}: {_yes(s >= TARGET)}), {versus}: "
                     f"{'MET' if met else 'MISSED'}")
    return lines


def _yes(ok: bool) -> str:
    return "yes" if ok else "no"


# ---------------------------------------------------------------------------- wrappers


class StepClock(gymnasium.Wrapper):
    """Adds up the wall time spent inside the wrapped environment's ``step``."""

    def __init__(self, env: gymnasium.Env):
        super().__init__(env)
        self.seconds = 0.0
        self.steps = 0

    def step(self, action: Any) -> Any:
        started = time.perf_counter()
        out = self.env.step(action)
        self.seconds += time.perf_counter() - started
        self.steps += 1
        return out


class NeuralRewardWrapper(gymnasium.Wrapper):
    """The neural reward in place of the environment's, as ``ArtifactRewardWrapper`` does for
    an artifact: the reward of ``(obs, action, next_obs)`` from the peer's net, the
    environment's own reward kept in ``info["original_reward"]``."""

    def __init__(self, env: gymnasium.Env, net: RewardMLP):
        super().__init__(env)
        self.net = net
        self._obs: np.ndarray | None = None

    def reset(self, **kwargs: Any) -> Any:
        obs, info = self.env.reset(**kwargs)
        self._obs = np.asarray(obs)
        return obs, info

    def step(self, action: Any) -> Any:
        if self._obs is None:
            raise RuntimeError("step before reset")
        obs, reward, terminated, truncated, info = self.env.step(action)
        next_obs = np.asarray(obs)
        learned = self.net(self._obs[None], np.asarray(action)[None], next_obs[None])[0]
        self._obs = next_obs
        info["original_reward"] = reward
        return obs, float(learned), terminated, truncated, info


# ---------------------------------------------------------------------------- one run


@dataclass(frozen=True)
class Job:
    """One policy training run: what a worker process needs (plain values, picklable)."""

    task: str
    env_id: str
    algo: str
    reward: str
    seed: int
    steps: int
    eval_episodes: int
    reward_path: str | None        # the artifact (symbolic) or the net (neural)


def reward_wrapper(job: Job) -> Callable[[gymnasium.Env], gymnasium.Env] | None:
    if job.reward == "true":
        return None
    if job.reward == "symbolic":
        from symreward.gym import ArtifactRewardWrapper

        artifact = RewardArtifact.load(job.reward_path)
        return lambda env: ArtifactRewardWrapper(env, artifact)
    if job.reward == "neural":
        net = RewardMLP.load(job.reward_path)
        return lambda env: NeuralRewardWrapper(env, net)
    raise ValueError(f"unknown reward {job.reward!r}")


def episode_returns(env_id: str, act: Callable[[np.ndarray], np.ndarray], episodes: int,
                    seed: int = EVAL_SEED) -> np.ndarray:
    """True-reward returns of ``act`` on ``episodes`` episodes reset with ``seed + i``."""
    env = gymnasium.make(env_id)
    returns = []
    try:
        for i in range(episodes):
            obs, _ = env.reset(seed=seed + i)
            total, done = 0.0, False
            while not done:
                obs, reward, terminated, truncated, _ = env.step(act(obs))
                total += float(reward)
                done = terminated or truncated
            returns.append(total)
    finally:
        env.close()
    return np.array(returns)


def random_returns(env_id: str, episodes: int, seed: int = EVAL_SEED) -> np.ndarray:
    """The uniform random policy (the action space's sampler, seeded) on the evaluation
    episodes: the 0 of the normalised scale."""
    space = gymnasium.make(env_id).action_space
    space.seed(seed)
    return episode_returns(env_id, lambda obs: space.sample(), episodes, seed)


def zero_action_returns(env_id: str, episodes: int, seed: int = EVAL_SEED) -> np.ndarray:
    """A policy that does nothing (action 0) on the evaluation episodes. Not part of the
    metric: it shows how much of the random-to-trained scale merely sitting still earns
    (on Reacher, most of it: the random policy pays the torque cost)."""
    space = gymnasium.make(env_id).action_space
    still = np.zeros(space.shape, dtype=space.dtype)
    return episode_returns(env_id, lambda obs: still, episodes, seed)


def run_job(job: Job) -> dict[str, Any]:
    """Train one policy and evaluate it under the true reward (runs in a worker process)."""
    import torch
    from stable_baselines3 import PPO, SAC
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    torch.set_num_threads(1)
    learner = LEARNERS[job.task][job.algo]
    wrap = reward_wrapper(job)
    clocks: list[tuple[StepClock, StepClock]] = []

    def make_env() -> gymnasium.Env:
        inner = StepClock(gymnasium.make(job.env_id))
        outer = StepClock(wrap(inner) if wrap is not None else inner)
        clocks.append((inner, outer))
        return outer

    venv = make_vec_env(make_env, n_envs=learner.n_envs, seed=job.seed)
    if learner.normalize:
        venv = VecNormalize(venv, gamma=learner.kwargs.get("gamma", 0.99))
    algorithm = {"sac": SAC, "ppo": PPO}[job.algo]
    model = algorithm("MlpPolicy", venv, seed=job.seed, verbose=0, device="cpu",
                      **learner.kwargs)
    started = time.perf_counter()
    model.learn(total_timesteps=job.steps)
    learn_seconds = time.perf_counter() - started
    env_steps = sum(inner.steps for inner, _ in clocks)
    env_seconds = sum(inner.seconds for inner, _ in clocks)
    wrapped_seconds = sum(outer.seconds for _, outer in clocks)
    reward_seconds = wrapped_seconds - env_seconds if wrap is not None else None

    if learner.normalize:
        venv.training = False
        normalize = venv.normalize_obs
    else:
        def normalize(obs: np.ndarray) -> np.ndarray:
            return obs

    def act(obs: np.ndarray) -> np.ndarray:
        return model.predict(normalize(obs), deterministic=True)[0]

    started = time.perf_counter()
    returns = episode_returns(job.env_id, act, job.eval_episodes)
    return {**asdict(job), "env_steps": env_steps, "learn_seconds": learn_seconds,
            "steps_per_second": env_steps / learn_seconds,
            "env_seconds": env_seconds, "reward_seconds": reward_seconds,
            "reward_share": None if reward_seconds is None else reward_seconds / learn_seconds,
            "reward_us_per_step": (None if reward_seconds is None
                                   else 1e6 * reward_seconds / env_steps),
            "eval_seconds": time.perf_counter() - started, "returns": returns.tolist(),
            "mean_return": float(returns.mean())}


def run_jobs(jobs: list[Job], n_parallel: int, say: Callable[[str], None],
             on_result: Callable[[list[dict[str, Any]]], None] | None = None
             ) -> list[dict[str, Any]]:
    """Every job, ``n_parallel`` worker processes at a time (spawned, one run each, so that
    no state leaks from one run into the next); a failing run is recorded, not raised.
    ``on_result`` gets the results so far after each run."""
    results: list[dict[str, Any]] = []
    # One thread per run (the runs go in parallel, one per core), set before the workers
    # start: a spawned worker imports numpy (and so its BLAS) before any initializer runs.
    os.environ.update(dict.fromkeys(("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                     "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"), "1"))
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=n_parallel, mp_context=context,
                                                max_tasks_per_child=1) as pool:
        futures = {pool.submit(run_job, job): job for job in jobs}
        for future in concurrent.futures.as_completed(futures):
            job = futures[future]
            label = f"{job.task} {job.algo} {job.reward} seed {job.seed}"
            try:
                run = future.result()
            except Exception as error:  # recorded as a failure of this run; the rest go on
                run = {**asdict(job), "error": {"type": type(error).__name__,
                                                "message": str(error),
                                                "traceback": traceback.format_exc()}}
                say(f"{label}: FAILED: {type(error).__name__}: {error}")
            else:
                share = ("" if run["reward_share"] is None else
                         f", reward {run['reward_us_per_step']:.1f} us/step "
                         f"({run['reward_share']:.1%} of training)")
                say(f"{label}: true return {run['mean_return']:.2f} "
                    f"({job.eval_episodes}-episode mean), "
                    f"{run['learn_seconds']:.0f} s training, "
                    f"{run['steps_per_second']:.0f} steps/s{share}")
            results.append(run)
            if on_result is not None:
                on_result(results)
    return results


# ---------------------------------------------------------------------------- rewards


def learn_rewards(key: str, seed: int, out_dir: Path, peer_epochs: int, eval_episodes: int,
                  say: Callable[[str], None]) -> dict[str, Any]:
    """The task's offline data and pairs, the symbolic artifact and the peer's net (saved in
    ``out_dir``), how well each orders held-out segments, and the random policy's returns."""
    task = REUSE_TASKS[key]
    say(f"{key}: collecting {task.train_parts} x {task.part_steps} training and "
        f"{task.heldout_parts} x {task.part_steps} held-out transitions")
    train, parts = collect_mix(task, task.train_parts, 1000 * seed + 1)
    heldout, _ = collect_mix(task, task.heldout_parts, 1000 * seed + 500)
    gap = max(verify_true_reward(task, train), verify_true_reward(task, heldout))
    prefs = bradley_terry_preferences(train, train.rewards, PAIRS, SEGMENT_LENGTH,
                                      temperature=TEMPERATURE, seed=seed)
    noise = label_noise(train, prefs, TEMPERATURE)
    say(f"{key}: true formula = env reward to {gap:.1e}; {PAIRS} pairs, label flips "
        f"{noise['flip_rate']:.1%}")

    learner = SymbolicRewardLearner(objective="preferences", seed=seed, name=f"{key}-reuse")
    started = time.perf_counter()
    learner.fit(train.replace(preferences=prefs, rewards=None), task.feature_set())
    fit_seconds = time.perf_counter() - started
    artifact = learner.artifact_
    artifact_path = out_dir / f"{key}-symbolic.toml"
    artifact.save(artifact_path)
    say(f"{key}: symbolic reward in {fit_seconds:.1f} s: {artifact.formula_text()}")

    peer = train_peer(train.observations, train.actions, train.next_observations, prefs.a,
                      prefs.b, prefs.label, heldout.observations, heldout.actions,
                      heldout.next_observations, epochs=peer_epochs, seed=seed, timeout=3600)
    assert peer.net is not None
    numpy_rewards = peer.net(heldout.observations, heldout.actions, heldout.next_observations)
    net_gap = float(np.max(np.abs(numpy_rewards - peer.eval_rewards)))
    net_scale = float(np.max(np.abs(peer.eval_rewards)))
    if net_gap > 1e-5 * max(net_scale, 1.0):
        raise AssertionError(f"{key}: the net in numpy differs from the peer's own predictions "
                             f"by {net_gap:g} (rewards up to {net_scale:g})")
    net_path = out_dir / f"{key}-neural.npz"
    peer.net.save(net_path)
    say(f"{key}: neural reward in {peer.train_seconds:.1f} s ({peer_epochs} epochs); in numpy "
        f"it matches the peer's predictions to {net_gap:.1e} on {heldout.n} held-out transitions")

    test_pairs = bradley_terry_preferences(heldout, heldout.rewards, TEST_PAIRS, SEGMENT_LENGTH,
                                           temperature=0.0, seed=seed + 1)
    accuracy = {"true": pair_accuracy(heldout.rewards, test_pairs),
                "symbolic": pair_accuracy(artifact.evaluate(heldout).rewards, test_pairs),
                "neural": pair_accuracy(peer.eval_rewards, test_pairs)}
    baseline = random_returns(task.env_id, eval_episodes)
    still = zero_action_returns(task.env_id, eval_episodes)
    say(f"{key}: held-out pair accuracy symbolic {accuracy['symbolic']:.3f}, neural "
        f"{accuracy['neural']:.3f}; return of the random policy {baseline.mean():.2f}, of "
        f"the zero-action policy {still.mean():.2f}")
    return {
        "task": key, "env_id": task.env_id, "features": task.features,
        "true_reward": task.true_artifact().formula_text(), "notes": task.notes,
        "true_reward_max_abs_error": gap, "train_transitions": train.n,
        "heldout_transitions": heldout.n, "parts": parts, "pairs": PAIRS,
        "segment_length": SEGMENT_LENGTH, "temperature": TEMPERATURE, "label_noise": noise,
        "symbolic": {"formula": artifact.formula_text(), "fit_seconds": fit_seconds,
                     "path": str(artifact_path)},
        "neural": {"train_seconds": peer.train_seconds, "epochs": peer.epochs,
                   "final_loss": peer.final_loss, "final_accuracy": peer.final_accuracy,
                   "next_obs_mismatch": peer.n_next_obs_mismatch, "versions": peer.versions,
                   "numpy_vs_peer_max_abs_diff": net_gap, "max_abs_reward": net_scale,
                   "layers": [list(w.shape) for w in peer.net.weights], "path": str(net_path)},
        "heldout_pair_accuracy": accuracy, "test_pairs": TEST_PAIRS,
        "random_returns": baseline.tolist(), "random_return": float(baseline.mean()),
        "zero_action_returns": still.tolist(), "zero_action_return": float(still.mean()),
    }


# ---------------------------------------------------------------------------- report


def fmt_ms(pair: tuple[float, float], digits: int = 3) -> str:
    mean, std = pair
    if math.isnan(mean):
        return "-"
    return f"{mean:.{digits}f}" + ("" if math.isnan(std) else f" ± {std:.{digits}f}")


def result_table(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| task | learner | reward | seeds | true return | normalised | training s | "
             "reward share | reward µs/step |", "|" + "---|" * 9]
    for r in rows:
        share = "-" if r["reward_share_mean"] is None else f"{r['reward_share_mean']:.1%}"
        per_step = ("-" if r["reward_us_per_step_mean"] is None
                    else f"{r['reward_us_per_step_mean']:.1f}")
        seeds = f"{len(r['seeds'])}" + (f" ({r['failed']} FAILED)" if r["failed"] else "")
        lines.append(f"| {r['task']} | {r['algo']} | {r['reward']} | {seeds} | "
                     f"{fmt_ms(r['return_mean_std'], 2)} | {fmt_ms(r['normalised_mean_std'])} | "
                     f"{r['learn_seconds_mean']:.0f} | {share} | {per_step} |")
    return lines


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next((line.split(":", 1)[1].strip() for line in info
                        if line.startswith("model name")), cpu)
    except OSError:
        pass
    versions = {}
    for name in ("torch", "stable_baselines3", "gymnasium", "mujoco", "numpy", "numba"):
        try:
            versions[name] = __import__(name).__version__
        except Exception:  # a missing optional package is reported as such
            versions[name] = None
    from symreward import __version__

    versions["symreward"] = __version__
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "versions": versions}


def estimate_seconds(tasks: list[str], algos: list[str], seeds: list[int], quick: bool,
                     n_parallel: int) -> float:
    steps = sum(STEP_SECONDS[a] * (LEARNERS[t][a].quick_steps if quick else LEARNERS[t][a].steps)
                for t in tasks for a in algos) * len(seeds) * len(REWARDS)
    return len(tasks) * PREPARE_SECONDS + steps / n_parallel


def parse_list(text: str, allowed: Sequence[str], what: str) -> list[str]:
    items = [x.strip() for x in text.split(",") if x.strip()]
    unknown = [x for x in items if x not in allowed]
    if not items or unknown:
        raise ValueError(f"--{what} takes a comma-separated subset of {', '.join(allowed)}, "
                         f"got {text!r}")
    return items


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="prove the pipeline: tiny step budgets, seed 0, 5 evaluation "
                         "episodes, 10 peer epochs")
    ap.add_argument("--jobs", type=int, default=2,
                    help="training runs at a time, one process each (default 2: one per core)")
    ap.add_argument("--tasks", default=",".join(REUSE_TASKS))
    ap.add_argument("--algos", default="sac,ppo")
    ap.add_argument("--seeds", default=",".join(map(str, SEEDS)), help="policy seeds")
    ap.add_argument("--seed", type=int, default=0, help="data, label and reward-learner seed")
    ap.add_argument("--out", default=str(OUT_DIR / "reuse.json"))
    args = ap.parse_args(argv)
    try:
        tasks = parse_list(args.tasks, list(REUSE_TASKS), "tasks")
        algos = parse_list(args.algos, ["sac", "ppo"], "algos")
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError as error:
        ap.error(str(error))
    if args.jobs < 1:
        ap.error("--jobs must be >= 1")
    if args.quick:
        seeds = seeds[:1]
    eval_episodes = 5 if args.quick else EVAL_EPISODES
    peer_epochs = 10 if args.quick else PEER_EPOCHS

    t0 = time.perf_counter()

    def say(message: str) -> None:
        print(f"[{time.perf_counter() - t0:7.1f} s] {message}", flush=True)

    estimate = estimate_seconds(tasks, algos, seeds, args.quick, args.jobs)
    say(f"plan: {', '.join(tasks)} x {', '.join(algos)} x {', '.join(REWARDS)} x seeds {seeds}, "
        f"{args.jobs} at a time; estimated {estimate / 60:.0f} min (at the step costs measured "
        "on the shared 2-core machine)")
    out = Path(args.out).resolve()
    art_dir = out.parent / out.stem
    art_dir.mkdir(parents=True, exist_ok=True)
    # MuJoCo writes its warnings to MUJOCO_LOG.TXT in the working directory: keep it out of
    # the repository (the workers inherit the working directory).
    os.chdir(out.parent)
    command = "python benchmarks/reuse.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    load_before = os.getloadavg()

    prepared: dict[str, dict[str, Any]] = {}
    failures: dict[str, dict[str, str]] = {}
    for key in tasks:
        try:
            prepared[key] = learn_rewards(key, args.seed, art_dir, peer_epochs, eval_episodes,
                                          say)
        except Exception as error:  # recorded; the other tasks still run
            failures[key] = {"type": type(error).__name__, "message": str(error),
                             "traceback": traceback.format_exc()}
            say(f"{key}: FAILED to learn the rewards: {type(error).__name__}: {error}")

    jobs = []
    for key in prepared:
        paths = {"true": None, "symbolic": prepared[key]["symbolic"]["path"],
                 "neural": prepared[key]["neural"]["path"]}
        for algo in algos:
            learner = LEARNERS[key][algo]
            steps = learner.quick_steps if args.quick else learner.steps
            jobs += [Job(key, REUSE_TASKS[key].env_id, algo, reward, seed, steps,
                         eval_episodes, paths[reward]) for seed in seeds for reward in REWARDS]
    # Seed by seed (a run stopped early has every cell at its first seeds), the longest
    # first within a seed, so that the processes finish together.
    jobs.sort(key=lambda j: (j.seed, -STEP_SECONDS[j.algo] * j.steps))

    def save(runs: list[dict[str, Any]], finished: bool) -> list[dict[str, Any]]:
        """The JSON of everything so far (rewritten after every run, so that a stopped
        benchmark keeps what it measured); returns the summary rows."""
        runs = sorted(runs, key=lambda r: (r["task"], r["algo"], REWARDS.index(r["reward"]),
                                           r["seed"]))
        rows = summarise(runs, {k: v["random_return"] for k, v in prepared.items()},
                         {k: v["zero_action_return"] for k, v in prepared.items()})
        meta = {"date": datetime.date.today().isoformat(), "command": command.strip(),
                "finished": finished, "runs_planned": len(jobs), "machine": machine(),
                "load_average_before": load_before, "load_average_now": os.getloadavg(),
                "seconds": round(time.perf_counter() - t0, 1),
                "estimated_seconds": round(estimate), "jobs": args.jobs, "quick": args.quick,
                "seed": args.seed, "policy_seeds": seeds, "eval_episodes": eval_episodes,
                "eval_seed": EVAL_SEED, "peer_epochs": peer_epochs,
                "learners": {t: {a: asdict(LEARNERS[t][a]) for a in algos} for t in tasks}}
        atomic_write_text(out, json.dumps({"meta": meta, "tasks": prepared,
                                           "task_failures": failures, "runs": runs,
                                           "summary": rows}, indent=1))
        return rows

    runs = run_jobs(jobs, args.jobs, say, on_result=lambda done: save(done, False))
    rows = save(runs, True)
    total = time.perf_counter() - t0
    load_after = os.getloadavg()
    hyper = [f"- {t} {a}: {LEARNERS[t][a].steps if not args.quick else LEARNERS[t][a].quick_steps}"
             f" steps, {LEARNERS[t][a].source}; n_envs {LEARNERS[t][a].n_envs}"
             f"{', VecNormalize' if LEARNERS[t][a].normalize else ''}; "
             f"{LEARNERS[t][a].kwargs or 'SB3 defaults'}" for t in tasks for a in algos]
    rewards = [f"- {k}: symbolic `{v['symbolic']['formula']}` ({v['symbolic']['fit_seconds']:.1f}"
               f" s); neural MLP {v['neural']['layers']} ({v['neural']['train_seconds']:.0f} s); "
               f"held-out pair accuracy {v['heldout_pair_accuracy']['symbolic']:.3f} / "
               f"{v['heldout_pair_accuracy']['neural']:.3f}; label flips "
               f"{v['label_noise']['flip_rate']:.1%}; random policy "
               f"{v['random_return']:.2f}" for k, v in prepared.items()]
    m, today = machine(), datetime.date.today().isoformat()
    lines = [f"date {today}; {m['cpu']}, {m['cpu_count']} cores; load average "
             f"{load_before[0]:.1f} before, {load_after[0]:.1f} after; total "
             f"{total / 60:.1f} min (estimated {estimate / 60:.0f} min)",
             f"versions: {', '.join(f'{k} {v}' for k, v in m['versions'].items())}",
             f"command: {command.strip()}", "", "Learners (rl-zoo3 hyperparameters):", *hyper,
             "", "Learned rewards:", *rewards, "",
             f"True-reward return of each trained policy ({eval_episodes} episodes, "
             "deterministic), mean ± std over seeds; normalised: random policy 0, true-reward "
             "policy of the same learner 1:", "", *result_table(rows), "",
             "For scale, a policy that always outputs action 0 scores (normalised): " + ", ".join(
                 f"{r['task']} {r['algo']} {r['zero_action_normalised']:.3f}" for r in rows
                 if r["reward"] == "true"), "",
             f"Target (symbolic >= {TARGET} normalised and >= neural):", *target_lines(rows)]
    if failures or any("error" in r for r in runs):
        lines += ["", "FAILURES:", *(f"- {k}: {v['type']}: {v['message']}"
                                     for k, v in failures.items()),
                  *(f"- {r['task']} {r['algo']} {r['reward']} seed {r['seed']}: "
                    f"{r['error']['type']}: {r['error']['message']}" for r in runs
                    if "error" in r)]
    print("\n".join(lines))
    atomic_write_text(out.with_suffix(".md"), "\n".join(lines) + "\n")
    print(f"\nraw results: {out}")
    return 1 if failures or any("error" in r for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
