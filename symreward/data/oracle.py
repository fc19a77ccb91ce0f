"""Synthetic supervision from a known reward: the stand-in for a human labeller.

Tests, examples and benchmarks need preferences, rankings and expert masks whose ground truth is
known, so that a learned reward can be scored against the reward that produced the labels. The
Bradley–Terry model here is the same one the preference objective assumes, which makes a
correct learner recover the true reward (up to the usual shift and scale).

Everything is deterministic for a given seed (``np.random.default_rng(seed)``).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import numpy as np

from symreward.data.dataset import Dataset, Preferences, Rankings
from symreward.errors import DataError

__all__ = [
    "bradley_terry_preferences",
    "episode_segments",
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


def _valid_starts(dataset: Dataset, length: int) -> np.ndarray:
    """Every start of a ``length``-transition segment inside one episode; DataError if none."""
    if length < 1:
        raise ValueError(f"segment length must be at least 1, got {length}")
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
    return valid


def random_segments(
    dataset: Dataset,
    n: int,
    length: int,
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """``n`` segments of exactly ``length`` transitions, each inside one episode, as ``(n, 2)``.

    Start positions are uniform over all valid starts, so longer episodes contribute more
    segments; episodes shorter than ``length`` cannot host one and are skipped. Starts are drawn
    independently, so the same segment can come up more than once.
    """
    if length < 1:
        raise ValueError(f"segment length must be at least 1, got {length}")
    if n < 0:
        raise ValueError(f"number of segments must be non-negative, got {n}")
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    valid = _valid_starts(dataset, length)
    chosen = valid[gen.integers(0, valid.size, size=n)]
    return np.stack([chosen, chosen + length], axis=1).astype(np.int64)


def episode_segments(
    dataset: Dataset, min_length: int = 1, max_length: int | None = None
) -> np.ndarray:
    """Each episode of at least ``min_length`` transitions as one ``[start, stop)`` segment.

    Returns ``(E, 2)`` in episode order. An episode longer than ``max_length`` is cut to its first
    ``max_length`` transitions, as if the environment had that time limit, so a clip's length is
    capped without losing the short episodes (Hopper's falls stay whole, a 1000-step episode
    becomes its opening ``max_length`` steps). ``min_length`` drops the episodes too short to
    judge.
    """
    min_length = _whole("min_length", min_length)
    if max_length is not None and _whole("max_length", max_length) < min_length:
        raise ValueError(f"max_length ({max_length}) must be at least min_length ({min_length})")
    starts, lengths = dataset.episode_starts, dataset.episode_lengths
    keep = lengths >= min_length
    if not keep.any():
        raise DataError(
            f"{dataset.source}: no episode has at least {min_length} transitions (the longest "
            f"has {int(lengths.max())}); lower min_length"
        )
    kept = lengths[keep] if max_length is None else np.minimum(lengths[keep], max_length)
    return np.stack([starts[keep], starts[keep] + kept], axis=1).astype(np.int64)


def _whole(name: str, value: object, minimum: int = 1) -> int:
    """``value`` as an int if it is a whole number >= ``minimum`` (a bool is not a count)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return int(value)


def _non_negative(name: str, value: object) -> float:
    number = float(value) if isinstance(value, numbers.Real) else math.nan
    if not (math.isfinite(number) and number >= 0):
        raise ValueError(f"{name} must be finite and >= 0, got {value}")
    return number


def _per_annotator(name: str, value: float | Sequence[float], annotators: int) -> np.ndarray:
    """One number for every annotator, or one each: ``(annotators,)``, finite and >= 0."""
    if np.ndim(value) == 0:
        return np.full(annotators, _non_negative(name, value))  # type: ignore[arg-type]
    values = list(value)  # type: ignore[arg-type]
    if len(values) != annotators:
        raise ValueError(
            f"{name} has {len(values)} values, one per annotator, but annotators={annotators}"
        )
    return np.array([_non_negative(f"{name}[{i}]", v) for i, v in enumerate(values)])


def _explicit_segments(dataset: Dataset, segments: object) -> np.ndarray:
    """A caller's pool of segments, checked against the dataset like ``pref_a`` would be."""
    seg = np.asarray(segments)
    if seg.ndim != 2 or seg.shape[1] != 2:
        raise ValueError(
            f"segments must have shape (S, 2) as [start, stop) rows; got {tuple(seg.shape)}"
        )
    integral = seg.dtype.kind in "iu" or (
        seg.dtype.kind == "f" and bool(np.all(np.isfinite(seg) & (seg == np.round(seg)))))
    if not integral:
        raise ValueError(f"segments must be integer [start, stop) indices, got {seg.dtype}")
    seg = seg.astype(np.int64)
    inside = dataset.segments_in_one_episode(seg)
    if not inside.all():
        row = int(np.argmax(~inside))
        raise DataError(
            f"{dataset.source}: segments row {row} is {seg[row].tolist()}: not a non-empty "
            f"segment inside one episode of the {dataset.n} transitions"
        )
    _, first, inverse = np.unique(seg, axis=0, return_index=True, return_inverse=True)
    repeated = first[inverse.reshape(-1)] != np.arange(seg.shape[0])
    if repeated.any():
        row = int(np.argmax(repeated))
        raise ValueError(
            f"segments rows {int(first[inverse.reshape(-1)[row]])} and {row} are both "
            f"{seg[row].tolist()}; list each segment once (annotators= labels the same data "
            "more than once)"
        )
    return seg


def _candidates(
    dataset: Dataset,
    segment_length: int | None,
    segments: object,
    min_length: int,
    max_length: int | None,
) -> np.ndarray | None:
    """The segments to draw from: ``segments=``, whole episodes, or None for random windows of
    ``segment_length`` (drawn later, by position)."""
    episode_options = not (min_length == 1 and max_length is None)
    if segments is not None:
        if segment_length is not None:
            raise ValueError("give segment_length or segments=, not both (segments= rows carry "
                             "their own lengths)")
        if episode_options:
            raise ValueError("min_length and max_length choose whole episodes "
                             "(segment_length=None); they do not apply to segments=")
        return _explicit_segments(dataset, segments)
    if segment_length is None:
        return episode_segments(dataset, min_length, max_length)
    if episode_options:
        raise ValueError("min_length and max_length choose whole episodes (segment_length=None); "
                         f"with segment_length={segment_length} every segment has that length")
    return None


def _draw_distinct(
    dataset: Dataset,
    candidates: np.ndarray | None,
    segment_length: int | None,
    size: int,
    gen: np.random.Generator,
    why: str,
) -> np.ndarray:
    """``size`` distinct segments, uniformly without replacement, from the candidates or from
    every window of ``segment_length`` (distinct starts; windows may overlap)."""
    if candidates is not None:
        if size > candidates.shape[0]:
            kind = "episodes qualify" if segment_length is None else "rows in segments="
            raise DataError(f"{dataset.source}: {why} needs {size} distinct segments; only "
                            f"{candidates.shape[0]} {kind}")
        return candidates[gen.choice(candidates.shape[0], size, replace=False)]
    assert segment_length is not None
    valid = _valid_starts(dataset, segment_length)
    if size > valid.size:
        raise DataError(f"{dataset.source}: {why} needs {size} distinct segments; only "
                        f"{valid.size} segments of {segment_length} transitions fit in the "
                        "episodes")
    chosen = valid[gen.choice(valid.size, size, replace=False)]
    return np.stack([chosen, chosen + segment_length], axis=1).astype(np.int64)


def _balanced_pairs(size: int, n_pairs: int, gen: np.random.Generator) -> np.ndarray:
    """``n_pairs`` pairs ``(i, j)`` of pool indices: never ``i == j``, no unordered pair twice,
    each index in ``floor`` or ``ceil`` of ``2 * n_pairs / size`` pairs, order within a pair
    random. The caller ensures ``n_pairs <= size * (size - 1) / 2``.

    A random near-regular simple graph: a shuffled list of each index repeated its number of
    times, read two at a time (the configuration model), then repaired by double-edge swaps, which
    keep every index's count, until no pair is a self-pair or a repeat. More than half of all
    possible pairs are drawn as the complement of the pairs left out, which is sparse and so
    repairs quickly.
    """
    total = size * (size - 1) // 2
    if 2 * n_pairs > total:
        left_out = _balanced_pairs(size, total - n_pairs, gen)
        i, j = np.triu_indices(size, 1)
        keep = np.ones((size, size), dtype=bool)
        keep[left_out[:, 0], left_out[:, 1]] = keep[left_out[:, 1], left_out[:, 0]] = False
        pairs = np.stack([i, j], axis=1)[keep[i, j]]
        pairs = pairs[gen.permutation(pairs.shape[0])]
        flip = gen.random(pairs.shape[0]) < 0.5
        pairs[flip] = pairs[flip, ::-1]
        return pairs
    if n_pairs == 0:
        return np.zeros((0, 2), dtype=np.int64)
    base, extra = divmod(2 * n_pairs, size)
    counts = np.full(size, base, dtype=np.int64)
    counts[gen.permutation(size)[:extra]] += 1
    ends = np.repeat(np.arange(size), counts)
    gen.shuffle(ends)
    first, second = ends[0::2].tolist(), ends[1::2].tolist()
    seen: dict[tuple[int, int], int] = {}
    for u, v in zip(first, second, strict=True):
        key = (u, v) if u < v else (v, u)
        seen[key] = seen.get(key, 0) + 1

    def bad(i: int) -> bool:
        u, v = first[i], second[i]
        return u == v or seen[(u, v) if u < v else (v, u)] > 1

    def remove(u: int, v: int) -> int:  # how many faults removing (u, v) mends
        key = (u, v) if u < v else (v, u)
        seen[key] -= 1
        return int(u == v or seen[key] > 0)

    def add(u: int, v: int) -> int:  # how many faults adding (u, v) makes
        key = (u, v) if u < v else (v, u)
        seen[key] = seen.get(key, 0) + 1
        return int(u == v or seen[key] > 1)

    faulty = [i for i in range(n_pairs) if bad(i)]
    while faulty:
        i = faulty[-1]
        if not bad(i):
            faulty.pop()
            continue
        j = int(gen.integers(n_pairs))
        if j == i:
            continue
        ui, vi, uj, vj = first[i], second[i], first[j], second[j]
        if gen.random() < 0.5:
            uj, vj = vj, uj
        mended = remove(ui, vi) + remove(uj, vj)
        if add(ui, uj) + add(vi, vj) <= mended:  # no worse: a random walk that ends at none
            first[i], second[i], first[j], second[j] = ui, uj, vi, vj
            faulty.append(j)
            faulty.append(i)
        else:
            remove(ui, uj)
            remove(vi, vj)
            add(ui, vi)
            add(uj, vj)
    return np.array([first, second], dtype=np.int64).T.reshape(n_pairs, 2)


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
    segment_length: int | None = None,
    *,
    temperature: float | Sequence[float] = 1.0,
    seed: int = 0,
    soft: bool = False,
    discount: float = 1.0,
    pairs_per_segment: int | None = None,
    segments: np.ndarray | None = None,
    min_length: int = 1,
    max_length: int | None = None,
    tie_threshold: float = 0.0,
    annotators: int = 1,
) -> Preferences:
    """Label segment pairs with P(a > b) = sigmoid((R_a - R_b) / temperature).

    ``R`` is the (discounted) segment return under ``rewards`` (default: the dataset's own).
    ``soft=True`` keeps the probability as the label; otherwise a 0/1 label is drawn from it, which
    is what a noisy human gives. ``temperature=0`` is a perfectly rational labeller: labels are 1,
    0, or 0.5 for exact ties, with no sampling.

    Which segments:

    * ``segment_length=L`` alone: each of a pair's two segments is an independent uniform window
      of ``L`` transitions (the same segment can be drawn twice, even within a pair: such a pair
      says nothing about the reward).
    * ``segment_length=None`` (the default): whole episodes, those of at least ``min_length``
      transitions, each cut to its first ``max_length`` (``episode_segments``).
    * ``segments=`` an ``(S, 2)`` array: your own pool of ``[start, stop)`` clips, each listed
      once, of any lengths.
    * ``pairs_per_segment=k``: a pool of ``S = max(2, ceil(2 * n_pairs / k))`` distinct segments
      drawn first (windows of ``segment_length`` with distinct starts, which may overlap, or
      whole episodes), the smallest pool in which no segment is in more than ``k`` pairs (999
      pairs, ``k=5``: 400 segments).

    With a pool (whole episodes, ``segments=`` or ``pairs_per_segment``) the pairs are drawn
    among it balanced: every pool segment is in ``floor(2 * n_pairs / S)`` or ``ceil(...)``
    pairs, never against itself, and no two pairs compare the same two segments (a labelling
    tool does not ask the same question twice; ``annotators`` does that deliberately); which one
    is ``a`` is random. Asking for more pairs than the pool has (``S * (S - 1) / 2``) is an error.

    Labels:

    * ``tie_threshold=t``: a pair whose returns differ by less than ``t`` (``|R_a - R_b| < t``,
      in return units) is labelled exactly 0.5, a person saying "equal", whatever ``soft`` or the
      temperature; every other label is what it would be without the threshold.
    * ``annotators=m``: every pair is labelled by ``m`` independent annotators, returned as ``m``
      blocks of ``n_pairs`` rows with the same segments (block ``j`` is annotator ``j``;
      ``label.reshape(m, n_pairs)``), so sampled labels of the same pair can disagree.
      ``temperature`` may give one value per annotator (careful and careless labellers).
    """
    m = _whole("annotators", annotators)
    temps = _per_annotator("temperature", temperature, m)
    threshold = _non_negative("tie_threshold", tie_threshold)
    r = _rewards_for(dataset, rewards)
    candidates = _candidates(dataset, segment_length, segments, min_length, max_length)
    gen = np.random.default_rng(seed)
    if candidates is None and pairs_per_segment is None:
        a = random_segments(dataset, n_pairs, segment_length, gen)  # type: ignore[arg-type]
        b = random_segments(dataset, n_pairs, segment_length, gen)  # type: ignore[arg-type]
    else:
        n = _whole("n_pairs", n_pairs, 0)
        if pairs_per_segment is None:
            assert candidates is not None
            pool = candidates
            where = (f"{pool.shape[0]} rows in segments=" if segments is not None else
                     f"the {pool.shape[0]} episodes"
                     + (f" of at least {min_length} transitions" if min_length > 1 else ""))
        else:
            if segments is not None:
                raise ValueError("give pairs_per_segment or segments=, not both: with segments= "
                                 "each segment is in about 2 * n_pairs / len(segments) pairs")
            k = _whole("pairs_per_segment", pairs_per_segment)
            size = max(2, -(-2 * n // k)) if n else 0
            pool = _draw_distinct(dataset, candidates, segment_length, size, gen,
                                  f"pairs_per_segment={k} with {n} pairs")
            where = f"a pool of {size} segments (pairs_per_segment={k})"
        most = pool.shape[0] * (pool.shape[0] - 1) // 2
        if n > most:
            raise DataError(
                f"{dataset.source}: {n} pairs cannot be drawn from {where} without comparing the "
                f"same two segments twice (at most {most}); use fewer pairs, a larger pool, or "
                "annotators= to label each pair more than once"
            )
        index = _balanced_pairs(pool.shape[0], n, gen)
        a, b = pool[index[:, 0]], pool[index[:, 1]]
    diff = segment_returns(r, a, discount) - segment_returns(r, b, discount)
    draws = gen.random((m, diff.shape[0])) if not soft and (temps > 0).any() else None
    labels = np.empty((m, diff.shape[0]))
    for j, t in enumerate(temps):
        if t == 0:
            labels[j] = np.where(diff > 0, 1.0, np.where(diff < 0, 0.0, 0.5))
        else:
            prob = _sigmoid(diff / t)
            labels[j] = prob if soft else (draws[j] < prob).astype(np.float64)  # type: ignore[index]
    if threshold > 0:
        labels[:, np.abs(diff) < threshold] = 0.5
    return Preferences(np.tile(a, (m, 1)), np.tile(b, (m, 1)), labels.reshape(-1))


def rankings_from_rewards(
    dataset: Dataset,
    rewards: np.ndarray | None,
    n_segments: int | None,
    segment_length: int | None = None,
    *,
    noise: float | Sequence[float] = 0.0,
    seed: int = 0,
    segments: np.ndarray | None = None,
    min_length: int = 1,
    max_length: int | None = None,
    score_step: float = 0.0,
    annotators: int = 1,
) -> Rankings:
    """Segments scored by their true return plus Gaussian noise of std ``noise``.

    Which segments: ``segment_length=L`` draws ``n_segments`` independent uniform windows (the
    same one can come up twice); ``segment_length=None`` (the default) ranks whole episodes, of at
    least ``min_length`` transitions and cut to their first ``max_length`` (``episode_segments``);
    ``segments=`` ranks your own ``(S, 2)`` clips, each listed once. From episodes or
    ``segments=``, ``n_segments=None`` takes all of them in order and a number takes that many
    distinct ones at random.

    * ``score_step=s``: scores are rounded down to a multiple of ``s`` (``floor(score / s) * s``),
      a person rating on a scale: segments in the same step tie (their returns differ by less than
      ``s``), and tied segments give the ranking objective no pair.
    * ``annotators=m``: every segment is scored by ``m`` annotators with independent noise,
      returned as ``m`` blocks of rows with the same segments (``scores.reshape(m, -1)``);
      ``noise`` may give one std per annotator. All rows form one ranking, so rows of different
      annotators are compared too, and a segment against its own repeat says nothing.
    """
    m = _whole("annotators", annotators)
    noises = _per_annotator("noise", noise, m)
    step = _non_negative("score_step", score_step)
    r = _rewards_for(dataset, rewards)
    candidates = _candidates(dataset, segment_length, segments, min_length, max_length)
    gen = np.random.default_rng(seed)
    if candidates is None:
        if n_segments is None:
            raise ValueError("n_segments=None (all of them) needs whole episodes "
                             "(segment_length=None) or segments=")
        chosen = random_segments(dataset, n_segments, segment_length, gen)  # type: ignore[arg-type]
    elif n_segments is None:
        chosen = candidates
    else:
        size = _whole("n_segments", n_segments, 0)
        chosen = _draw_distinct(dataset, candidates, segment_length, size, gen,
                                f"n_segments={size}")
    returns = segment_returns(r, chosen)
    scores = np.tile(returns, (m, 1))
    if (noises > 0).any():
        scores = returns + noises[:, None] * gen.normal(0.0, 1.0, size=scores.shape)
    if step > 0:
        scores = np.floor(scores / step) * step
    return Rankings(np.tile(chosen, (m, 1)), scores.reshape(-1))


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
