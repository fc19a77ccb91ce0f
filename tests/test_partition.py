"""Cross-validation units: balanced partitions that keep linked units together, and preference
folds that never validate on a pair sharing a segment with a pair they train on."""

import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from symreward.data import Dataset, Preferences
from symreward.objectives import PreferenceObjective
from symreward.partition import BALANCE_SLACK, partition_units


@st.composite
def link_sets(draw):
    n_units = draw(st.integers(1, 60))
    n_links = draw(st.integers(0, 150))
    first = draw(st.lists(st.integers(0, n_units - 1), min_size=n_links, max_size=n_links))
    second = draw(st.lists(st.integers(0, n_units - 1), min_size=n_links, max_size=n_links))
    return n_units, np.asarray(first, dtype=np.int64), np.asarray(second, dtype=np.int64)


@settings(max_examples=200, deadline=None)
@given(link_sets(), st.integers(1, 7), st.integers(0, 3), st.booleans())
def test_parts_are_disjoint_non_empty_and_cover_the_units(links, n_parts, seed, subset):
    n_units, first, second = links
    units = np.arange(0, n_units, 2) if subset else np.arange(n_units)
    parts = partition_units(n_parts, seed, units, (first, second))
    assert 1 <= len(parts) <= min(n_parts, len(units))
    assert all(len(part) for part in parts)
    assert all(np.array_equal(part, np.sort(part)) for part in parts)
    assert np.array_equal(np.sort(np.concatenate(parts)), units)
    again = partition_units(n_parts, seed, units, (first, second))
    assert [p.tolist() for p in parts] == [p.tolist() for p in again]


@settings(max_examples=100, deadline=None)
@given(st.integers(2, 200), st.integers(2, 6), st.integers(0, 5))
def test_pairs_of_fresh_segments_are_never_cut(n_pairs, n_parts, seed):
    """Without reuse every pair's two segments land in the same part: all pairs validate."""
    order = np.random.default_rng(seed).permutation(2 * n_pairs)
    first, second = order[:n_pairs], order[n_pairs:]
    parts = partition_units(n_parts, seed, np.arange(2 * n_pairs), (first, second))
    part_of = np.empty(2 * n_pairs, dtype=int)
    for k, part in enumerate(parts):
        part_of[part] = k
    assert np.all(part_of[first] == part_of[second])
    assert len(parts) == min(n_parts, n_pairs)


def pool_links(n_segments: int, n_pairs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    first = rng.integers(n_segments, size=n_pairs)
    second = (first + 1 + rng.integers(n_segments - 1, size=n_pairs)) % n_segments
    return first, second


def test_a_reused_pool_keeps_most_pairs_inside_balanced_parts():
    """1000 pairs among 400 segments (each in five pairs), five parts: a random split keeps a
    fifth of the pairs inside a part; the partition keeps over half (55-57% measured on these
    seeds; the arithmetic is integer, so every machine gets the same parts)."""
    for seed in range(5):
        first, second = pool_links(400, 1000, seed)
        parts = partition_units(5, seed, np.arange(400), (first, second))
        part_of = np.empty(400, dtype=int)
        for k, part in enumerate(parts):
            part_of[part] = k
        inside = part_of[first] == part_of[second]
        assert inside.mean() > 0.5, (seed, inside.mean())
        degree = np.bincount(first, minlength=400) + np.bincount(second, minlength=400)
        loads = np.bincount(part_of, weights=np.maximum(degree, 1), minlength=5)
        assert loads.max() <= loads.sum() / 5 * (1 + BALANCE_SLACK) + degree.max()


def test_without_links_parts_are_a_seeded_equal_split():
    parts = partition_units(4, 7, np.arange(10))
    expected = np.array_split(np.random.default_rng(7).permutation(10), 4)
    assert [p.tolist() for p in parts] == [np.sort(e).tolist() for e in expected]


def walk(n: int = 400, episode: int = 40) -> Dataset:
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(n, 2))
    return Dataset(observations=obs, actions=rng.normal(size=(n, 1)), next_observations=obs,
                   terminals=np.zeros(n, bool), timeouts=np.arange(n) % episode == episode - 1)


@st.composite
def preference_sets(draw):
    n_segments = draw(st.integers(2, 30))
    starts = draw(st.lists(st.integers(0, 38), min_size=n_segments, max_size=n_segments))
    episodes = draw(st.lists(st.integers(0, 9), min_size=n_segments, max_size=n_segments))
    lengths = draw(st.lists(st.integers(1, 2), min_size=n_segments, max_size=n_segments))
    pool = np.array([[40 * e + s, 40 * e + s + n] for e, s, n in
                     zip(episodes, starts, lengths, strict=True)])
    n_pairs = draw(st.integers(1, 60))
    a = draw(st.lists(st.integers(0, n_segments - 1), min_size=n_pairs, max_size=n_pairs))
    b = draw(st.lists(st.integers(0, n_segments - 1), min_size=n_pairs, max_size=n_pairs))
    labels = draw(st.lists(st.sampled_from([0.0, 0.5, 1.0]), min_size=n_pairs,
                           max_size=n_pairs))
    return Preferences(pool[a], pool[b], np.asarray(labels))


@settings(max_examples=150, deadline=None)
@given(preference_sets(), st.integers(2, 6), st.integers(0, 3))
def test_no_validation_pair_shares_a_segment_with_a_training_pair(prefs, n_folds, seed):
    assume(len(set(prefs.label.tolist())) > 1)  # else refused before any fold exists
    objective = PreferenceObjective(walk().replace(preferences=prefs))
    units = np.arange(objective.n_units)
    validated = np.zeros(len(prefs), dtype=int)
    for fold in objective.folds(n_folds, seed):
        held = objective.members(fold)
        trained = objective.members(np.setdiff1d(units, fold))
        validated[held] += 1
        held_segments = {tuple(s) for s in np.concatenate([prefs.a[held], prefs.b[held]])}
        trained_segments = {tuple(s) for s in np.concatenate([prefs.a[trained],
                                                              prefs.b[trained]])}
        assert not held_segments & trained_segments
        assert np.intersect1d(held, trained).size == 0
    assert validated.max(initial=0) <= 1
