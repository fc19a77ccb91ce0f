"""The synthetic oracle: segments, Bradley–Terry preferences, rankings and expert masks."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from symreward.data import (
    Dataset,
    bradley_terry_preferences,
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
    assert soft.label.tolist() == [0.5424301484799712, 0.716260340238561, 0.4914751041238543,
                                   0.003610198682079637]


@pytest.mark.parametrize(("options", "digest"), [
    ({}, "837098fa127be2f4"),
    ({"soft": True}, "96b47bb3a4009164"),
    ({"temperature": 0.0}, "426698c3952b696c"),
    ({"temperature": 3.0, "discount": 0.9}, "5164285e11ee0057"),
])
def test_default_preferences_are_todays_draws_byte_for_byte(options, digest):
    ds = dataset_with_episodes([50] * 40 + [7, 120])
    p = bradley_terry_preferences(ds, None, 500, 10, seed=11, **options)
    assert _digest(p.a, p.b, p.label) == digest


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
