"""Dataset construction, episode structure and validation messages (file, key, first bad row)."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from symreward.data import Dataset, Preferences, Rankings
from symreward.errors import DataError, SymrewardError

SRC = "data.npz"


def make_arrays(n: int = 10, obs_dim: int = 3, act_dim: int = 2, dtype=np.float32) -> dict:
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(n + 1, obs_dim)).astype(dtype)
    terminals = np.zeros(n, dtype=bool)
    timeouts = np.zeros(n, dtype=bool)
    timeouts[4] = True  # episodes: [0, 5), [5, n)
    return {
        "observations": obs[:-1],
        "actions": rng.normal(size=(n, act_dim)).astype(dtype),
        "next_observations": obs[1:],
        "terminals": terminals,
        "timeouts": timeouts,
        "rewards": rng.normal(size=n),
    }


def build(**changes) -> Dataset:
    arrays = make_arrays()
    arrays.update(changes)
    return Dataset(**arrays, source=SRC)


def test_properties_and_episode_structure():
    ds = build()
    assert (ds.n, ds.obs_dim, ds.act_dim, len(ds)) == (10, 3, 2, 10)
    assert ds.episode_starts.tolist() == [0, 5]
    assert ds.episode_ends.tolist() == [5, 10]
    assert ds.episode_ids.tolist() == [0] * 5 + [1] * 5
    assert ds.n_episodes == 2
    assert ds.episode_lengths.tolist() == [5, 5]
    assert ds.segment_in_one_episode(0, 5)
    assert not ds.segment_in_one_episode(3, 7)
    assert not ds.segment_in_one_episode(5, 5)
    assert not ds.segment_in_one_episode(8, 11)
    assert ds.segments_in_one_episode(np.array([[0, 5], [3, 7], [5, 10], [9, 9]])).tolist() == [
        True, False, True, False,
    ]


def test_terminal_also_ends_an_episode_and_last_row_always_closes():
    terminals = np.zeros(10, dtype=bool)
    terminals[2] = True
    ds = build(terminals=terminals, timeouts=np.zeros(10, dtype=bool))
    assert ds.episode_ends.tolist() == [3, 10]


def test_float_arrays_are_not_copied_and_keep_dtype():
    arrays = make_arrays(dtype=np.float32)
    ds = Dataset(**arrays, source=SRC)
    assert ds.observations.dtype == np.float32
    assert ds.actions.dtype == np.float32
    assert np.shares_memory(ds.observations, arrays["observations"])
    assert np.shares_memory(ds.actions, arrays["actions"])
    ds64 = Dataset(**make_arrays(dtype=np.float64))
    assert ds64.observations.dtype == np.float64


def test_integer_actions_and_flags_are_normalised():
    ds = build(actions=np.arange(20).reshape(10, 2), terminals=np.zeros(10, dtype=np.int8),
               timeouts=np.array([0, 0, 0, 0, 1, 0, 0, 0, 0, 0], dtype=float))
    assert ds.actions.dtype == np.float64
    assert ds.timeouts.dtype == bool and ds.timeouts[4]
    assert ds.rewards.dtype == np.float64


def test_huge_finite_values_are_not_mistaken_for_inf():
    """The fast finiteness check sums the array; a float32 overflow there must not be an error."""
    obs = np.full((10, 3), 3e38, dtype=np.float32)
    ds = build(observations=obs, next_observations=obs)
    assert np.isfinite(ds.observations).all()


def test_validate_false_trusts_the_producer_but_normalises_types():
    arrays = make_arrays()
    arrays["observations"] = arrays["observations"].tolist()
    arrays["terminals"] = np.zeros(10, dtype=np.int64)
    ds = Dataset(**arrays, validate=False)
    assert ds.observations.shape == (10, 3) and ds.terminals.dtype == bool
    assert not ds.observations.flags.writeable


def test_dataset_is_read_only():
    ds = build()
    with pytest.raises(ValueError, match="read-only"):
        ds.observations[0, 0] = 1.0
    with pytest.raises(AttributeError):
        ds.rewards = None  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        ds.episode_ids[0] = 3


def test_replace_returns_a_new_validated_dataset():
    ds = build()
    prefs = Preferences(np.array([[0, 2]]), np.array([[5, 7]]), np.array([1.0]))
    ds2 = ds.replace(preferences=prefs)
    assert ds.preferences is None
    assert ds2.preferences is not None and ds2.preferences.a.dtype == np.int64
    assert ds2.preferences.label.tolist() == [1.0]
    assert ds2.observations is not None and np.shares_memory(ds2.observations, ds.observations)
    bad = Preferences(np.array([[0, 7]]), np.array([[5, 7]]), np.array([1.0]))
    with pytest.raises(DataError, match="crosses an episode boundary"):
        ds.replace(preferences=bad)


def test_from_arrays_to_arrays_round_trip():
    arrays = make_arrays()
    arrays["infos/x_velocity"] = np.linspace(0, 1, 10)
    arrays["pref_a"] = np.array([[0, 2], [5, 6]])
    arrays["pref_b"] = np.array([[2, 4], [7, 9]])
    arrays["pref_label"] = np.array([0.25, 1.0])
    arrays["rank_segments"] = np.array([[0, 1]])
    arrays["rank_scores"] = np.array([3.0])
    arrays["expert"] = np.arange(10) < 5
    ds = Dataset.from_arrays(arrays, source=SRC)
    assert set(ds.infos) == {"x_velocity"}
    back = ds.to_arrays()
    assert set(back) == set(arrays)
    for key, value in arrays.items():
        np.testing.assert_array_equal(back[key], value)


def test_repr_is_short():
    text = repr(build())
    assert "n=10" in text and SRC in text and len(text) < 300


def test_segment_dtype_coercion_keeps_integral_floats_and_rejects_fractions():
    ds = build(preferences=Preferences(np.array([[0.0, 2.0]]), np.array([[5, 7]]), [0.5]))
    assert ds.preferences.a.dtype == np.int64
    with pytest.raises(DataError, match=r"data\.npz: key 'pref_a': row 0 .* must be integers"):
        build(preferences=Preferences(np.array([[0.5, 2.0]]), np.array([[5, 7]]), [0.5]))


# ---------------------------------------------------------------------- validation messages


def _check(match: str, **changes) -> None:
    with pytest.raises(DataError) as info:
        build(**changes)
    message = str(info.value)
    assert message.startswith(f"{SRC}: "), message
    assert re.search(match, message), message
    assert isinstance(info.value, SymrewardError)


def with_nan(key: str, row: int, col: int = 0) -> dict:
    arr = np.array(make_arrays()[key], dtype=np.float64)
    arr[row, col] = np.nan if key != "actions" else np.inf
    return {key: arr}


@pytest.mark.parametrize("key", ["observations", "next_observations", "actions"])
def test_non_finite_rows_named(key):
    _check(rf"key '{key}': row 7 has NaN or inf \(column 1", **with_nan(key, 7, 1))


def test_first_bad_row_is_reported():
    arr = np.array(make_arrays()["observations"])
    arr[8, 0] = np.nan
    arr[3, 2] = np.inf
    _check(r"key 'observations': row 3 has NaN or inf \(column 2", observations=arr)


def test_missing_required_key():
    _check(r"missing required key 'next_observations'", next_observations=None)


def test_one_dimensional_observations_rejected_with_hint():
    _check(r"key 'observations': must be 2-D .*\(N, obs_dim\).*shape \(10,\).*x\[:, None\]",
           observations=np.zeros(10), next_observations=np.zeros(10))


def test_one_dimensional_actions_rejected():
    _check(r"key 'actions': must be 2-D with shape \(N, act_dim\); got shape \(10,\)",
           actions=np.zeros(10))


def test_row_count_mismatch_names_both_keys_and_shapes():
    _check(r"key 'actions' has 9 rows \(shape \(9, 2\)\) but key 'observations' has 10 rows "
           r"\(shape \(10, 3\)\)", actions=np.zeros((9, 2)))


def test_next_observation_shape_mismatch():
    _check(r"key 'next_observations' has shape \(10, 4\) but key 'observations' has shape "
           r"\(10, 3\)", next_observations=np.zeros((10, 4)))


def test_empty_dataset_rejected():
    _check(r"key 'observations': the dataset has no transitions",
           observations=np.zeros((0, 3)), actions=np.zeros((0, 2)),
           next_observations=np.zeros((0, 3)), terminals=np.zeros(0), timeouts=np.zeros(0),
           rewards=None)


def test_non_numeric_array_rejected():
    _check(r"key 'actions': expected numbers, got dtype <U1", actions=np.full((10, 2), "a"))


def test_flag_with_wrong_length():
    _check(r"key 'terminals' has shape \(9,\) but key 'observations' has 10 rows",
           terminals=np.zeros(9, dtype=bool))


def test_flag_with_non_boolean_value():
    timeouts = np.zeros(10)
    timeouts[6] = 2.0
    _check(r"key 'timeouts': row 6 is .*2.*expected a boolean", timeouts=timeouts)


def test_rewards_non_finite_and_wrong_length():
    rewards = np.zeros(10)
    rewards[4] = np.nan
    _check(r"key 'rewards': row 4 is nan", rewards=rewards)
    _check(r"key 'rewards' has shape \(11,\)", rewards=np.zeros(11))


def test_infos_wrong_length_and_non_finite():
    _check(r"key 'infos/x' has shape \(8,\) but key 'observations' has 10 rows",
           infos={"x": np.zeros(8)})
    bad = np.zeros(10)
    bad[9] = -np.inf
    _check(r"key 'infos/x': row 9 is -inf", infos={"x": bad})


def test_expert_mask_wrong_length():
    _check(r"key 'expert' has shape \(12,\) but key 'observations' has 10 rows",
           expert=np.zeros(12, dtype=bool))


def prefs(a, b, label) -> dict:
    return {"preferences": Preferences(np.array(a), np.array(b), np.array(label, dtype=float))}


def test_preference_segment_out_of_range():
    _check(r"key 'pref_b': row 1 is \[8, 11\]: out of range for 10 transitions",
           **prefs([[0, 2], [5, 6]], [[2, 4], [8, 11]], [1.0, 0.0]))
    _check(r"key 'pref_a': row 0 is \[-1, 2\]: out of range",
           **prefs([[-1, 2]], [[2, 4]], [1.0]))


def test_preference_segment_empty():
    _check(r"key 'pref_a': row 1 is \[6, 6\]: empty segment \(stop <= start\)",
           **prefs([[0, 2], [6, 6]], [[2, 4], [7, 9]], [1.0, 0.0]))


def test_preference_segment_crossing_episode_boundary():
    _check(r"key 'pref_a': row 1 is \[3, 7\]: crosses an episode boundary \(an episode ends at "
           r"transition 4",
           **prefs([[0, 2], [3, 7]], [[2, 4], [7, 9]], [1.0, 0.0]))


@pytest.mark.parametrize("value", [1.5, -0.1, np.nan])
def test_preference_label_outside_unit_interval(value):
    _check(r"key 'pref_label': row 1 is .*labels are probabilities in \[0, 1\]",
           **prefs([[0, 2], [5, 6]], [[2, 4], [7, 9]], [1.0, value]))


def test_preference_length_mismatch():
    _check(r"keys 'pref_a' \(2, 2\), 'pref_b' \(1, 2\) and 'pref_label' \(2,\) must have the "
           r"same number of rows", **prefs([[0, 2], [5, 6]], [[2, 4]], [1.0, 0.0]))


def test_preference_segments_wrong_shape():
    _check(r"key 'pref_a': must have shape \(P, 2\)", **prefs([0, 2], [[2, 4]], [1.0]))


def test_rankings_length_mismatch():
    ranks = Rankings(np.array([[0, 2], [5, 7]]), np.array([1.0, 2.0, 3.0]))
    _check(r"key 'rank_scores' has shape \(3,\) but key 'rank_segments' has shape \(2, 2\)",
           rankings=ranks)


def test_rankings_bad_segment_and_score():
    _check(r"key 'rank_segments': row 0 is \[4, 6\]: crosses an episode boundary",
           rankings=Rankings(np.array([[4, 6]]), np.array([1.0])))
    _check(r"key 'rank_scores': row 1 is inf",
           rankings=Rankings(np.array([[0, 1], [1, 2]]), np.array([1.0, np.inf])))


def test_bad_info_name():
    _check(r"info name 'a/b' is not a plain name", infos={"a/b": np.zeros(10)})


def test_from_arrays_missing_and_partial_keys():
    arrays = make_arrays()
    del arrays["next_observations"]
    with pytest.raises(DataError, match=r"^data\.npz: missing required key 'next_observations' "
                                        r"\(some D4RL files omit it; symreward requires it"):
        Dataset.from_arrays(arrays, source=SRC)
    arrays = make_arrays()
    arrays["pref_a"] = np.array([[0, 1]])
    arrays["pref_label"] = np.array([1.0])
    with pytest.raises(DataError, match=r"^data\.npz: key 'pref_b' is missing: pref_a, pref_b "
                                        r"and pref_label go together"):
        Dataset.from_arrays(arrays, source=SRC)
    arrays = make_arrays()
    arrays["rank_scores"] = np.array([1.0])
    with pytest.raises(DataError, match=r"key 'rank_segments' is missing"):
        Dataset.from_arrays(arrays, source=SRC)


# ---------------------------------------------------------------------- properties


@st.composite
def flag_arrays(draw):
    n = draw(st.integers(1, 60))
    terminals = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    timeouts = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    return terminals, timeouts


@settings(max_examples=60, deadline=None)
@given(flag_arrays())
def test_episode_structure_is_consistent(flags):
    terminals, timeouts = flags
    n = terminals.shape[0]
    ds = Dataset(np.zeros((n, 1)), np.zeros((n, 1)), np.zeros((n, 1)), terminals, timeouts)
    starts, ends, ids = ds.episode_starts, ds.episode_ends, ds.episode_ids
    assert starts[0] == 0 and ends[-1] == n
    assert np.all(ends > starts)
    np.testing.assert_array_equal(starts[1:], ends[:-1])
    assert ds.episode_lengths.sum() == n
    for k, (s, e) in enumerate(zip(starts, ends, strict=True)):
        assert np.all(ids[s:e] == k)
        # every episode but the last ends on a flagged row; nothing inside is flagged
        done = terminals[s:e] | timeouts[s:e]
        assert not done[:-1].any()
        assert done[-1] or e == n


# ---------------------------------------------------------------------- data shaped like people's


def test_people_shaped_preferences_are_accepted_row_for_row():
    # episodes [0, 5) and [5, 10): a pool of clips, each in several pairs, some overlapping
    a = [[0, 3], [0, 3], [0, 3], [5, 8], [1, 4], [6, 9], [2, 5]]
    b = [[5, 8], [5, 8], [5, 8], [0, 3], [2, 5], [6, 9], [2, 5]]
    # three annotators on one pair who disagree, the same pair reversed, a tie, soft labels,
    # a segment against itself (uninformative, accepted with any label)
    label = [1.0, 0.0, 1.0, 0.5, 0.25, 1.0, 0.5]
    ds = build(**prefs(a, b, label))
    assert len(ds.preferences) == 7
    np.testing.assert_array_equal(ds.preferences.a, a)
    np.testing.assert_array_equal(ds.preferences.b, b)
    np.testing.assert_array_equal(ds.preferences.label, label)
    back = Dataset.from_arrays(ds.to_arrays(), source=SRC)
    np.testing.assert_array_equal(back.preferences.label, label)
    np.testing.assert_array_equal(back.preferences.a, a)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([(0, 2), (1, 4), (0, 5), (5, 7), (6, 10), (5, 10)]),
                          st.sampled_from([(0, 2), (1, 4), (5, 10)]),
                          st.one_of(st.sampled_from([0.0, 0.5, 1.0]), st.floats(0.0, 1.0))),
                min_size=1, max_size=30))
def test_any_repeats_ties_and_probabilities_are_valid(rows):
    a, b, label = (list(x) for x in zip(*rows, strict=True))
    ds = build(**prefs(a, b, label))
    np.testing.assert_array_equal(ds.preferences.a, a)
    np.testing.assert_array_equal(ds.preferences.label, label)


def test_duplicated_ranked_segments_and_tied_scores_are_accepted():
    segments = np.array([[0, 3], [5, 8], [0, 3], [5, 8], [1, 4], [0, 3]])
    scores = np.array([1.0, 2.0, 1.5, 2.0, 1.0, 1.0])  # two annotators, ties, a repeat
    ds = build(rankings=Rankings(segments, scores))
    np.testing.assert_array_equal(ds.rankings.segments, segments)
    np.testing.assert_array_equal(ds.rankings.scores, scores)
