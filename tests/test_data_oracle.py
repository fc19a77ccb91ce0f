"""The synthetic oracle: segments, Bradley–Terry preferences, rankings and expert masks."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from symreward.data import (
    Dataset,
    bradley_terry_preferences,
    episode_segments,
    expert_mask_from_episodes,
    random_segments,
    rankings_from_rewards,
)
from symreward.data.oracle import segment_returns
from symreward.errors import DataError


def dataset_with_episodes(lengths, rewards=None, source="toy.npz") -> Dataset:
    n = int(sum(lengths))
    timeouts = np.zeros(n, dtype=bool)
    timeouts[np.cumsum(lengths) - 1] = True
    obs = np.arange(n, dtype=float)[:, None]
    if rewards is None:
        rewards = np.random.default_rng(0).normal(size=n)
    return Dataset(obs, np.zeros((n, 1)), obs + 1, np.zeros(n, bool), timeouts,
                   rewards=rewards, source=source)


def naive_returns(r, segs, discount=1.0):
    return np.array([sum(discount**k * r[s + k] for k in range(e - s)) for s, e in segs])


# ---------------------------------------------------------------------- segments


def test_random_segments_shape_length_and_determinism():
    ds = dataset_with_episodes([10, 3, 12])
    segs = random_segments(ds, 50, 5, np.random.default_rng(1))
    assert segs.shape == (50, 2) and segs.dtype == np.int64
    assert np.all(segs[:, 1] - segs[:, 0] == 5)
    assert ds.segments_in_one_episode(segs).all()
    # the 3-step episode cannot host a 5-step segment
    assert not np.any((segs[:, 0] >= 10) & (segs[:, 0] < 13))
    np.testing.assert_array_equal(segs, random_segments(ds, 50, 5, 1))
    assert not np.array_equal(segs, random_segments(ds, 50, 5, 2))


def test_random_segments_error_when_nothing_fits():
    ds = dataset_with_episodes([4, 6])
    with pytest.raises(DataError, match=r"^toy\.npz: no episode has 7 transitions for a segment "
                                        r"\(the longest has 6\)"):
        random_segments(ds, 3, 7, 0)
    with pytest.raises(DataError, match="longest has 6"):
        random_segments(ds, 3, 100, 0)
    with pytest.raises(ValueError, match="at least 1"):
        random_segments(ds, 3, 0, 0)


@st.composite
def flags_and_length(draw):
    n = draw(st.integers(1, 80))
    flags = draw(hnp.arrays(bool, n))
    return flags, draw(st.integers(1, 12)), draw(st.integers(0, 2**32 - 1))


@settings(max_examples=80, deadline=None)
@given(flags_and_length())
def test_random_segments_never_cross_episode_boundaries(args):
    flags, length, seed = args
    n = flags.shape[0]
    ds = Dataset(np.zeros((n, 1)), np.zeros((n, 1)), np.zeros((n, 1)), flags, np.zeros(n, bool))
    if ds.episode_lengths.max() < length:
        with pytest.raises(DataError, match="no episode has"):
            random_segments(ds, 5, length, seed)
        return
    segs = random_segments(ds, 20, length, seed)
    assert np.all(segs[:, 1] - segs[:, 0] == length)
    assert all(ds.segment_in_one_episode(int(s), int(e)) for s, e in segs)


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 40), st.floats(0.5, 1.0), st.integers(0, 1000))
def test_segment_returns_match_a_naive_sum(n, discount, seed):
    rng = np.random.default_rng(seed)
    r = rng.normal(size=n)
    starts = rng.integers(0, n, size=6)
    stops = np.minimum(starts + rng.integers(1, 6, size=6), n)
    segs = np.stack([starts, stops], axis=1)
    np.testing.assert_allclose(segment_returns(r, segs, discount),
                               naive_returns(r, segs, discount), rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------- preferences


def test_soft_labels_are_the_bradley_terry_probability():
    ds = dataset_with_episodes([30, 30])
    r = ds.rewards
    prefs = bradley_terry_preferences(ds, r, 40, 8, temperature=2.0, seed=5, soft=True)
    ra, rb = naive_returns(r, prefs.a), naive_returns(r, prefs.b)
    np.testing.assert_allclose(prefs.label, 1 / (1 + np.exp(-(ra - rb) / 2.0)), rtol=1e-12)
    assert prefs.a.dtype == prefs.b.dtype == np.int64 and prefs.label.dtype == np.float64
    attached = ds.replace(preferences=prefs)  # valid under the data contract
    assert len(attached.preferences) == 40


def test_hard_labels_are_sampled_from_the_probability_and_seeded():
    ds = dataset_with_episodes([200, 200])
    soft = bradley_terry_preferences(ds, None, 3000, 4, seed=7, soft=True)
    hard = bradley_terry_preferences(ds, None, 3000, 4, seed=7)
    np.testing.assert_array_equal(soft.a, hard.a)
    assert set(np.unique(hard.label)) <= {0.0, 1.0}
    assert abs(hard.label.mean() - soft.label.mean()) < 0.03
    # labels agree with the probability far more often than chance
    assert np.mean((hard.label == 1) == (soft.label > 0.5)) > 0.6
    again = bradley_terry_preferences(ds, None, 3000, 4, seed=7)
    np.testing.assert_array_equal(hard.label, again.label)
    other = bradley_terry_preferences(ds, None, 3000, 4, seed=8)
    assert not np.array_equal(hard.a, other.a)


def test_zero_temperature_is_deterministic_with_ties_at_one_half():
    ds = dataset_with_episodes([20, 20])
    prefs = bradley_terry_preferences(ds, None, 100, 5, temperature=0.0, seed=0)
    ra, rb = segment_returns(ds.rewards, prefs.a), segment_returns(ds.rewards, prefs.b)
    expected = np.where(ra == rb, 0.5, (ra > rb).astype(float))
    assert (ra == rb).any()  # some pairs compare a segment with itself
    np.testing.assert_array_equal(prefs.label, expected)
    flat = bradley_terry_preferences(ds, np.ones(40), 10, 5, temperature=0.0)
    assert flat.label.tolist() == [0.5] * 10


def test_discount_weights_early_rewards_more():
    ds = dataset_with_episodes([10], rewards=np.arange(10, dtype=float))
    prefs = bradley_terry_preferences(ds, None, 20, 3, soft=True, discount=0.5, seed=2)
    ra = naive_returns(ds.rewards, prefs.a, 0.5)
    rb = naive_returns(ds.rewards, prefs.b, 0.5)
    np.testing.assert_allclose(prefs.label, 1 / (1 + np.exp(-(ra - rb))), rtol=1e-12)


def test_reward_array_errors_name_the_dataset():
    ds = dataset_with_episodes([5, 5])
    with pytest.raises(DataError, match=r"^toy\.npz: rewards have shape \(9,\); expected \(10,\)"):
        bradley_terry_preferences(ds, np.zeros(9), 3, 2)
    bad = np.zeros(10)
    bad[6] = np.nan
    with pytest.raises(DataError, match=r"^toy\.npz: rewards: row 6 is nan"):
        rankings_from_rewards(ds, bad, 3, 2)
    no_rewards = ds.replace(rewards=None)
    with pytest.raises(DataError, match=r"no rewards given and the dataset has no 'rewards' key"):
        expert_mask_from_episodes(no_rewards, None, 0.5)
    with pytest.raises(ValueError, match="temperature"):
        bradley_terry_preferences(ds, None, 3, 2, temperature=-1.0)


# ---------------------------------------------------------------------- rankings and experts


def test_rankings_scores_are_returns_plus_seeded_noise():
    ds = dataset_with_episodes([15, 15])
    exact = rankings_from_rewards(ds, None, 25, 4, seed=3)
    np.testing.assert_allclose(exact.scores, naive_returns(ds.rewards, exact.segments))
    noisy = rankings_from_rewards(ds, None, 25, 4, noise=0.5, seed=3)
    np.testing.assert_array_equal(noisy.segments, exact.segments)
    assert not np.allclose(noisy.scores, exact.scores)
    assert np.std(noisy.scores - exact.scores) == pytest.approx(0.5, rel=0.5)
    again = rankings_from_rewards(ds, None, 25, 4, noise=0.5, seed=3)
    np.testing.assert_array_equal(again.scores, noisy.scores)
    assert ds.replace(rankings=noisy).rankings is not None


def test_expert_mask_marks_the_best_episodes():
    lengths = [3, 4, 2, 5]
    per_episode = [1.0, 5.0, -2.0, 3.0]
    rewards = np.repeat(per_episode, lengths)  # returns 3, 20, -4, 15
    ds = dataset_with_episodes(lengths, rewards=rewards)
    mask = expert_mask_from_episodes(ds, None, 0.5)
    assert mask.dtype == bool and mask.shape == (14,)
    np.testing.assert_array_equal(mask, np.repeat([False, True, False, True], lengths))
    one = expert_mask_from_episodes(ds, None, 0.1)  # rounds up to one episode
    np.testing.assert_array_equal(one, np.repeat([False, True, False, False], lengths))
    assert expert_mask_from_episodes(ds, None, 1.0).all()
    assert ds.replace(expert=mask).expert is not None
    with pytest.raises(ValueError, match="top_fraction"):
        expert_mask_from_episodes(ds, None, 0.0)


def test_expert_mask_fraction_is_not_fooled_by_float_rounding():
    ds = dataset_with_episodes([2] * 10, rewards=np.arange(20, dtype=float))
    # 0.3 * 10 = 3.0000000000000004 must select 3 episodes, not 4
    assert expert_mask_from_episodes(ds, None, 0.3).sum() == 6


# ---------------------------------------------------------------------- today's draws, pinned
# Computed with the oracle before pools, whole episodes, ties and annotators existed: with every
# new option at its default the oracle must draw exactly these (benchmarks depend on them).


def _digest(*arrays) -> str:
    h = hashlib.sha256()
    for x in arrays:
        h.update(np.ascontiguousarray(x).tobytes())
    return h.hexdigest()[:16]


def test_default_preferences_are_todays_draws():
    ds = dataset_with_episodes([10, 3, 12])
    p = bradley_terry_preferences(ds, None, 6, 3, seed=4)
    assert p.a.tolist() == [[17, 20], [21, 24], [20, 23], [13, 16], [21, 24], [22, 25]]
    assert p.b.tolist() == [[22, 25], [1, 4], [10, 13], [15, 18], [5, 8], [7, 10]]
    assert p.label.tolist() == [0.0, 1.0, 1.0, 0.0, 0.0, 1.0]
    soft = bradley_terry_preferences(ds, None, 4, 3, seed=4, soft=True, temperature=0.5)
    assert soft.label.tolist() == pytest.approx([0.5424301484799712, 0.716260340238561,
                                                 0.4914751041238543, 0.003610198682079637],
                                                rel=1e-14)  # numpy's exp: see below


# The pairs are integer draws, the same on every machine; 0/1 labels compare a draw with a
# probability, which a last-bit difference flips with odds of about 1e-16 per label. Soft labels
# are the probabilities themselves, computed with numpy's exp, whose last bit differs between
# processors (AVX2 and AVX-512 builds of its SIMD loops): they are checked against the formula.
@pytest.mark.parametrize(("options", "labels_digest"), [
    ({}, "9b1b217c7ef32068"),
    ({"soft": True}, None),
    ({"temperature": 0.0}, "ae7dc931a7ddd606"),
    ({"temperature": 3.0, "discount": 0.9}, "3ff73072fb2e1255"),
])
def test_default_preferences_are_todays_draws_byte_for_byte(options, labels_digest):
    ds = dataset_with_episodes([50] * 40 + [7, 120])
    p = bradley_terry_preferences(ds, None, 500, 10, seed=11, **options)
    assert _digest(p.a, p.b) == "1eb4258e873dc4ee"
    if labels_digest is not None:
        assert _digest(p.label) == labels_digest
    else:
        difference = naive_returns(ds.rewards, p.a) - naive_returns(ds.rewards, p.b)
        expected = [1.0 / (1.0 + math.exp(-x)) for x in difference]
        np.testing.assert_allclose(p.label, expected, rtol=1e-14, atol=0)


def test_default_rankings_are_todays_draws():
    ds = dataset_with_episodes([10, 3, 12])
    r = rankings_from_rewards(ds, None, 5, 4, noise=0.3, seed=2)
    assert r.segments.tolist() == [[19, 23], [4, 8], [1, 5], [4, 8], [6, 10]]
    assert r.scores.tolist() == [0.8828072887697589, 2.616918904824024, 0.4207982927550775,
                                 1.9793798389474058, 0.5140662774246328]
    big = dataset_with_episodes([50] * 40 + [7, 120])
    exact = rankings_from_rewards(big, None, 300, 12, seed=5)
    assert _digest(exact.segments, exact.scores) == "942be531fca2c451"
    noisy = rankings_from_rewards(big, None, 300, 12, seed=5, noise=1.0)
    assert _digest(noisy.segments, noisy.scores) == "ce8a0c42427ea62a"


# ---------------------------------------------------------------------- whole episodes


def test_episode_segments_are_the_episodes_cut_and_filtered():
    ds = dataset_with_episodes([10, 3, 12, 1])
    np.testing.assert_array_equal(episode_segments(ds),
                                  np.stack([ds.episode_starts, ds.episode_ends], axis=1))
    assert episode_segments(ds, min_length=4).tolist() == [[0, 10], [13, 25]]
    assert episode_segments(ds, max_length=5).tolist() == [[0, 5], [10, 13], [13, 18], [25, 26]]
    assert episode_segments(ds, 3, 3).tolist() == [[0, 3], [10, 13], [13, 16]]
    with pytest.raises(DataError, match=r"^toy\.npz: no episode has at least 13 transitions "
                                        r"\(the longest has 12\); lower min_length"):
        episode_segments(ds, min_length=13)
    with pytest.raises(ValueError, match=r"max_length \(2\) must be at least min_length \(3\)"):
        episode_segments(ds, 3, 2)
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="min_length must be a whole number >= 1"):
            episode_segments(ds, bad)


def _pairs_are_balanced(prefs, pool):
    """Every row is a pool segment, never against itself, no unordered pair twice, each pool
    segment in floor or ceil of 2 * pairs / |pool| pairs."""
    n, size = len(prefs), len(pool)
    pool_rows = {tuple(s) for s in pool.tolist()}
    index = {s: i for i, s in enumerate(map(tuple, pool.tolist()))}
    assert len(pool_rows) == size
    ia = [index[tuple(s)] for s in prefs.a.tolist()]
    ib = [index[tuple(s)] for s in prefs.b.tolist()]
    assert all(i != j for i, j in zip(ia, ib, strict=True))
    assert len({(min(i, j), max(i, j)) for i, j in zip(ia, ib, strict=True)}) == n
    counts = np.bincount(ia + ib, minlength=size)
    if size:
        assert set(counts.tolist()) <= {2 * n // size, -(-2 * n // size)}
    return counts


def test_whole_episode_pairs_are_episodes_balanced_over_all_of_them():
    ds = dataset_with_episodes([6, 2, 9, 4, 7, 3, 8])
    prefs = bradley_terry_preferences(ds, None, 9, None, seed=3)
    counts = _pairs_are_balanced(prefs, episode_segments(ds))
    assert counts.sum() == 18  # 7 episodes: each in 2 or 3 of the 9 pairs
    long = bradley_terry_preferences(ds, None, 5, min_length=4, max_length=6, seed=3)
    _pairs_are_balanced(long, episode_segments(ds, 4, 6))
    assert set((long.b[:, 1] - long.b[:, 0]).tolist()) <= {4, 6}
    # the default segment_length is whole episodes
    same = bradley_terry_preferences(ds, None, 9, seed=3)
    np.testing.assert_array_equal(same.a, prefs.a)
    with pytest.raises(DataError, match=r"^toy\.npz: 22 pairs cannot be drawn from the 7 "
                                        r"episodes without .*at most 21"):
        bradley_terry_preferences(ds, None, 22, None)
    with pytest.raises(DataError, match=r"from the 3 episodes of at least 7 transitions without"):
        bradley_terry_preferences(ds, None, 4, None, min_length=7)
    complete = bradley_terry_preferences(ds, None, 21, None)  # every pair of episodes once
    assert set(_pairs_are_balanced(complete, episode_segments(ds)).tolist()) == {6}


# ---------------------------------------------------------------------- pools


@st.composite
def pool_requests(draw):
    lengths = draw(st.lists(st.integers(1, 30), min_size=1, max_size=8))
    length = draw(st.integers(1, max(lengths)))
    n_pairs = draw(st.integers(0, 60))
    k = draw(st.integers(1, 12))
    return lengths, length, n_pairs, k, draw(st.integers(0, 2**32 - 1))


@settings(max_examples=150, deadline=None)
@given(pool_requests())
def test_pairs_per_segment_draws_the_smallest_pool_and_uses_each_segment_at_most_k_times(args):
    lengths, length, n_pairs, k, seed = args
    ds = dataset_with_episodes(lengths)
    size = max(2, -(-2 * n_pairs // k)) if n_pairs else 0
    windows = sum(max(0, e - length + 1) for e in lengths)
    if size > windows or n_pairs > size * (size - 1) // 2:
        with pytest.raises(DataError, match=r"needs \d+ distinct segments|cannot be drawn"):
            bradley_terry_preferences(ds, None, n_pairs, length, pairs_per_segment=k, seed=seed)
        return
    prefs = bradley_terry_preferences(ds, None, n_pairs, length, pairs_per_segment=k, seed=seed)
    assert len(prefs) == n_pairs
    used = np.unique(np.concatenate([prefs.a, prefs.b]), axis=0)
    assert used.shape[0] == size  # each pool segment is in at least one pair
    counts = _pairs_are_balanced(prefs, used)
    assert counts.max(initial=0) <= k
    assert np.all(used[:, 1] - used[:, 0] == length)
    assert ds.segments_in_one_episode(used).all()
    again = bradley_terry_preferences(ds, None, n_pairs, length, pairs_per_segment=k, seed=seed)
    np.testing.assert_array_equal(again.a, prefs.a)
    np.testing.assert_array_equal(again.b, prefs.b)
    np.testing.assert_array_equal(again.label, prefs.label)


def test_pool_of_the_motivating_size():
    # Reacher-v5 style: 400 episodes of 50 steps, 999 pairs, each episode in about 5 pairs
    ds = dataset_with_episodes([50] * 400)
    prefs = bradley_terry_preferences(ds, None, 999, pairs_per_segment=5, seed=0)
    counts = _pairs_are_balanced(prefs, episode_segments(ds))
    assert np.bincount(counts).tolist() == [0, 0, 0, 0, 2, 398]
    windows = bradley_terry_preferences(ds, None, 999, 25, pairs_per_segment=5, seed=0)
    used = np.unique(np.concatenate([windows.a, windows.b]), axis=0)
    assert used.shape[0] == 400
    assert np.bincount(_pairs_are_balanced(windows, used)).tolist() == [0, 0, 0, 0, 2, 398]
    subset = bradley_terry_preferences(ds, None, 100, pairs_per_segment=4, seed=1)
    used = np.unique(np.concatenate([subset.a, subset.b]), axis=0)
    assert used.shape[0] == 50 and set(map(tuple, used.tolist())) <= set(
        map(tuple, episode_segments(ds).tolist()))
    assert set(_pairs_are_balanced(subset, used).tolist()) == {4}
    assert not np.array_equal(subset.a, bradley_terry_preferences(
        ds, None, 100, pairs_per_segment=4, seed=2).a)


@settings(max_examples=80, deadline=None)
@given(st.integers(2, 25), st.data())
def test_pairs_among_an_explicit_pool_are_balanced_even_when_dense(size, data):
    ds = dataset_with_episodes([40] * 3)
    most = size * (size - 1) // 2
    n_pairs = data.draw(st.integers(0, most))
    rng = np.random.default_rng(size)
    starts = rng.choice(np.arange(0, 120, 2), size=size, replace=False)
    starts = starts[(starts % 40) < 36]
    pool = np.stack([starts, starts + 1 + (starts % 3)], axis=1)
    n_pairs = min(n_pairs, len(pool) * (len(pool) - 1) // 2)
    prefs = bradley_terry_preferences(ds, None, n_pairs, segments=pool,
                                      seed=data.draw(st.integers(0, 100)))
    _pairs_are_balanced(prefs, pool)


def test_explicit_pool_errors():
    ds = dataset_with_episodes([10, 10])
    pool = np.array([[0, 5], [2, 7], [10, 14]])
    prefs = bradley_terry_preferences(ds, None, 3, segments=pool, seed=1)
    _pairs_are_balanced(prefs, pool)
    floats = bradley_terry_preferences(ds, None, 3, segments=pool.astype(float), seed=1)
    np.testing.assert_array_equal(floats.a, prefs.a)
    with pytest.raises(DataError, match=r"toy\.npz: 4 pairs cannot be drawn from 3 rows in "
                                        r"segments= .*at most 3"):
        bradley_terry_preferences(ds, None, 4, segments=pool)
    with pytest.raises(DataError, match=r"^toy\.npz: segments row 1 is \[8, 12\]: not a "
                                        r"non-empty segment inside one episode"):
        bradley_terry_preferences(ds, None, 1, segments=[[0, 5], [8, 12]])
    with pytest.raises(ValueError, match=r"segments rows 0 and 2 are both \[0, 5\]"):
        bradley_terry_preferences(ds, None, 1, segments=[[0, 5], [1, 3], [0, 5]])
    with pytest.raises(ValueError, match=r"shape \(S, 2\).*got \(3,\)"):
        bradley_terry_preferences(ds, None, 1, segments=[0, 5, 7])
    with pytest.raises(ValueError, match="must be integer"):
        bradley_terry_preferences(ds, None, 1, segments=[[0, 5.5], [1, 3]])
    with pytest.raises(ValueError, match="segment_length or segments=, not both"):
        bradley_terry_preferences(ds, None, 1, 5, segments=pool)
    with pytest.raises(ValueError, match="pairs_per_segment or segments=, not both"):
        bradley_terry_preferences(ds, None, 1, segments=pool, pairs_per_segment=2)
    with pytest.raises(ValueError, match="do not apply to segments="):
        bradley_terry_preferences(ds, None, 1, segments=pool, min_length=3)


def test_pool_option_errors():
    ds = dataset_with_episodes([10, 4])
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="pairs_per_segment must be a whole number >= 1"):
            bradley_terry_preferences(ds, None, 5, 3, pairs_per_segment=bad)
    with pytest.raises(ValueError, match="n_pairs must be a whole number >= 0"):
        bradley_terry_preferences(ds, None, -1, 3, pairs_per_segment=2)
    # 12 pairs, at most 2 each: 12 distinct windows of 8 steps, but only 3 fit
    with pytest.raises(DataError, match=r"^toy\.npz: pairs_per_segment=2 with 12 pairs needs 12 "
                                        r"distinct segments; only 3 segments of 8 transitions"):
        bradley_terry_preferences(ds, None, 12, 8, pairs_per_segment=2)
    with pytest.raises(DataError, match=r"needs 4 distinct segments; only 2 episodes qualify"):
        bradley_terry_preferences(ds, None, 4, None, pairs_per_segment=2)
    # 10 pairs at most 9 each: a pool of 3 has only 3 distinct pairs
    with pytest.raises(DataError, match=r"10 pairs cannot be drawn from a pool of 3 segments "
                                        r"\(pairs_per_segment=9\) .*at most 3\); use fewer pairs"):
        bradley_terry_preferences(ds, None, 10, 2, pairs_per_segment=9)
    with pytest.raises(ValueError, match=r"min_length and max_length choose whole episodes "
                                         r"\(segment_length=None\); with segment_length=3"):
        bradley_terry_preferences(ds, None, 2, 3, max_length=5)
    empty = bradley_terry_preferences(ds, None, 0, 3, pairs_per_segment=2)
    assert len(empty) == 0 and empty.a.shape == (0, 2)


# ---------------------------------------------------------------------- ties and annotators


@settings(max_examples=60, deadline=None)
@given(st.floats(0.01, 3.0), st.sampled_from([0.0, 0.5, 2.0]), st.booleans(),
       st.booleans(), st.integers(0, 1000))
def test_ties_are_one_half_exactly_where_returns_are_closer_than_the_threshold(
        threshold, temperature, soft, pooled, seed):
    ds = dataset_with_episodes([12, 9, 15, 11])
    options = {"temperature": temperature, "soft": soft, "seed": seed}
    if pooled:
        options["pairs_per_segment"] = 3
    plain = bradley_terry_preferences(ds, None, 30, 4, **options)
    tied = bradley_terry_preferences(ds, None, 30, 4, tie_threshold=threshold, **options)
    np.testing.assert_array_equal(tied.a, plain.a)
    np.testing.assert_array_equal(tied.b, plain.b)
    diff = segment_returns(ds.rewards, tied.a) - segment_returns(ds.rewards, tied.b)
    close = np.abs(diff) < threshold
    assert np.all(tied.label[close] == 0.5)
    np.testing.assert_array_equal(tied.label[~close], plain.label[~close])


def test_tie_threshold_errors_and_zero_default():
    ds = dataset_with_episodes([20, 20])
    base = bradley_terry_preferences(ds, None, 50, 5, seed=1)
    same = bradley_terry_preferences(ds, None, 50, 5, seed=1, tie_threshold=0.0)
    np.testing.assert_array_equal(base.label, same.label)
    for bad in (-0.1, float("nan"), float("inf"), "1"):
        with pytest.raises(ValueError, match="tie_threshold must be finite and >= 0"):
            bradley_terry_preferences(ds, None, 5, 5, tie_threshold=bad)


def test_annotators_label_the_same_pairs_independently():
    ds = dataset_with_episodes([40, 40, 40])
    one = bradley_terry_preferences(ds, None, 200, 6, seed=9)
    three = bradley_terry_preferences(ds, None, 200, 6, seed=9, annotators=3)
    assert len(three) == 600
    for j in range(3):  # annotator-major blocks with the same segments
        np.testing.assert_array_equal(three.a[200 * j:200 * (j + 1)], one.a)
        np.testing.assert_array_equal(three.b[200 * j:200 * (j + 1)], one.b)
    labels = three.label.reshape(3, 200)
    np.testing.assert_array_equal(labels[0], one.label)  # the first annotator is today's
    assert set(np.unique(labels).tolist()) <= {0.0, 1.0}
    assert (labels[1] != labels[2]).any() and (labels[1] == labels[2]).mean() > 0.5
    ds.replace(preferences=three)  # duplicate pairs that disagree are valid data
    again = bradley_terry_preferences(ds, None, 200, 6, seed=9, annotators=3)
    np.testing.assert_array_equal(again.label, three.label)


def test_annotators_with_their_own_temperatures():
    ds = dataset_with_episodes([30, 30])
    soft = bradley_terry_preferences(ds, None, 40, 5, seed=2, soft=True, annotators=3,
                                     temperature=[0.0, 1.0, 4.0])
    diff = (segment_returns(ds.rewards, soft.a[:40]) - segment_returns(ds.rewards, soft.b[:40]))
    labels = soft.label.reshape(3, 40)
    np.testing.assert_array_equal(labels[0], np.where(diff > 0, 1.0, np.where(diff < 0, 0, 0.5)))
    np.testing.assert_allclose(labels[1], 1 / (1 + np.exp(-diff)), rtol=1e-12)
    np.testing.assert_allclose(labels[2], 1 / (1 + np.exp(-diff / 4.0)), rtol=1e-12)
    hard = bradley_terry_preferences(ds, None, 400, 5, seed=2, annotators=2,
                                     temperature=[0.0, 3.0], tie_threshold=0.2)
    labels = hard.label.reshape(2, 400)
    diff = (segment_returns(ds.rewards, hard.a[:400]) - segment_returns(ds.rewards, hard.b[:400]))
    rational = np.where(np.abs(diff) < 0.2, 0.5, (diff > 0).astype(float))
    np.testing.assert_array_equal(labels[0], rational)
    assert np.mean(labels[1] != labels[0]) > 0.1  # the careless one disagrees
    with pytest.raises(ValueError, match=r"temperature has 2 values, one per annotator, but "
                                         r"annotators=3"):
        bradley_terry_preferences(ds, None, 5, 5, annotators=3, temperature=[1.0, 2.0])
    with pytest.raises(ValueError, match=r"temperature\[1\] must be finite and >= 0, got -2"):
        bradley_terry_preferences(ds, None, 5, 5, annotators=2, temperature=[1.0, -2])
    for bad in (0, 1.0, False):
        with pytest.raises(ValueError, match="annotators must be a whole number >= 1"):
            bradley_terry_preferences(ds, None, 5, 5, annotators=bad)


def test_every_option_is_deterministic_for_a_seed():
    ds = dataset_with_episodes([25, 7, 30, 18, 22, 40])
    options = {"pairs_per_segment": 3, "tie_threshold": 0.3, "annotators": 2,
               "temperature": [0.5, 2.0], "min_length": 10, "max_length": 20}
    first = bradley_terry_preferences(ds, None, 6, **options, seed=5)
    second = bradley_terry_preferences(ds, None, 6, **options, seed=5)
    for x, y in ((first.a, second.a), (first.b, second.b), (first.label, second.label)):
        np.testing.assert_array_equal(x, y)
    other = bradley_terry_preferences(ds, None, 6, **options, seed=6)
    assert not (np.array_equal(first.a, other.a) and np.array_equal(first.label, other.label))
    attached = ds.replace(preferences=first)
    assert len(attached.preferences) == 12


# ---------------------------------------------------------------------- rankings options


def test_rankings_of_whole_episodes():
    ds = dataset_with_episodes([6, 2, 9, 4, 7])
    every = rankings_from_rewards(ds, None, None)
    np.testing.assert_array_equal(every.segments, episode_segments(ds))
    np.testing.assert_allclose(every.scores, np.add.reduceat(ds.rewards, ds.episode_starts))
    some = rankings_from_rewards(ds, None, 3, min_length=4, max_length=5, seed=1)
    assert len(some) == 3 and len(np.unique(some.segments, axis=0)) == 3
    assert set(map(tuple, some.segments.tolist())) <= set(
        map(tuple, episode_segments(ds, 4, 5).tolist()))
    np.testing.assert_array_equal(
        some.segments, rankings_from_rewards(ds, None, 3, min_length=4, max_length=5,
                                             seed=1).segments)
    with pytest.raises(DataError, match=r"^toy\.npz: n_segments=4 needs 4 distinct segments; "
                                        r"only 3 episodes qualify"):
        rankings_from_rewards(ds, None, 4, min_length=5)
    with pytest.raises(ValueError, match=r"n_segments=None \(all of them\) needs whole episodes"):
        rankings_from_rewards(ds, None, None, 3)
    with pytest.raises(ValueError, match="n_segments must be a whole number >= 0"):
        rankings_from_rewards(ds, None, -2)
    pool = np.array([[0, 3], [6, 8], [21, 24]])
    mine = rankings_from_rewards(ds, None, None, segments=pool)
    np.testing.assert_array_equal(mine.segments, pool)
    np.testing.assert_allclose(mine.scores, naive_returns(ds.rewards, pool))
    with pytest.raises(ValueError, match="segments rows 0 and 1"):
        rankings_from_rewards(ds, None, None, segments=[[0, 3], [0, 3]])


@settings(max_examples=50, deadline=None)
@given(st.floats(0.05, 5.0), st.floats(0.0, 1.0), st.integers(0, 1000))
def test_score_step_ties_exactly_the_scores_in_the_same_step(step, noise, seed):
    ds = dataset_with_episodes([10, 10, 10, 10])
    plain = rankings_from_rewards(ds, None, 30, 3, noise=noise, seed=seed)
    rated = rankings_from_rewards(ds, None, 30, 3, noise=noise, seed=seed, score_step=step)
    np.testing.assert_array_equal(rated.segments, plain.segments)
    np.testing.assert_array_equal(rated.scores, np.floor(plain.scores / step) * step)
    bins = np.floor(plain.scores / step)
    same = rated.scores[:, None] == rated.scores[None, :]
    np.testing.assert_array_equal(same, bins[:, None] == bins[None, :])
    assert np.all(np.abs(plain.scores[:, None] - plain.scores[None, :])[same] < step)


def test_ranking_annotators_score_the_same_segments_with_their_own_noise():
    ds = dataset_with_episodes([50, 50])
    one = rankings_from_rewards(ds, None, 20, 5, noise=0.5, seed=4)
    two = rankings_from_rewards(ds, None, 20, 5, noise=[0.5, 0.0], annotators=2, seed=4)
    np.testing.assert_array_equal(two.segments, np.tile(one.segments, (2, 1)))
    scores = two.scores.reshape(2, 20)
    np.testing.assert_array_equal(scores[0], one.scores)  # the first annotator is today's
    np.testing.assert_allclose(scores[1], naive_returns(ds.rewards, one.segments))
    ds.replace(rankings=two)  # duplicated ranked segments are valid data
    with pytest.raises(ValueError, match="noise has 1 values, one per annotator"):
        rankings_from_rewards(ds, None, 5, 5, noise=[0.5], annotators=2)
    with pytest.raises(ValueError, match="noise must be finite and >= 0, got -1"):
        rankings_from_rewards(ds, None, 5, 5, noise=-1)
    with pytest.raises(ValueError, match="score_step must be finite and >= 0"):
        rankings_from_rewards(ds, None, 5, 5, score_step=-1.0)
