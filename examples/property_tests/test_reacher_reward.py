"""Property tests of a learned reward: copy this file beside your own artifact and edit the
properties to what you know about your task.

``reacher.reward.toml`` was learned from preferences by ``make_reward.py`` (a point moving to a
goal; ``wind`` is a reading with nothing to do with the task). Learning chooses weights from
data, so nothing forces the properties a person expects; these tests state them and let
hypothesis look for a state where they fail:

* ``feature_states(artifact, domain)`` draws ``{feature: value}`` states inside the features'
  domain: their ranges recorded in the training data by default, and never outside what each
  feature's formula can take (a distance is never negative);
* ``transitions(artifact)`` draws raw transitions ``{"obs", "act", "next_obs", "info"}``;
* ``artifact.evaluate_states(states)`` is the reward and each term at feature values (scalars
  or 1-D arrays), on the same compiled code as ``artifact.evaluate(dataset)``.

Run with ``pytest examples/property_tests``; the symreward pytest plugin also runs the
``[[invariants]]`` of ``reacher.reward.toml`` as tests of their own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from symreward import RewardArtifact
from symreward.invariants.domain import natural_ranges
from symreward.testing import feature_states, transitions

ARTIFACT = RewardArtifact.load(Path(__file__).with_name("reacher.reward.toml"))
# Every value each feature's formula can take: wider than the data, so the tests also cover
# states the policy that will optimise this reward may reach.
NATURAL = natural_ranges(ARTIFACT.features)
# The first call compiles the reward (a second or two; then numba's disk cache has it).
SETTINGS = settings(max_examples=150, deadline=None)


@SETTINGS
@given(feature_states(ARTIFACT, NATURAL))
def test_the_reward_is_a_cost_never_above_zero(state):
    assert ARTIFACT.evaluate_states(state).reward <= 0.0


@SETTINGS
@given(feature_states(ARTIFACT), st.floats(0.0, 10.0))
def test_moving_away_from_the_goal_never_pays(state, step):
    further = dict(state, dist=[state["dist"], state["dist"] + step])  # two states at once
    near, far = ARTIFACT.evaluate_states(further).reward
    assert far <= near


@SETTINGS
@given(feature_states(ARTIFACT, NATURAL))
def test_effort_costs_the_same_in_every_direction(state):
    mirrored = dict(state, a0=-state["a0"], a1=-state["a1"])
    assert ARTIFACT.evaluate_states(mirrored).reward == ARTIFACT.evaluate_states(state).reward


@SETTINGS
@given(transitions(ARTIFACT), st.floats(-100.0, 100.0))
def test_the_wind_reading_does_not_change_the_reward(row, wind):
    reward = ARTIFACT.compile().single
    windy = row["obs"].copy()
    windy[4] = wind
    assert reward(windy, row["act"], row["next_obs"]) == reward(row["obs"], row["act"],
                                                                row["next_obs"])


@SETTINGS
@given(transitions(ARTIFACT))
def test_states_computed_from_a_transition_give_its_reward(row):
    """The two ways in agree to the bit: a transition's features, evaluated as a state."""
    kernels = ARTIFACT.compile()
    table = {key: np.asarray(row[key])[None, :] for key in ("obs", "act", "next_obs")}
    features = kernels.feature_matrix(table["obs"], table["act"], table["next_obs"])[0]
    state = dict(zip(kernels.feature_names, features, strict=True))
    expected = kernels.rewards(table["obs"], table["act"], table["next_obs"])[0]
    assert ARTIFACT.evaluate_states(state).reward == expected
