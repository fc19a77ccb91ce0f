"""Learning from labelled rewards through their moments: a reduced problem has the loss of the
rows it stands for, and a dataset read chunk by chunk learns the reward learned in memory,
whatever its chunks, without holding more than a chunk."""

import functools
import itertools
import pickle
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from symreward import crossval
from symreward.artifact import RewardArtifact, Term
from symreward.chunked import ChunkTerms, MomentTask, chunk_moments
from symreward.constraints import Constraints
from symreward.data import Dataset
from symreward.data.dataset_chunks import DatasetChunks
from symreward.errors import DataError, OptionError
from symreward.features import FeatureSet
from symreward.findings import Finding
from symreward.learner import SymbolicRewardLearner
from symreward.objectives import LinearProblem, make_objective
from symreward.objectives.fitting import fit, fit_accuracy, fit_loss
from symreward.objectives.moments import Moments, reduced_problem
from symreward.problems import ColumnProblems, column_problems, moments_of_columns
from symreward.search.library import TermLibrary, recipe_columns
from symreward.search.sparse import l1_supports
from symreward.search.stepwise import stepwise_supports

FEATURES = FeatureSet({"x": "obs[0]", "y": "obs[1]", "z": "obs[2]"})
# A library small enough to learn from in a second or two.
SMALL = TermLibrary(powers=(1, 2), knot_quantiles=(0.25, 0.5, 0.75))


def walk(n=1200, episode=40, seed=0):
    """Episodes of a smooth random walk in three dimensions, with one action."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(scale=0.3, size=(n, 3))
    starts = np.flatnonzero(np.arange(n) % episode == 0)
    steps[starts] = rng.normal(size=(len(starts), 3))
    total = np.cumsum(steps, axis=0)
    before = np.vstack([np.zeros((1, 3)), total[starts[1:] - 1]])
    obs = total - before[np.arange(n) // episode]
    return Dataset(observations=obs, actions=rng.normal(size=(n, 1)),
                   next_observations=np.vstack([obs[1:], obs[-1:]]),
                   terminals=np.zeros(n, bool), timeouts=np.arange(n) % episode == episode - 1)


def labelled(data, seed=1, noise=0.1):
    """Rewards of a hinge, an indicator and a square, with noise."""
    x, y, z = data.observations.T
    reward = (2.0 * np.maximum(0.0, x - 0.4) - 1.0 * (y > 0.2) - 0.5 * z**2 + 1.5
              + noise * np.random.default_rng(seed).normal(size=data.n))
    return data.replace(rewards=reward)


def learned(dataset, base=None, **options):
    options = {"library": SMALL, "max_terms": 4} | options
    return SymbolicRewardLearner("rewards", seed=0, **options).fit(dataset, FEATURES, base=base)


def assert_learned_alike(memory, chunked):
    """The same candidates, front, formulas and provenance; weights and losses to 1e-9."""
    assert [c.text for c in chunked.candidates_] == [c.text for c in memory.candidates_]
    assert ([c.text for c, _ in chunked.model_.terms()]
            == [c.text for c, _ in memory.model_.terms()])
    np.testing.assert_allclose(chunked.model_.fit.coef, memory.model_.fit.coef, rtol=1e-9)
    assert chunked.model_.fit.intercept == pytest.approx(memory.model_.fit.intercept,
                                                         rel=1e-9, abs=1e-12)
    np.testing.assert_allclose(chunked.coefficients_, memory.coefficients_, rtol=1e-9)
    assert [t.name for t in chunked.artifact_.terms] == [t.name for t in memory.artifact_.terms]
    assert ([(e.formula, e.complexity) for e in chunked.front_.entries]
            == [(e.formula, e.complexity) for e in memory.front_.entries])
    np.testing.assert_allclose([e.loss for e in chunked.front_.entries],
                               [e.loss for e in memory.front_.entries], rtol=1e-9)
    for key in ("data", "feature_ranges", "cross_validation", "options"):
        assert chunked.artifact_.provenance[key] == memory.artifact_.provenance[key], key
    for key, value in memory.metrics_.items():
        if key != "learning_seconds":
            assert chunked.metrics_[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key


# ----------------------------------------------------------------------------- the reduction


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 60), k=st.integers(0, 5), seed=st.integers(0, 2**16),
       cuts=st.lists(st.integers(1, 59), max_size=4))
def test_moments_of_parts_merge_to_the_moments_of_all_rows(n, k, seed, cuts):
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(n, k + 2)) * rng.uniform(0.1, 10, k + 2) + rng.normal(size=k + 2)
    groups = rng.integers(0, 3, n)
    whole = Moments.of_rows(values, groups, 3)
    bounds = [0, *sorted({c for c in cuts if c < n}), n]
    merged = Moments.empty(3, k + 2)
    for start, stop in itertools.pairwise(bounds):
        merged = merged.merge(Moments.of_rows(values[start:stop], groups[start:stop], 3))
    assert merged.count.tolist() == whole.count.tolist() == np.bincount(groups, minlength=3
                                                                       ).tolist()
    np.testing.assert_allclose(merged.mean, whole.mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(merged.scatter, whole.scatter, rtol=1e-10, atol=1e-10)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 80), k=st.integers(0, 6), seed=st.integers(0, 2**16),
       with_offset=st.booleans())
def test_a_reduced_problem_has_the_loss_fit_and_accuracy_of_its_rows(n, k, seed, with_offset):
    """Any weights score the same on the few rows as on the many: loss, R², the fit; the
    reduced problem counts the rows it stands for, and has at most K + 3 of its own."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, k)) * rng.uniform(0.01, 100, k) + 5 * rng.normal(size=k)
    if k > 1:
        X[:, -1] = X[:, 0] > np.median(X[:, 0])  # an indicator
    offset = rng.normal(size=n) if with_offset else np.zeros(n)
    target = X @ rng.normal(size=k) + rng.normal(size=n) + 3.0
    rows = LinearProblem("squared", X, target, offset, np.ones(n), fit_intercept=True)
    reduced = reduced_problem(Moments.of_rows(np.column_stack([X, offset, target]),
                                              np.zeros(n, int), 1))
    assert reduced.n_rows == n and len(reduced.target) <= k + 3
    for _ in range(3):
        coef, intercept = rng.normal(size=k), float(rng.normal())
        scale = rows.loss(coef, intercept)
        assert reduced.loss(coef, intercept) == pytest.approx(scale, rel=1e-9, abs=1e-12)
        if np.ptp(target) > 0:
            assert reduced.accuracy(coef, intercept) == pytest.approx(
                rows.accuracy(coef, intercept), rel=1e-9, abs=1e-9 * scale)
    exact, from_moments = fit(rows), fit(reduced)
    assert fit_loss(reduced, from_moments) == pytest.approx(fit_loss(rows, exact), rel=1e-8,
                                                            abs=1e-10)


def test_the_sparse_engine_proposes_the_same_supports_from_moments():
    """The L1 path and forward selection read the rows only through their moments: on data
    of up to 50,000 rows (which they used to subsample above), the same supports."""
    data = labelled(walk(n=1600))
    objective = make_objective("rewards", data)
    _, columns = SMALL.build(FEATURES.names, data.observations, seed=0)
    full, _ = ColumnProblems(objective, columns, None).problems([])
    reduced, _ = column_problems(objective, columns, None).problems([])
    assert reduced.represented_rows == full.n_rows == data.n
    assert l1_supports(reduced, max_terms=6) == l1_supports(full, max_terms=6)
    assert stepwise_supports(reduced, max_terms=6) == stepwise_supports(full, max_terms=6)


def test_problems_on_folds_from_moments_are_those_cut_from_columns():
    """The same rows on each side of each fold, the same fits and held-out scores. Weights
    agree as far as each fit is determined: to 1e-9 on supports of a few terms, as the
    learner fits; on every candidate at once (hinges and indicators at neighbouring knots,
    normal equations conditioned near 1e10) rounding moves both fits' weights, and only the
    held-out loss they reach is compared."""
    data = labelled(walk(n=1600))
    objective = make_objective("rewards", data)
    _, columns = SMALL.build(FEATURES.names, data.observations, seed=0)
    offset = np.sin(data.observations[:, 2])
    folds = list(crossval.validation_folds(objective, 5, 0))
    full, splits = ColumnProblems(objective, columns, offset).problems(folds)
    reduced_full, reduced_splits = column_problems(objective, columns, offset).problems(folds)
    assert reduced_full.n_rows == full.n_rows
    for support in [(0,), (0, 3, 5), (1, 2, 7, 9), tuple(range(columns.shape[1]))]:
        for (train, held), (reduced_train, reduced_held) in zip(splits, reduced_splits,
                                                                strict=True):
            assert (reduced_train.n_rows, reduced_held.n_rows) == (train.n_rows, held.n_rows)
            exact, from_moments = fit(train, support), fit(reduced_train, support)
            if len(support) <= 4:
                np.testing.assert_allclose(from_moments.coef, exact.coef, rtol=1e-9)
                assert from_moments.intercept == pytest.approx(exact.intercept, rel=1e-9)
            assert fit_loss(reduced_held, from_moments) == pytest.approx(
                fit_loss(held, exact), rel=1e-9)
            assert fit_accuracy(reduced_held, from_moments) == pytest.approx(
                fit_accuracy(held, exact), rel=1e-9)


def test_reduced_problems_have_no_rows_to_take():
    data = labelled(walk(n=400))
    reduced, _ = column_problems(make_objective("rewards", data), data.observations,
                                 None).problems([])
    with pytest.raises(ValueError, match="reduced"):
        reduced.rows(np.arange(2))
    with pytest.raises(ValueError, match="reduced"):
        LinearProblem.stacked([reduced, reduced])


@settings(max_examples=50, deadline=None)
@given(n=st.integers(1, 10**12), size=st.integers(1, 2000), seed=st.integers(0, 2**16))
def test_knot_rows_are_spread_over_the_data_one_in_each_run(n, size, seed):
    """Every row up to ``knot_rows`` of them; beyond, one row in each of ``knot_rows`` runs of
    rows as long as each other, drawn without a list of all rows (``n`` up to 10**12)."""
    rows = TermLibrary(knot_rows=size).knot_sample(n, seed)
    if n <= size:
        assert rows is None
        return
    bounds = np.arange(size + 1) * n // size
    assert len(rows) == size and np.all((rows >= bounds[:-1]) & (rows < bounds[1:]))
    assert np.array_equal(rows, TermLibrary(knot_rows=size).knot_sample(n, seed))


def test_knots_are_the_quantiles_of_the_sampled_rows():
    data = walk(n=3000)
    matrix = data.observations
    every, _ = SMALL.build(FEATURES.names, matrix, seed=0)
    assert [c.text for c in TermLibrary(powers=(1, 2), knot_quantiles=(0.25, 0.5, 0.75),
                                        knot_rows=3000).build(FEATURES.names, matrix)[0]] \
        == [c.text for c in every]
    sampled = TermLibrary(powers=(1, 2), knot_quantiles=(0.25, 0.5, 0.75), knot_rows=100)
    rows = sampled.knot_sample(3000, 0)
    expected = sampled.choose(FEATURES.names, matrix[rows], matrix.min(axis=0),
                              matrix.max(axis=0), matrix)[0]
    assert [c.text for c in sampled.build(FEATURES.names, matrix)[0]] == \
        [c.text for c in expected]
    assert [c.text for c in expected] != [c.text for c in every]


# ------------------------------------------------------------------------ chunk by chunk


DATA = labelled(walk())


@functools.cache
def in_memory():
    """What is learned from ``DATA`` in memory (once per session)."""
    return learned(DATA)


@settings(max_examples=10, deadline=None)
@given(st.sets(st.sampled_from(DATA.episode_ends[:-1].tolist()), max_size=12))
def test_where_the_chunks_are_cut_does_not_change_what_is_learned(cuts):
    chunks = DatasetChunks(DATA, np.array([0, *sorted(cuts)]))
    assert_learned_alike(in_memory(), learned(chunks))


def test_one_chunk_learns_the_in_memory_artifact_byte_for_byte():
    """The same reduction, in the same order: the same bits."""
    chunks = DatasetChunks.of(DATA, DATA.n)
    assert len(chunks.chunk_offsets) == 1
    assert learned(chunks).artifact_.dumps() == in_memory().artifact_.dumps()


def test_locked_terms_user_terms_and_sampled_knots_chunk_by_chunk():
    """Locked terms (a fixed offset), user terms (compiled per chunk) and a library whose
    knots and pruning read samples of the rows (fewer than the data hold)."""
    data = walk(n=1600, seed=3)
    x, y, z = data.observations.T
    data = data.replace(rewards=np.sin(x) - 0.3 * z**2 + 0.7 * (y > 0.1) + 0.5
                        + 0.05 * np.random.default_rng(4).normal(size=data.n))
    base = RewardArtifact("old", FEATURES, [Term("effort", "-0.3*z**2", locked=True),
                                            Term("old", "x")], [], {})
    library = TermLibrary(powers=(1, 2), knot_quantiles=(0.25, 0.5, 0.75),
                          user_terms=("sin(x)",), knot_rows=500, prune_rows=700)
    memory = learned(data, base=base, library=library)
    assert "sin(x)" in [c.text for c, _ in memory.model_.terms()]
    assert memory.artifact_.terms[0] == base.terms[0]
    assert_learned_alike(memory, learned(DatasetChunks.of(data, 250), base=base,
                                         library=library))


def test_few_episodes_cut_into_blocks_chunk_by_chunk():
    data = labelled(walk(n=1500, episode=500, seed=5))
    memory = learned(data)
    assert memory.folds_["units"] == "blocks of episodes"
    assert_learned_alike(memory, learned(DatasetChunks.of(data, 1)))


def test_constraints_chunk_by_chunk():
    data = labelled(walk(n=1200, seed=6))
    cap = Finding("cap", "hand", "a person", "", {"x": 2.0, "y": 0.0, "z": 0.0}, "at_most",
                  bound=1.0, accept=True)
    constraints = Constraints(findings=[cap], invariants=[{"rule": "decreasing", "of": "z"}])
    memory = learned(data, constraints=constraints)
    assert memory.artifact_.provenance["constraints"]["unmet"] == []
    assert_learned_alike(memory, learned(DatasetChunks.of(data, 300), constraints=constraints))


class GeneratedChunks:
    """A chunked dataset that never exists whole: chunk ``k`` is drawn from seed ``k`` when it
    is asked for (``chunked.ChunkedDataset``)."""

    def __init__(self, n_chunks, rows=2000, episode=50):
        self.rows, self.episode, self.n = rows, episode, n_chunks * rows
        self.source = f"generated ({n_chunks} chunks)"
        self.chunk_offsets = np.arange(n_chunks) * rows
        self.episode_ends = np.arange(episode, self.n + 1, episode)

    def chunk(self, k):
        data = labelled(walk(self.rows, self.episode, seed=k), seed=k)
        return Dataset(**{key: getattr(data, key) for key in (
            "observations", "actions", "next_observations", "terminals", "timeouts",
            "rewards")}, source=f"{self.source} chunk {k}")

    def digest(self):
        return f"generated:{self.n}"


def peak_bytes(dataset):
    tracemalloc.start()
    try:
        learner = learned(dataset, library=TermLibrary(powers=(1, 2), knot_rows=1000,
                                                       prune_rows=1000))
        return tracemalloc.get_traced_memory()[1], learner
    finally:
        tracemalloc.stop()


def test_memory_of_learning_chunk_by_chunk_does_not_grow_with_the_rows():
    """Four times the transitions in chunks of the same size: the same peak of memory traced
    in ``fit`` (within a fifth), far below the candidate columns of the larger data."""
    peak_bytes(GeneratedChunks(2))  # kernels compiled before anything is measured
    small, _ = peak_bytes(GeneratedChunks(6))
    large, learner = peak_bytes(GeneratedChunks(24))
    columns = learner.metrics_["rows"] * len(learner.candidates_) * 8
    assert learner.metrics_["rows"] == 48_000
    assert large < 1.2 * small, (small, large)
    assert large < columns / 4, (large, columns)


# --------------------------------------------------------------------------- bad input


def test_what_needs_the_data_in_memory_is_refused_chunk_by_chunk():
    chunks = DatasetChunks.of(DATA, 400)
    with pytest.raises(OptionError, match=r"engine.*--engine sparse, or load the dataset"):
        SymbolicRewardLearner("rewards", engine="evolve").fit(chunks, FEATURES)
    with pytest.raises(OptionError, match="objective.*only --objective rewards"):
        SymbolicRewardLearner("preferences").fit(chunks, FEATURES)


def test_a_feature_not_finite_is_named_by_its_chunk_and_its_row_in_the_whole_data():
    observations = DATA.observations.copy()
    observations[1000, 1] = 0.0
    data = DATA.replace(observations=observations)
    features = FeatureSet({"x": "obs[0]", "y": "1 / obs[1]"})
    with pytest.raises(DataError, match=r"\[rows 960:1200\]: feature 'y' = '1 / obs\[1\]' is "
                                        r"inf at row 1000 of the whole data \(row 40 of this "
                                        r"chunk\); features must be finite"):
        SymbolicRewardLearner("rewards").fit(DatasetChunks.of(data, 240), features)


def test_chunks_without_rewards_with_equal_rewards_or_of_other_sizes_are_refused():
    with pytest.raises(DataError, match=r"\[rows 0:400\]: no key 'rewards' for --objective "
                                        "rewards"):
        learned(DatasetChunks.of(DATA.replace(rewards=None), 400))
    with pytest.raises(DataError, match="every reward is equal"):
        learned(DatasetChunks.of(DATA.replace(rewards=np.full(DATA.n, 0.5)), 400))
    wrong = GeneratedChunks(3)
    wrong.chunk_offsets = np.array([0, 1000, 4000])
    with pytest.raises(DataError, match=r"chunk 0: the chunk from row 0 holds 2000 rows, where "
                                        "the chunks' offsets give it 1000"):
        learned(wrong)
    with pytest.raises(DataError, match=r"chunks must start at row 0 and then at increasing "
                                        r"rows where an episode starts; got \[0, 30\]"):
        DatasetChunks(DATA, np.array([0, 30]))


def test_dataset_chunks_hold_whole_episodes_that_make_up_the_data():
    chunks = DatasetChunks.of(DATA, 100)
    parts = [chunks.chunk(k) for k in range(len(chunks.chunk_offsets))]
    assert all(p.n >= 100 for p in parts[:-1]) and sum(p.n for p in parts) == DATA.n
    assert np.isin(chunks.chunk_offsets[1:], DATA.episode_ends).all()
    np.testing.assert_array_equal(np.concatenate([p.rewards for p in parts]), DATA.rewards)
    assert chunks.digest() == in_memory().artifact_.provenance["data"]["sha256"]


def test_a_chunk_task_is_plain_values_that_travel():
    """The map of the moments pass pickles by reference and its task by value (texts, numbers,
    small arrays: no compiled kernel, no sympy), as a dask task's would; where it runs, it
    computes the moments of the in-memory columns."""
    X = DATA.observations
    _, recipes = SMALL.choose(FEATURES.names, X, X.min(axis=0), X.max(axis=0), X)
    task = MomentTask(ChunkTerms(tuple(FEATURES.items()), recipes=tuple(recipes)), 0, DATA.n,
                      np.array([0, 1]), np.array([500, DATA.n - 500]), 2)
    function, travelled = pickle.loads(pickle.dumps((chunk_moments, task)))
    moments = function(DATA, travelled)
    groups = (np.arange(DATA.n) >= 500).astype(int)
    expected = moments_of_columns(recipe_columns(recipes, X), None, DATA.rewards, groups, 2)
    assert moments.count.tolist() == [500, DATA.n - 500]
    np.testing.assert_array_equal(moments.mean, expected.mean)
    np.testing.assert_array_equal(moments.scatter, expected.scatter)


class DelayedChunks(DatasetChunks):
    """Chunks handed out as dask objects, as a lazy dataset hands them out (``to_delayed``)."""

    handed_out = 0

    def to_delayed(self):
        import dask

        DelayedChunks.handed_out += 1
        return [dask.delayed(self.chunk)(k) for k in range(len(self.chunk_offsets))]


def test_chunks_handed_out_as_dask_objects_are_mapped_by_dask_in_other_processes():
    """Each task (the map of a pass, its chunk and its task's plain values) runs in a worker
    process of dask's ``processes`` scheduler and comes back; the reward is the one learned in
    memory."""
    dask = pytest.importorskip("dask")
    chunks = DelayedChunks(DATA, DatasetChunks.of(DATA, 300).chunk_offsets)
    with dask.config.set(scheduler="processes", num_workers=2):
        assert_learned_alike(in_memory(), learned(chunks))
    assert DelayedChunks.handed_out == 2  # the scan and the moments
