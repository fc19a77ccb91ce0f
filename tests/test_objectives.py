import numpy as np
import pytest
from scipy.special import expit
from support import random_walk, true_reward

from symreward.data import (
    Preferences,
    Rankings,
    bradley_terry_preferences,
    rankings_from_rewards,
)
from symreward.errors import DataError, OptionError
from symreward.objectives import (
    MIN_TRANSITION_UNITS,
    DemonstrationObjective,
    LinearProblem,
    PreferenceObjective,
    RankingObjective,
    RewardLabelObjective,
    make_objective,
)


def with_everything(seed=0):
    dataset = random_walk(seed=seed)
    r = true_reward(dataset)
    expert = np.random.default_rng(seed).random(dataset.n) < 0.3
    return dataset.replace(
        rewards=r + 0.1,
        preferences=bradley_terry_preferences(dataset, r, 200, 10, seed=seed, soft=True),
        rankings=rankings_from_rewards(dataset, r, 30, 10, seed=seed),
        expert=expert)


OBJECTIVE_OPTIONS = [
    ("preferences", {}),
    ("preferences", {"noise": 0.1, "discount": 0.9}),
    ("rankings", {}),
    ("demonstrations", {}),
    ("demonstrations", {"class_prior": 0.2}),
    ("rewards", {}),
]


@pytest.mark.parametrize("name, options", OBJECTIVE_OPTIONS)
def test_gradient_matches_finite_differences(name, options):
    dataset = with_everything()
    objective = make_objective(name, dataset, **options)
    rng = np.random.default_rng(1)
    r = 0.3 * rng.normal(size=dataset.n)
    loss, grad = objective.loss_and_grad(r)
    assert np.isfinite(loss) and grad.shape == (dataset.n,)
    for k in rng.choice(dataset.n, 8, replace=False):
        step = np.zeros(dataset.n)
        step[k] = 1e-6
        numeric = (objective.loss_and_grad(r + step)[0]
                   - objective.loss_and_grad(r - step)[0]) / 2e-6
        assert numeric == pytest.approx(grad[k], rel=1e-4, abs=1e-9)


@pytest.mark.parametrize("name, options", OBJECTIVE_OPTIONS)
def test_linear_problem_is_the_same_loss(name, options):
    """The sufficient statistics give exactly the loss of the per-transition reward."""
    dataset = with_everything()
    objective = make_objective(name, dataset, **options)
    rng = np.random.default_rng(2)
    columns = rng.normal(size=(dataset.n, 4))
    coef = rng.normal(size=4) * 0.3
    offset = rng.normal(size=dataset.n) * 0.1
    problem = objective.problem(columns, offset)
    intercept = 0.2 if problem.fit_intercept else 0.0
    expected = objective.loss_and_grad(columns @ coef + offset + intercept)[0]
    assert problem.loss(coef, intercept) == pytest.approx(expected, rel=1e-12)
    units = objective.folds(3, seed=0)[0]
    part = objective.problem(columns, offset, units)
    assert part.loss(coef, intercept) == pytest.approx(
        objective.loss_and_grad(columns @ coef + offset + intercept, units)[0], rel=1e-12)


def test_preference_units_are_distinct_segments_and_a_pair_needs_both(walk):
    dataset = walk
    a = np.array([[0, 10], [0, 10], [100, 110], [200, 210], [300, 310]])
    b = np.array([[50, 60], [150, 160], [150, 160], [250, 260], [350, 360]])
    prefs = Preferences(a, b, np.array([1.0, 0.0, 1.0, 0.5, 1.0]))
    objective = PreferenceObjective(dataset.replace(preferences=prefs))
    assert objective.n_units == 8  # [0, 10) and [150, 160) are reused
    # Numbered as they first appear, the a column before the b column.
    assert objective.segment_a.tolist() == [0, 0, 1, 2, 3]
    assert objective.segment_b.tolist() == [4, 5, 5, 6, 7]
    assert objective.members(np.array([0, 5])).tolist() == [1]
    assert objective.members(np.array([0, 1, 4, 5])).tolist() == [0, 1, 2]
    assert objective.members(np.array([1, 5])).tolist() == [2]
    assert objective.members(np.array([0])).tolist() == []


def test_ranked_segments_ranked_twice_are_one_unit_and_never_compared_with_themselves(walk):
    dataset = walk
    segments = np.array([[0, 10], [50, 60], [0, 10], [100, 110]])
    ranked = dataset.replace(rankings=Rankings(segments, np.array([1.0, 2.0, 3.0, 0.0])))
    objective = RankingObjective(ranked)
    assert objective.n_units == 3
    assert objective.members(np.array([0])).tolist() == [0, 2]
    # Pairs: 1>0, 2>0 is the same segment (dropped), 2>1, 0>3, 1>3, 2>3.
    assert objective.n_rows() == 5
    assert objective.n_rows(np.array([0])) == 0


def test_ranking_pairs_stay_inside_a_fold():
    dataset = with_everything()
    objective = RankingObjective(dataset)
    held = objective.folds(3, seed=0)[0]
    problem = objective.problem(np.eye(dataset.n)[:, :5], units=held)
    n = len(held)
    scores = dataset.rankings.scores[held]
    ordered = int(sum((scores[i] > scores[j]) for i in range(n) for j in range(n)))
    assert problem.n_rows == ordered


def test_transition_folds_keep_episodes_whole():
    dataset = random_walk(n=1500, episode=50)
    dataset = dataset.replace(rewards=true_reward(dataset))
    objective = RewardLabelObjective(dataset)
    folds = objective.folds(4, seed=3)
    assert sorted(np.concatenate(folds).tolist()) == list(range(dataset.n_episodes))
    problem = objective.problem(np.ones((dataset.n, 1)), units=folds[0])
    assert problem.n_rows == int(np.isin(dataset.episode_ids, folds[0]).sum())


def test_what_each_objective_identifies():
    dataset = with_everything()
    assert not PreferenceObjective(dataset).identifies_intercept
    assert not RankingObjective(dataset).identifies_intercept
    assert not DemonstrationObjective(dataset).identifies_intercept
    assert RewardLabelObjective(dataset).identifies_intercept


def test_missing_supervision_is_a_clear_error(walk):
    dataset = walk
    dataset = dataset.replace(source="d.npz")
    with pytest.raises(DataError, match="d.npz: no preferences .*--objective preferences"):
        make_objective("preferences", dataset)
    with pytest.raises(DataError, match="d.npz: need at least 2 ranked segments"):
        make_objective("rankings", dataset)
    with pytest.raises(DataError, match="d.npz: no expert transitions"):
        make_objective("demonstrations", dataset)
    with pytest.raises(DataError, match="d.npz: no key 'rewards'"):
        make_objective("rewards", dataset)
    same = Preferences(np.array([[0, 5], [60, 65]]), np.array([[10, 15], [70, 75]]),
                       np.array([1.0, 1.0]))
    with pytest.raises(DataError, match="'pref_label': every label is 1"):
        make_objective("preferences", dataset.replace(preferences=same))
    with pytest.raises(OptionError, match="objective=.vibes.: choose from preferences"):
        make_objective("vibes", dataset)


def test_loss_floor_is_the_loss_of_the_labels_own_probabilities():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 2))
    coef = np.array([1.5, -0.7])
    soft = LinearProblem("bernoulli", X, expit(X @ coef), np.zeros(400), np.ones(400))
    assert soft.loss_floor() == pytest.approx(soft.loss(coef), rel=1e-12)
    assert soft.loss(coef + 0.1) > soft.loss_floor()
    hard = LinearProblem("bernoulli", X, (X @ coef > 0).astype(float), np.zeros(400),
                         np.ones(400))
    assert hard.loss_floor() == 0.0
    squared = LinearProblem("squared", X, X @ coef, np.zeros(400), np.ones(400))
    assert squared.loss_floor() == 0.0


def test_a_floor_is_reachable_only_where_a_finite_reward_reaches_it():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 2))
    coef = np.array([1.5, -0.7])
    soft = LinearProblem("bernoulli", X, expit(X @ coef), np.zeros(400), np.ones(400))
    assert soft.reachable_floor() == soft.loss_floor()
    hard = LinearProblem("bernoulli", X, (X @ coef > 0).astype(float), np.zeros(400),
                         np.ones(400))
    assert hard.reachable_floor() is None
    ties = LinearProblem("bernoulli", X, np.where(X[:, 0] > 1, 0.5, hard.target), np.zeros(400),
                         np.ones(400))
    assert ties.reachable_floor() is None
    rounded = LinearProblem("bernoulli", X, expit(40 * X @ coef), np.zeros(400), np.ones(400))
    assert (rounded.target == 1.0).any() and rounded.reachable_floor() == rounded.loss_floor()
    noisy = LinearProblem("bernoulli", X, soft.target, np.zeros(400), np.ones(400), noise=0.1)
    assert noisy.reachable_floor() is None
    squared = LinearProblem("squared", X, X @ coef, np.zeros(400), np.ones(400))
    assert squared.reachable_floor() == 0.0
    pu = LinearProblem("pu", X, (X @ coef > 0).astype(float), np.zeros(400), np.ones(400))
    assert pu.reachable_floor() is None


@pytest.mark.parametrize("name, options", OBJECTIVE_OPTIONS)
def test_row_map_takes_columns_to_the_problems_rows(name, options):
    """``row_map(units) @ columns`` is the problem's ``X``, and ``members`` names the records
    of the units (the pairs, ranked segments or transitions a search may use)."""
    dataset = with_everything()
    objective = make_objective(name, dataset, **options)
    columns = np.random.default_rng(3).normal(size=(dataset.n, 3))
    units = objective.folds(3, seed=1)[1]
    for part in (None, units):
        np.testing.assert_allclose(objective.row_map(part) @ columns,
                                   objective.problem(columns, None, part).X, rtol=1e-12)
    members = objective.members(units)
    assert len(members) and set(members) <= set(objective.members().tolist())
    assert len(members) < len(objective.members())


def test_folds_of_some_units_split_only_those():
    objective = make_objective("preferences", with_everything())
    units = np.arange(0, objective.n_units, 3)
    folds = objective.folds(4, seed=0, units=units)
    assert sorted(np.concatenate(folds).tolist()) == units.tolist()
    assert [f.tolist() for f in objective.folds(4, seed=0)] == \
        [f.tolist() for f in objective.folds(4, seed=0, units=np.arange(objective.n_units))]


def test_one_long_episode_is_cross_validated_on_contiguous_blocks():
    """A single log of 1000 steps: the transition objectives cut it into contiguous blocks
    (at most ``MIN_TRANSITION_UNITS``), each fold holds whole blocks, and data of many
    episodes keep episodes as units."""
    single = random_walk(n=1000, episode=1000)
    single = single.replace(rewards=single.observations[:, 0])
    objective = RewardLabelObjective(single)
    assert objective.unit_name == "blocks of episodes"
    assert objective.n_units == MIN_TRANSITION_UNITS
    blocks = objective.unit_of_row
    assert np.all(np.diff(blocks) >= 0) and np.all(np.diff(blocks) <= 1)
    assert np.bincount(blocks).tolist() == [50] * MIN_TRANSITION_UNITS
    for fold in objective.folds(5, seed=0):
        assert np.isin(blocks[objective.members(fold)], fold).all()
    many = random_walk(n=2000, episode=50)
    many = many.replace(rewards=many.observations[:, 0])
    assert RewardLabelObjective(many).n_units == many.n_episodes >= MIN_TRANSITION_UNITS
