"""The reward at feature states: the kernels' bits, numpy broadcasting, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from symreward.artifact import RewardArtifact
from symreward.data import Dataset
from symreward.errors import DataError, FeatureError
from symreward.evaluate import StateValues, feature_columns

ARTIFACT = RewardArtifact.loads('''schema = "symreward/1"
name = "states"

[features]
dist = "sqrt((next_obs[0] - obs[2])**2 + (next_obs[1] - obs[3])**2)"
heading = "atan2(obs[1], obs[0])"
a0 = "act[0]"
a1 = "act[1]"
scaled = "2 * dist"
unused = "obs[4]"

[[terms]]
name = "distance"
expr = "-1.2345678901234567 * dist + 0.3 * tanh(dist - 1)"

[[terms]]
name = "effort"
expr = "-0.01 * (a0**2 + a1**2) + where(a0 > 1, log(a0), -0.5)"

[[terms]]
name = "facing"
expr = "0.7 * exp(-heading**2) * (scaled < 3) + sigmoid(a1) / (a0 - 0.25)"
''', source="states.reward.toml")


def raw_dataset(n: int, seed: int) -> Dataset:
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, 5)) * 2
    nxt = rng.normal(size=(n, 5)) * 2
    act = rng.normal(size=(n, 2)) * 1.5
    act[:5, 0] = 0.25  # division by zero: inf and NaN must agree too
    return Dataset(obs, act, nxt, np.zeros(n, bool), np.zeros(n, bool))


def test_the_same_bits_as_evaluate_on_a_dataset():
    data = raw_dataset(3000, 0)
    expected = ARTIFACT.evaluate(data)
    columns = feature_columns(data, ARTIFACT.features)
    states = {name: columns[:, i] for i, name in enumerate(ARTIFACT.features.names)}
    values = ARTIFACT.evaluate_states(states)
    assert isinstance(values, StateValues)
    assert list(values.terms) == ARTIFACT.term_names
    assert values.reward.shape == (3000,)
    assert not np.all(np.isfinite(values.reward))  # the non-finite rows are compared too
    np.testing.assert_array_equal(values.reward.view(np.int64), expected.rewards.view(np.int64))
    for k, name in enumerate(ARTIFACT.term_names):
        np.testing.assert_array_equal(values.terms[name].view(np.int64),
                                      expected.term_columns[:, k].view(np.int64))


def test_scalars_and_arrays_broadcast_as_in_numpy():
    one = ARTIFACT.evaluate_states({"dist": 1.0, "heading": 0.0, "a0": 2, "a1": 0.0,
                                    "scaled": 2.0})
    assert one.reward.shape == () and one.terms["effort"].shape == ()
    many = ARTIFACT.evaluate_states({"dist": [0.5, 1.0, 4.0], "heading": 0.0, "a0": 2,
                                     "a1": np.zeros(3), "scaled": 2.0})
    assert many.reward.shape == (3,)
    assert many.reward[1] == one.reward
    assert many.terms["distance"][0] > many.terms["distance"][1] > many.terms["distance"][2]
    empty = ARTIFACT.evaluate_states({"dist": [], "heading": 0.0, "a0": 2, "a1": 0.0,
                                      "scaled": 1.0})
    assert empty.reward.shape == (0,)


def test_only_the_features_the_terms_read_are_needed():
    with_unused = ARTIFACT.evaluate_states({"dist": 1.0, "heading": 0.5, "a0": 2.0, "a1": 1.0,
                                            "scaled": 2.0, "unused": 7.0})
    without = ARTIFACT.evaluate_states({"dist": 1.0, "heading": 0.5, "a0": 2.0, "a1": 1.0,
                                        "scaled": 2.0})
    assert with_unused.reward == without.reward


def test_values_are_used_as_given_not_recomputed_from_other_features():
    """``scaled`` is 2 * dist by its formula; a state is a point of the box all the same."""
    low = ARTIFACT.evaluate_states({"dist": 1.0, "heading": 0.0, "a0": 2.0, "a1": 0.0,
                                    "scaled": 2.0})
    high = ARTIFACT.evaluate_states({"dist": 1.0, "heading": 0.0, "a0": 2.0, "a1": 0.0,
                                     "scaled": 5.0})
    assert low.terms["facing"] - high.terms["facing"] == pytest.approx(0.7)


@pytest.mark.parametrize(("states", "error", "message"), [
    ({"dist": 1.0}, FeatureError,
     r"states\.reward\.toml: the reward reads features 'heading', 'a0', 'a1', 'scaled', "
     "missing from the states"),
    ({"dist": 1, "heading": 0, "a0": 1, "a1": 1, "scaled": 1, "speed": 2}, FeatureError,
     r"unknown feature 'speed' \(known: dist, heading, a0, a1, scaled, unused\)"),
    ({"dist": [1, 2], "heading": [1, 2, 3], "a0": 1, "a1": 1, "scaled": 1}, DataError,
     r"do not broadcast to one length: dist \(2\), heading \(3\)"),
    ({"dist": [[1.0]], "heading": 0, "a0": 1, "a1": 1, "scaled": 1}, DataError,
     r"feature 'dist': must be a scalar or a 1-D array, got shape \(1, 1\)"),
    ({"dist": "far", "heading": 0, "a0": 1, "a1": 1, "scaled": 1}, DataError,
     "feature 'dist': values must be real numbers"),
    ({"dist": None, "heading": 0, "a0": 1, "a1": 1, "scaled": 1}, DataError,
     "feature 'dist': values must be real numbers"),
    ({"dist": 1 + 2j, "heading": 0, "a0": 1, "a1": 1, "scaled": 1}, DataError,
     "feature 'dist': values must be real numbers"),
    ({"dist": True, "heading": 0, "a0": 1, "a1": 1, "scaled": 1}, DataError,
     "feature 'dist': values must be real numbers"),
    ([("dist", 1.0)], DataError, "states must be a mapping"),
])
def test_bad_states_are_clear_errors(states, error, message):
    with pytest.raises(error, match=message):
        ARTIFACT.evaluate_states(states)
