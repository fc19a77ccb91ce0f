"""Synthetic supervision from a known reward: the stand-in for a human labeller.

Tests, examples and benchmarks need preferences, rankings and expert masks whose ground truth is
known, so that a learned reward can be scored against the reward that produced the labels. The
Bradley–Terry model here is the same one the preference objective assumes, which makes a
correct learner recover the true reward (up to the usual shift and scale).

Everything is deterministic for a given seed (``np.random.default_rng(seed)``).
"""

from __future__ import annotations

import math

import numpy as np

from symreward.data.dataset import Dataset, Preferences, Rankings
from symreward.errors import DataError

__all__ = [
    "bradley_terry_preferences",
    "expert_mask_from_episodes",
    "random_segments",
    "rankings_from_rewards",
    "segment_returns",
]


def _rewards_for(dataset: Dataset, rewards: np.ndarray | None) -> np.ndarray:
    if rewards is None:
        if dataset.rewards is None:
            raise DataError(
                f"{dataset.source}: no rewards given and the dataset has no 'rewards' key"
            )
        return np.asarray(dataset.rewards, dtype=np.float64)
    r = np.asarray(rewards, dtype=np.float64)
    if r.shape != (dataset.n,):
        raise DataError(
            f"{dataset.source}: rewards have shape {r.shape}; expected ({dataset.n},), one per "
            "transition"
        )
    bad = ~np.isfinite(r)
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(f"{dataset.source}: rewards: row {row} is {r[row]}; must be finite")
    return r


def segment_returns(
    rewards: np.ndarray, segments: np.ndarray, discount: float = 1.0
) -> np.ndarray:
    """``sum_k discount**k * rewards[start + k]`` for each ``[start, stop)`` row; any lengths."""
    r = np.asarray(rewards, dtype=np.float64)
    seg = np.asarray(segments, dtype=np.int64).reshape(-1, 2)
    lengths = seg[:, 1] - seg[:, 0]
    if seg.shape[0] == 0:
        return np.zeros(0)
    offsets = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    index = np.repeat(seg[:, 0], lengths) + offsets
    values = r[index] if discount == 1.0 else r[index] * float(discount) ** offsets
    owner = np.repeat(np.arange(seg.shape[0]), lengths)
    return np.bincount(owner, weights=values, minlength=seg.shape[0])


def return_differences(rewards: np.ndarray, preferences: Preferences, discount: float = 1.0
                       ) -> np.ndarray:
    """``R(a) - R(b)`` for each preference pair: positive where ``rewards`` favour segment a."""
    return (segment_returns(rewards, preferences.a, discount)
            - segment_returns(rewards, preferences.b, discount))


def random_segments(
    dataset: Dataset,
    n: int,
    length: int,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """``n`` segments of exactly ``length`` transitions, each inside one episode, as ``(n, 2)``.

    Start positions are uniform over all valid starts, so longer episodes contribute more
    segments; episodes shorter than ``length`` cannot host one and are skipped.
    """
    if length < 1:
        raise ValueError(f"segment length must be at least 1, got {length}")
    if n < 0:
        raise ValueError(f"number of segments must be non-negative, got {n}")
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    valid = np.zeros(0, dtype=np.int64)
    if length <= dataset.n:
        ids = dataset.episode_ids
        starts = np.arange(dataset.n - length + 1)
        valid = starts[ids[starts] == ids[starts + length - 1]]
    if valid.size == 0:
        longest = int(dataset.episode_lengths.max())
        raise DataError(
            f"{dataset.source}: no episode has {length} transitions for a segment (the longest "
            f"has {longest}); use a shorter segment length"
        )
    chosen = valid[gen.integers(0, valid.size, size=n)]
    return np.stack([chosen, chosen + length], axis=1).astype(np.int64)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    ex = np.exp(x[~pos])
    out[~pos] = ex / (1.0 + ex)
    return out


def bradley_terry_preferences(
    dataset: Dataset,
    rewards: np.ndarray | None,
    n_pairs: int,
    segment_length: int,
    *,
    temperature: float = 1.0,
    seed: int = 0,
    soft: bool = False,
    discount: float = 1.0,
) -> Preferences:
    """Label random segment pairs with P(a > b) = sigmoid((R_a - R_b) / temperature).

    ``R`` is the (discounted) segment return under ``rewards`` (default: the dataset's own).
    ``soft=True`` keeps the probability as the label; otherwise a 0/1 label is drawn from it, which
    is what a noisy human gives. ``temperature=0`` is a perfectly rational labeller: labels are 1,
    0, or 0.5 for exact ties, with no sampling.
    """
    if temperature < 0 or not math.isfinite(temperature):
        raise ValueError(f"temperature must be finite and >= 0, got {temperature}")
    r = _rewards_for(dataset, rewards)
    gen = np.random.default_rng(seed)
    a = random_segments(dataset, n_pairs, segment_length, gen)
    b = random_segments(dataset, n_pairs, segment_length, gen)
    diff = segment_returns(r, a, discount) - segment_returns(r, b, discount)
    if temperature == 0:
        label = np.where(diff > 0, 1.0, np.where(diff < 0, 0.0, 0.5))
    else:
        prob = _sigmoid(diff / temperature)
        label = prob if soft else (gen.random(n_pairs) < prob).astype(np.float64)
    return Preferences(a, b, label)


def rankings_from_rewards(
    dataset: Dataset,
    rewards: np.ndarray | None,
    n_segments: int,
    segment_length: int,
    *,
    noise: float = 0.0,
    seed: int = 0,
) -> Rankings:
    """Random segments scored by their true return plus Gaussian noise of std ``noise``."""
    if noise < 0:
        raise ValueError(f"noise must be >= 0, got {noise}")
    r = _rewards_for(dataset, rewards)
    gen = np.random.default_rng(seed)
    segments = random_segments(dataset, n_segments, segment_length, gen)
    scores = segment_returns(r, segments)
    if noise > 0:
        scores = scores + gen.normal(0.0, noise, size=scores.shape[0])
    return Rankings(segments, scores)


def expert_mask_from_episodes(
    dataset: Dataset, rewards: np.ndarray | None, top_fraction: float
) -> np.ndarray:
    """Mark every transition of the highest-return episodes as expert.

    ``top_fraction`` is a fraction of episodes (not transitions); at least one episode is marked.
    Ties go to the earlier episode, so the mask is deterministic.
    """
    if not 0 < top_fraction <= 1:
        raise ValueError(f"top_fraction must be in (0, 1], got {top_fraction}")
    r = _rewards_for(dataset, rewards)
    returns = np.add.reduceat(r, dataset.episode_starts)
    k = max(1, math.ceil(top_fraction * dataset.n_episodes - 1e-9))
    top = np.argsort(-returns, kind="stable")[:k]
    chosen = np.zeros(dataset.n_episodes, dtype=bool)
    chosen[top] = True
    return chosen[dataset.episode_ids]
