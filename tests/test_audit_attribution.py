"""Attribution: term shares that sum to 1, the worst-predicted pairs, calibration."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from support import random_walk

from symreward.audit.attribution import (
    attribute,
    calibration,
    pair_predictions,
    pair_shares,
    variance_shares,
)
from symreward.data import Preferences
from symreward.errors import SymrewardError

values = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


def columns_strategy(min_rows=2, max_rows=40, max_terms=5):
    return st.tuples(st.integers(min_rows, max_rows), st.integers(1, max_terms)).flatmap(
        lambda shape: arrays(np.float64, shape, elements=values))


def sums_to_one(shares):
    return abs(float(np.sum(shares)) - 1.0) <= 1e-9 * max(1.0, float(np.sum(np.abs(shares))))


@settings(max_examples=200, deadline=None)
@given(columns_strategy())
def test_variance_shares_sum_to_one(columns):
    shares = variance_shares(columns)
    total = columns.sum(axis=1)
    if shares is None:  # only when the reward does not vary
        assert np.ptp(total) <= 1e-9 * max(1.0, np.abs(columns).max())
    else:
        assert shares.shape == (columns.shape[1],) and sums_to_one(shares)


@settings(max_examples=100, deadline=None)
@given(columns_strategy(max_terms=4), st.floats(-50, 50), st.floats(0.1, 10))
def test_correlated_terms_get_their_covariance_share(columns, weight, spread):
    """A copy of a term scaled by ``weight`` and added as another term: the two split their
    joint share in proportion to their coefficients (1 : weight), negative where they cancel."""
    base = columns[:, 0] * spread
    if np.ptp(base) == 0:
        return
    pair = np.column_stack([base, weight * base])
    shares = variance_shares(pair)
    if abs(1 + weight) < 1e-6:  # they cancel exactly: no reward variance left to split
        return
    assert shares is not None and sums_to_one(shares)
    assert shares[0] == pytest.approx(1 / (1 + weight), rel=1e-7, abs=1e-9)
    assert shares[1] == pytest.approx(weight / (1 + weight), rel=1e-7, abs=1e-9)


def test_uncorrelated_terms_get_their_variance_ratio():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 500))
    a -= a.mean()
    b -= b.mean()
    b -= (a @ b) / (a @ a) * a  # exactly uncorrelated with a
    columns = np.column_stack([3 * a, b])
    shares = variance_shares(columns)
    ratio = np.var(3 * a) / (np.var(3 * a) + np.var(b))
    assert shares == pytest.approx([ratio, 1 - ratio], rel=1e-12)


@settings(max_examples=200, deadline=None)
@given(columns_strategy(min_rows=1), st.data())
def test_pair_shares_sum_to_one_and_ignore_which_segment_is_a(differences, data):
    shares = pair_shares(differences)
    if shares is None:
        assert not np.any(differences.sum(axis=1))
        return
    assert sums_to_one(shares)
    flips = data.draw(arrays(np.bool_, len(differences)))
    flipped = np.where(flips[:, None], -differences, differences)
    assert pair_shares(flipped) == pytest.approx(shares, rel=1e-9, abs=1e-12)


def test_shares_refuse_non_finite_columns():
    with pytest.raises(SymrewardError, match="NaN or inf"):
        variance_shares(np.array([[1.0, np.inf], [2.0, 1.0]]))


# ------------------------------------------------------------------------------ pairs


def likelihoods(rewards, prefs, noise=0.0):
    """P(label) under Bradley–Terry, pair by pair, from plain loops over the segments."""
    out = []
    for (a0, a1), (b0, b1), y in zip(prefs.a, prefs.b, prefs.label, strict=True):
        z = sum(rewards[a0:a1]) - sum(rewards[b0:b1])
        q = noise / 2 + (1 - noise) / (1 + math.exp(-z))
        out.append(q if y == 1 else 1 - q)
    return np.array(out)


def walk_with_pairs(seed=0, pairs=80, length=5):
    dataset = random_walk(400, episode=50, seed=seed, obs_dim=2)
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, 400 - length, size=(pairs, 2))
    a = np.column_stack([starts[:, 0], starts[:, 0] + length])
    b = np.column_stack([starts[:, 1], starts[:, 1] + length])
    labels = rng.integers(0, 2, size=pairs).astype(float)
    # keep segments inside one episode (the data contract)
    inside = (dataset.segments_in_one_episode(a) & dataset.segments_in_one_episode(b))
    prefs = Preferences(a[inside], b[inside], labels[inside])
    return dataset.replace(preferences=prefs)


@pytest.mark.parametrize("noise", [0.0, 0.2])
def test_worst_pairs_are_the_least_likely_labels(noise):
    dataset = walk_with_pairs()
    obs = dataset.observations
    columns = np.column_stack([-obs[:, 0] ** 2, 0.5 * obs[:, 1]])
    predictions = pair_predictions(columns, dataset, noise=noise)
    result = attribute(columns, ["a", "b"], predictions, dataset, worst=7)
    likelihood = likelihoods(columns.sum(axis=1), dataset.preferences, noise)
    listed = [p.pair for p in result.worst_pairs]
    assert len(listed) == 7
    assert listed == sorted(listed, key=lambda p: likelihood[p])  # worst first
    others = np.setdiff1d(np.arange(len(likelihood)), listed)
    assert likelihood[listed].max() <= likelihood[others].min() * (1 + 1e-12)
    for pair in result.worst_pairs:
        p = pair.pair
        assert pair.excess_loss == pytest.approx(-math.log(likelihood[p]), rel=1e-9)
        assert pair.segments == (tuple(dataset.preferences.a[p]), tuple(dataset.preferences.b[p]))
        assert sum(pair.term_differences.values()) == pytest.approx(pair.return_difference)


def test_a_tie_predicted_as_a_tie_is_not_wrong():
    """Excess loss, not cross-entropy: a tie (label 0.5) predicted at 0.5 costs nothing, while
    its cross-entropy, log 2, would rank it above many wrongly predicted hard labels."""
    dataset = random_walk(100, episode=50, obs_dim=2)
    ties = Preferences(np.array([[0, 3], [10, 13]]), np.array([[20, 23], [30, 33]]),
                       np.array([0.5, 0.5]))
    columns = np.zeros((100, 1))
    columns[10] = 5.0  # only the second pair's segments differ
    predictions = pair_predictions(columns, dataset.replace(preferences=ties))
    assert predictions.excess_loss[0] == 0.0
    assert predictions.cross_entropy[0] == pytest.approx(math.log(2))
    q = 1 / (1 + math.exp(-5))
    expected = 0.5 * math.log(0.5 / q) + 0.5 * math.log(0.5 / (1 - q))
    assert predictions.excess_loss[1] == pytest.approx(expected, rel=1e-9)


def test_uninformative_and_non_finite_pairs_are_left_out_and_counted():
    dataset = random_walk(100, episode=50, obs_dim=2)
    a = np.array([[0, 5], [10, 15], [20, 25], [60, 65]])
    b = np.array([[0, 5], [30, 35], [40, 45], [70, 75]])
    dataset = dataset.replace(preferences=Preferences(a, b, np.array([1.0, 1.0, 0.0, 1.0])))
    columns = np.ones((100, 2))
    columns[42, 1] = np.nan
    predictions = pair_predictions(columns, dataset)
    assert predictions.index.tolist() == [1, 3]
    assert (predictions.uninformative, predictions.non_finite, predictions.pairs) == (1, 1, 4)
    result = attribute(columns, ["u", "v"], predictions, dataset)
    assert result.excluded_transitions == 1 and result.excluded_pairs == 2
    assert result.pairs == 2


def test_calibration_counts_every_pair_once_in_the_bin_of_its_prediction():
    dataset = walk_with_pairs(seed=3, pairs=120)
    obs = dataset.observations
    columns = np.column_stack([obs[:, 0], -obs[:, 1]])
    predictions = pair_predictions(columns, dataset)
    result = calibration(predictions, bins=5)
    assert sum(b["pairs"] for b in result["bins"]) == result["pairs"] == len(predictions.index)
    for row in result["bins"]:
        assert row["lo"] <= row["predicted"] <= row["hi"]
        assert 0.0 <= row["empirical"] <= 1.0
    decided = predictions.label != 0.5
    agree = (predictions.difference[decided] > 0) == (predictions.label[decided] > 0.5)
    assert result["accuracy"] == pytest.approx(agree.mean())


def test_no_preferences_gives_no_pair_attribution():
    dataset = random_walk(60, episode=30, obs_dim=2)
    columns = np.column_stack([dataset.observations[:, 0], np.ones(60)])
    assert pair_predictions(columns, dataset) is None
    result = attribute(columns, ["x", "one"]).as_dict()
    assert result["pair_share"] is None and result["worst_pairs"] == []
    assert result["variance_share"] == {"x": pytest.approx(1.0), "one": pytest.approx(0.0)}
