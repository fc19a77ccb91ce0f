"""``learn`` never fails inside: on any small dataset shaped as people's data are (a few pairs
or many; segments reused by none, some or every pair; duplicate pairs; ties; one episode;
segments of one step; features that are all zero or constant), for every objective and both
engines, the learner returns an artifact or raises a ``SymrewardError`` that says what is
wrong. Anything else (a ``ZeroDivisionError`` from an empty fold, a ``LinAlgError``, an
``IndexError``) is a bug."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symreward.artifact import RewardArtifact
from symreward.data import Dataset, Preferences, Rankings
from symreward.errors import SymrewardError
from symreward.features import FeatureSet
from symreward.learner import SymbolicRewardLearner

FEATURES = FeatureSet({"x": "obs[0]", "y": "obs[1]", "a": "act[0]", "flat": "0*obs[0] + 1",
                       "nothing": "0*obs[1]"})


@st.composite
def episodes(draw) -> tuple[int, np.ndarray]:
    """The number of transitions and the episodes' bounds: one episode, or several."""
    lengths = draw(st.lists(st.integers(1, 60), min_size=1, max_size=5))
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    return int(bounds[-1]), bounds


@st.composite
def segment_pool(draw, bounds: np.ndarray, size: int) -> np.ndarray:
    """``size`` segments, each inside one episode, of one step up to the whole episode."""
    rows = []
    for _ in range(size):
        episode = draw(st.integers(0, len(bounds) - 2))
        first, last = int(bounds[episode]), int(bounds[episode + 1])
        start = draw(st.integers(first, last - 1))
        stop = draw(st.integers(start + 1, min(last, start + 12)))
        rows.append([start, stop])
    return np.asarray(rows, dtype=np.int64)


@st.composite
def datasets(draw) -> Dataset:
    n, bounds = draw(episodes())
    kind = draw(st.sampled_from(["noise", "zeros", "constant"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    obs = {"noise": rng.normal(size=(n, 2)), "zeros": np.zeros((n, 2)),
           "constant": np.full((n, 2), 0.5)}[kind]
    actions = rng.normal(size=(n, 1)) if draw(st.booleans()) else np.zeros((n, 1))
    timeouts = np.zeros(n, dtype=bool)
    timeouts[bounds[1:] - 1] = True
    n_pairs = draw(st.integers(2, 200))
    # A pool of 1 to 2 * n_pairs segments: 1 means every pair compares the same clip.
    pool = draw(segment_pool(bounds, draw(st.integers(1, min(2 * n_pairs, 40)))))
    a = pool[rng.integers(len(pool), size=n_pairs)]
    b = pool[rng.integers(len(pool), size=n_pairs)]
    if draw(st.booleans()):  # several annotators: the same pairs labelled again
        a, b = np.concatenate([a, a]), np.concatenate([b, b])
    truth = obs[:, 0] - actions[:, 0] ** 2
    ranked = draw(segment_pool(bounds, draw(st.integers(2, 30))))
    if draw(st.booleans()):  # labels that follow a reward, with ties where returns are equal
        labels = np.sign(_returns(truth, a) - _returns(truth, b)) / 2 + 0.5
        scores = np.round(_returns(truth, ranked), 1)
        expert = truth > np.quantile(truth, draw(st.sampled_from([0.5, 0.9])))
        rewards = truth
    else:  # labels that carry no signal, or the same label everywhere
        labels = rng.choice(np.array(draw(st.sampled_from([[0.0, 1.0], [0.0, 0.5, 1.0],
                                                             [1.0], [0.2, 0.9]]))),
                            size=len(a))
        scores = rng.integers(0, draw(st.integers(1, 4)), size=len(ranked)).astype(float)
        expert = rng.random(n) < draw(st.sampled_from([0.0, 0.3, 1.0]))
        rewards = rng.normal(size=n) if draw(st.booleans()) else np.zeros(n)
    return Dataset(observations=obs, actions=actions, next_observations=obs,
                   terminals=np.zeros(n, dtype=bool), timeouts=timeouts, rewards=rewards,
                   preferences=Preferences(a, b, labels),
                   rankings=Rankings(ranked, scores), expert=expert)


def _returns(rewards: np.ndarray, segments: np.ndarray) -> np.ndarray:
    return np.array([rewards[start:stop].sum() for start, stop in segments])


@pytest.mark.parametrize("engine", ["sparse", "evolve"])
@pytest.mark.parametrize("objective", ["preferences", "rankings", "demonstrations", "rewards"])
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=datasets(), n_folds=st.integers(2, 5),
       selection=st.sampled_from(["1se", "simplest"]))
def test_learn_returns_an_artifact_or_says_what_is_wrong(objective, engine, data, n_folds,
                                                         selection):
    budget = {"population": 6, "generations": 2, "time_limit": None} if engine == "evolve" \
        else {}
    learner = SymbolicRewardLearner(objective=objective, engine=engine, n_folds=n_folds,
                                    selection=selection, max_terms=3, seed=0, **budget)
    try:
        learner.fit(data, FEATURES)
    except SymrewardError as error:
        assert str(error).strip(), type(error).__name__
        return
    assert isinstance(learner.artifact_, RewardArtifact)
    assert np.isfinite(learner.artifact_.evaluate(data).rewards).all()
