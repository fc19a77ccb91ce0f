"""The learner learns from the rows its objective reads (``symreward.objectives.reduction``):
preferences and rankings from the transitions inside labelled segments, with the same result as
on a dataset of those rows alone, whatever log surrounds them; demonstrations from every expert
transition and, above ``max_unlabeled``, a seeded uniform sample of the unlabeled ones."""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import run_cli

from symreward.data import (
    Dataset,
    bradley_terry_preferences,
    load_dataset,
    rankings_from_rewards,
    save_dataset,
)
from symreward.data.dataset import dataset_digest
from symreward.data.subset import labelled_rows
from symreward.errors import DataError, OptionError
from symreward.features import FeatureSet
from symreward.learner import SymbolicRewardLearner
from symreward.objectives.reduction import MAX_UNLABELED, reduce_dataset, unlabeled_sample

FEATURES = FeatureSet({"x": "obs[0]", "y": "obs[1]", "z": "info.z"})
LENGTH = 40
# Clips of every episode: four that tile it and two that straddle a tile's end; no clip
# straddles the episode's middle, so unlabelled rows may be put there.
CLIPS = ((0, 10), (10, 20), (20, 30), (30, 40), (5, 15), (25, 35))
SUPERVISION = ("pref_a", "pref_b", "pref_label", "rank_segments", "rank_scores")


def labelled_walk(episodes: int, seed: int = 0) -> tuple[Dataset, np.ndarray]:
    """Episodes of a smooth random walk (an info ``z`` beside the observations) and the pool of
    clips that covers every row of it."""
    rng = np.random.default_rng(seed)
    n = episodes * LENGTH
    obs = np.empty((n, 2))
    for t in range(n):
        obs[t] = rng.normal(size=2) if t % LENGTH == 0 else obs[t - 1] + rng.normal(0, 0.3, 2)
    data = Dataset(observations=obs, actions=rng.normal(size=(n, 1)),
                   next_observations=np.vstack([obs[1:], obs[-1:]]),
                   terminals=np.zeros(n, bool), timeouts=np.arange(n) % LENGTH == LENGTH - 1,
                   rewards=planted(obs), infos={"z": rng.normal(size=n)})
    pool = np.array([[start + a, start + b] for start in range(0, n, LENGTH) for a, b in CLIPS])
    return data, pool


def planted(obs: np.ndarray) -> np.ndarray:
    return -1.5 * obs[:, 0] ** 2 + 0.8 * obs[:, 1]


def with_preferences(data: Dataset, pool: np.ndarray, pairs: int) -> Dataset:
    labels = bradley_terry_preferences(data, data.rewards, pairs, segments=pool, seed=1)
    return data.replace(preferences=labels)


def with_rankings(data: Dataset, pool: np.ndarray) -> Dataset:
    ranks = rankings_from_rewards(data, data.rewards, None, segments=pool, noise=0.5, seed=1)
    return data.replace(rankings=ranks)


def in_a_log(labelled: Dataset, rng: np.random.Generator, share: float = 0.5,
             most: int = 60) -> Dataset:
    """``labelled`` (every row inside a labelled clip) with unlabelled rows put before a random
    ``share`` of its rows that no clip straddles, at its start and at its end: whole episodes
    between episodes, rows of the same episode inside one. The labelled rows' own values,
    episodes and supervision are untouched, only moved."""
    n = labelled.n
    segments = []
    if labelled.preferences is not None:
        segments += [labelled.preferences.a, labelled.preferences.b]
    if labelled.rankings is not None:
        segments.append(labelled.rankings.segments)
    inside = np.zeros(n + 1, dtype=bool)
    for start, stop in np.concatenate(segments):
        inside[start + 1:stop] = True
    free = np.flatnonzero(~inside)
    gaps = np.union1d(free[rng.random(len(free)) < share], [0, n])
    lengths = rng.integers(1, most + 1, size=len(gaps))
    ends = np.isin(np.arange(n + 1), labelled.episode_ends) | (np.arange(n + 1) == 0)
    arrays = labelled.to_arrays()
    per_row = {key: value for key, value in arrays.items() if key not in SUPERVISION}
    pieces: dict[str, list[np.ndarray]] = {key: [] for key in per_row}
    previous = 0
    for gap, length in zip(gaps, lengths, strict=True):
        for key, value in per_row.items():
            pieces[key].append(value[previous:gap])
        filler = {key: rng.normal(3.0, 2.0, size=(length, *value.shape[1:])).astype(value.dtype)
                  for key, value in per_row.items()}
        filler["terminals"] = np.zeros(length, bool)
        filler["timeouts"] = np.zeros(length, bool)
        if ends[gap]:  # between episodes: whole episodes of their own
            filler["timeouts"] = rng.random(length) < 0.1
            filler["terminals"][-1] = rng.random() < 0.5
            filler["timeouts"][-1] = not filler["terminals"][-1]
        for key in per_row:
            pieces[key].append(filler[key])
        previous = gap
    log = {key: np.concatenate(parts) for key, parts in pieces.items()}
    before = np.concatenate([[0], np.cumsum(lengths)])

    def moved(rows: np.ndarray) -> np.ndarray:
        return rows + before[np.searchsorted(gaps, rows[:, :1], side="right")]

    if labelled.preferences is not None:
        log |= {"pref_a": moved(labelled.preferences.a), "pref_b": moved(labelled.preferences.b),
                "pref_label": labelled.preferences.label}
    if labelled.rankings is not None:
        log |= {"rank_segments": moved(labelled.rankings.segments),
                "rank_scores": labelled.rankings.scores}
    return Dataset.from_arrays(log, source="a long log")


def assert_same_dataset(got: Dataset, expected: Dataset) -> None:
    got_arrays, expected_arrays = got.to_arrays(), expected.to_arrays()
    assert sorted(got_arrays) == sorted(expected_arrays)
    for key, value in expected_arrays.items():
        assert got_arrays[key].dtype == value.dtype, key
        np.testing.assert_array_equal(got_arrays[key], value, err_msg=key)


def assert_same_fit(on_log: SymbolicRewardLearner, on_rows: SymbolicRewardLearner) -> None:
    """Identical formulas, weights to 1e-9, the same front, folds and feature ranges."""
    assert on_log.artifact_.formula_text() == on_rows.artifact_.formula_text()
    assert on_log.model_.fit.support == on_rows.model_.fit.support
    np.testing.assert_allclose(on_log.model_.fit.coef, on_rows.model_.fit.coef, rtol=0,
                               atol=1e-9)
    assert on_log.coefficients_ == on_rows.coefficients_
    log_front, rows_front = on_log.front_.entries, on_rows.front_.entries
    assert [e.formula for e in log_front] == [e.formula for e in rows_front]
    np.testing.assert_allclose([e.loss for e in log_front], [e.loss for e in rows_front],
                               rtol=0, atol=1e-9)
    assert on_log.folds_ == on_rows.folds_
    assert on_log.feature_ranges_ == on_rows.feature_ranges_
    assert on_log.metrics_["rows"] == on_rows.metrics_["rows"]


# -- preferences and rankings: the labelled rows alone ---------------------------------------


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), share=st.floats(0.0, 1.0),
       objective=st.sampled_from(["preferences", "rankings"]))
def test_a_log_reduces_to_the_dataset_of_its_labelled_rows(seed, share, objective):
    data, pool = labelled_walk(4, seed=seed % 1000)
    labelled = (with_preferences(data, pool, 12) if objective == "preferences"
                else with_rankings(data, pool))
    assert labelled_rows(labelled).tolist() == list(range(labelled.n))
    log = in_a_log(labelled, np.random.default_rng(seed), share)
    reduction = reduce_dataset(objective, log)
    assert_same_dataset(reduction.dataset, labelled)
    assert reduction.dataset.episode_ends.tolist() == labelled.episode_ends.tolist()
    assert reduction.data == {"source": "a long log", "sha256": dataset_digest(log),
                              "transitions": log.n, "labelled_transitions": labelled.n}
    np.testing.assert_array_equal(log.observations[reduction.rows], labelled.observations)
    assert reduction.dataset.source == log.source  # messages name the input


def test_preferences_learned_from_a_long_log_are_those_learned_from_its_labelled_rows():
    data, pool = labelled_walk(100)
    labelled = with_preferences(data, pool, 600)
    log = in_a_log(labelled, np.random.default_rng(3), share=1.0, most=80)
    assert log.n > 2 * labelled.n
    on_log = SymbolicRewardLearner(seed=0).fit(log, FEATURES)
    on_rows = SymbolicRewardLearner(seed=0).fit(labelled, FEATURES)
    assert_same_fit(on_log, on_rows)
    assert {"x**2", "y"} <= {c.text for c, _ in on_log.model_.terms()}
    assert on_log.artifact_.provenance["data"] == {
        "source": "a long log", "sha256": dataset_digest(log), "transitions": log.n,
        "labelled_transitions": labelled.n}
    assert on_rows.artifact_.provenance["data"]["labelled_transitions"] == labelled.n


def test_rankings_learned_from_a_long_log_are_those_learned_from_its_labelled_rows():
    data, pool = labelled_walk(15, seed=1)
    labelled = with_rankings(data, pool)
    log = in_a_log(labelled, np.random.default_rng(4))
    on_log = SymbolicRewardLearner("rankings", seed=2).fit(log, FEATURES)
    on_rows = SymbolicRewardLearner("rankings", seed=2).fit(labelled, FEATURES)
    assert_same_fit(on_log, on_rows)
    assert on_log.artifact_.provenance["data"]["labelled_transitions"] == labelled.n


def test_the_evolutionary_engine_on_a_long_log_learns_what_it_learns_on_the_labelled_rows():
    data, pool = labelled_walk(20, seed=2)
    labelled = with_preferences(data, pool, 120)
    log = in_a_log(labelled, np.random.default_rng(5))
    options = {"engine": "evolve", "population": 20, "generations": 3, "seed": 0}
    on_log = SymbolicRewardLearner(**options).fit(log, FEATURES)
    on_rows = SymbolicRewardLearner(**options).fit(labelled, FEATURES)
    assert_same_fit(on_log, on_rows)
    assert on_log.search_ == on_rows.search_ | {"seconds": on_log.search_["seconds"]}


def test_features_need_be_finite_only_on_the_rows_learned_from():
    """A feature undefined on unlabelled rows (``sqrt`` of a negative number) does not stop
    learning; on a labelled row, the message names the input's row."""
    data, pool = labelled_walk(30)
    labelled = with_preferences(data, pool, 150)
    arrays = {key: np.array(value)
              for key, value in in_a_log(labelled, np.random.default_rng(6)).to_arrays().items()}
    unlabelled = np.setdiff1d(np.arange(len(arrays["observations"])),
                              labelled_rows(Dataset.from_arrays(arrays)))
    arrays["infos/z"][unlabelled[::3]] = -100.0
    features = FeatureSet({"x": "obs[0]", "y": "obs[1]", "root": "sqrt(info.z + 50)"})
    log = Dataset.from_arrays(arrays, source="log.npz")
    assert len(SymbolicRewardLearner(seed=0).fit(log, features).artifact_.terms) > 0
    row = int(labelled_rows(log)[100])
    arrays["infos/z"][row] = -100.0
    with pytest.raises(DataError, match=rf"^log\.npz: feature 'root' = .* is nan at row {row}; "
                                        "features must be finite on the data learned from$"):
        SymbolicRewardLearner(seed=0).fit(Dataset.from_arrays(arrays, source="log.npz"),
                                          features)


def test_missing_supervision_is_named_against_the_input():
    data, _ = labelled_walk(3)
    with pytest.raises(DataError, match=r"^<in-memory dataset>: no preferences"):
        SymbolicRewardLearner().fit(data, FEATURES)
    assert reduce_dataset("preferences", data).dataset is data


# -- a dataset that gathers its rows itself ---------------------------------------------------


@pytest.mark.parametrize("chunks", [7, 100, 10_000])
def test_a_lazy_dataset_is_reduced_the_same_way(chunks, tmp_path):
    """A dataset read lazily (one file split in chunks of about ``chunks`` rows) is reduced to
    the same rows, arrays and provenance as in memory, whatever the chunking."""
    from symreward.data import LazyDataset, save_dataset

    data, pool = labelled_walk(10)
    log = in_a_log(with_preferences(data, pool, 40), np.random.default_rng(7))
    save_dataset(log, tmp_path / "log.npz")
    log = load_dataset(tmp_path / "log.npz", lazy=False)
    lazy = LazyDataset(tmp_path / "log.npz", chunk_rows=chunks)
    expected = reduce_dataset("preferences", log)
    got = reduce_dataset("preferences", lazy)
    assert got.rows.tolist() == expected.rows.tolist()
    assert_same_dataset(got.dataset, expected.dataset)
    assert got.data == expected.data
    demonstrations = demonstrated(seed=1)
    save_dataset(demonstrations, tmp_path / "demonstrations.npz")
    demonstrations = load_dataset(tmp_path / "demonstrations.npz", lazy=False)
    lazy = LazyDataset(tmp_path / "demonstrations.npz", chunk_rows=chunks)
    expected = reduce_dataset("demonstrations", demonstrations, max_unlabeled=300, seed=3)
    got = reduce_dataset("demonstrations", lazy, max_unlabeled=300, seed=3)
    assert got.rows.tolist() == expected.rows.tolist()
    assert_same_dataset(got.dataset, expected.dataset)
    assert got.data == expected.data


# -- demonstrations: every expert row and a seeded sample of the unlabeled ones ---------------


def demonstrated(seed: int = 0, unlabeled: int = 1200, experts: int = 400) -> Dataset:
    """Unlabeled normal states; expert states drawn from them with weight exp(planted), so the
    expert-against-unlabeled logit is the planted reward plus a constant."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(5 * unlabeled, 2))
    weights = np.exp(planted(base) - planted(base).max())
    expert = base[rng.choice(len(base), experts, p=weights / weights.sum())]
    obs = np.vstack([base[:unlabeled], expert])
    n = len(obs)
    return Dataset(observations=obs, actions=np.zeros((n, 1)), next_observations=obs,
                   terminals=np.zeros(n, bool), timeouts=np.arange(n) % 50 == 49,
                   infos={"z": rng.normal(size=n)}, expert=np.arange(n) >= unlabeled)


def test_demonstrations_at_or_below_the_cap_learn_from_every_row():
    data = demonstrated()
    default = SymbolicRewardLearner("demonstrations").fit(data, FEATURES)
    at_cap = SymbolicRewardLearner("demonstrations", max_unlabeled=1200).fit(data, FEATURES)
    assert default.objective_.dataset is data and at_cap.objective_.dataset is data
    assert default.metrics_["rows"] == data.n
    provenance = default.artifact_.provenance
    assert provenance["data"] == {"source": data.source, "sha256": dataset_digest(data),
                                  "transitions": data.n}
    assert provenance["options"]["max_unlabeled"] == MAX_UNLABELED
    assert at_cap.artifact_.provenance["options"]["max_unlabeled"] == 1200
    at_cap.artifact_.provenance["options"]["max_unlabeled"] = MAX_UNLABELED
    assert at_cap.artifact_.dumps() == default.artifact_.dumps()


def test_demonstrations_above_the_cap_learn_from_a_seeded_sample_of_the_unlabeled_rows():
    data = demonstrated()
    learner = SymbolicRewardLearner("demonstrations", max_unlabeled=500, seed=4)
    first = learner.fit(data, FEATURES).artifact_.dumps()
    learned = learner.objective_.dataset
    assert learner.metrics_["rows"] == learned.n == 400 + 500
    assert int(learned.expert.sum()) == 400
    assert learner.artifact_.provenance["data"] == {
        "source": data.source, "sha256": dataset_digest(data), "transitions": data.n,
        "unlabeled_transitions": 1200, "unlabeled_sampled": 500}
    assert learner.artifact_.provenance["options"]["max_unlabeled"] == 500
    assert SymbolicRewardLearner("demonstrations", max_unlabeled=500, seed=4).fit(
        data, FEATURES).artifact_.dumps() == first
    assert {"x**2", "y"} <= {c.text for c, _ in learner.model_.terms()}


@settings(max_examples=60, deadline=None)
@given(expert=st.lists(st.booleans(), min_size=1, max_size=300),
       cap=st.integers(1, 300), seed=st.integers(0, 2**32 - 1))
def test_the_unlabeled_sample_keeps_every_expert_row_and_exactly_the_cap(expert, cap, seed):
    expert = np.asarray(expert)
    rows = unlabeled_sample(expert, cap, seed)
    if (~expert).sum() <= cap:
        assert rows is None
        return
    assert np.all(np.diff(rows) > 0) and rows[0] >= 0 and rows[-1] < len(expert)
    assert np.isin(np.flatnonzero(expert), rows).all()
    assert (~expert[rows]).sum() == cap
    assert unlabeled_sample(expert, cap, seed).tolist() == rows.tolist()


def test_the_unlabeled_sample_is_uniform_over_the_unlabeled_rows():
    """Over 400 seeds, each of 40 unlabeled rows is drawn about 400 * 10/40 = 100 times
    (binomial, standard deviation 8.7; the bounds are five of them)."""
    expert = np.zeros(50, bool)
    expert[::5] = True
    counts = np.zeros(50)
    for seed in range(400):
        counts[unlabeled_sample(expert, 10, seed)] += 1
    assert (counts[expert] == 400).all()
    assert counts[~expert].min() > 100 - 44 and counts[~expert].max() < 100 + 44
    assert unlabeled_sample(expert, 10, 0).tolist() != unlabeled_sample(expert, 10, 1).tolist()


# -- the option -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, -5, 2.5, True, "100"])
def test_a_bad_cap_is_an_option_error(value):
    with pytest.raises(OptionError, match="max_unlabeled"):
        SymbolicRewardLearner("demonstrations", max_unlabeled=value).check_options()


def test_the_cap_is_refused_where_it_has_no_effect_and_recorded_where_it_has():
    with pytest.raises(OptionError, match="max_unlabeled.*unless the objective is demonstr"):
        SymbolicRewardLearner("preferences", max_unlabeled=10).check_options()
    assert "max_unlabeled" not in SymbolicRewardLearner("rankings").options()
    assert SymbolicRewardLearner("demonstrations").options()["max_unlabeled"] == MAX_UNLABELED


def test_the_command_line_passes_the_cap_and_refuses_it_for_preferences(tmp_path):
    path = tmp_path / "demos.npz"
    save_dataset(demonstrated(), path)
    features = tmp_path / "features.toml"
    features.write_text('[features]\nx = "obs[0]"\ny = "obs[1]"\n')
    out = tmp_path / "reward.toml"
    done = run_cli("learn", path, "--features", features, "--objective", "demonstrations",
                   "--max-unlabeled", 300, "-o", out)
    assert done.returncode == 0, done.stderr
    assert "learning from 700 of 1600 transitions" in done.stderr
    text = out.read_text()
    assert "max_unlabeled = 300" in text and "unlabeled_sampled = 300" in text
    refused = run_cli("learn", path, "--features", features, "--max-unlabeled", 300, "-o",
                      tmp_path / "other.toml")
    assert refused.returncode == 2
    assert "max_unlabeled" in refused.stderr and not (tmp_path / "other.toml").exists()
    assert re.search(rf"default\s+{MAX_UNLABELED}\)", run_cli("learn", "--help").stdout)
