"""Fitting weights: many term sets in one compiled call against the one-set fit, and the two
solvers of the one-set fit against each other."""

from dataclasses import replace

import numpy as np
import pytest

from symreward.data import Dataset, bradley_terry_preferences
from symreward.objectives import LinearProblem, make_objective
from symreward.objectives.fitting import fit, fit_loss, fitted_losses, two_fold_scores


def data(n: int = 2000, episode: int = 40, seed: int = 0) -> tuple[Dataset, np.ndarray]:
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, 3))
    reward = np.sin(2 * obs[:, 0]) - obs[:, 1] ** 2 + 0.3 * obs[:, 2]
    dataset = Dataset(observations=obs, actions=rng.normal(size=(n, 1)),
                      next_observations=obs, terminals=np.zeros(n, bool),
                      timeouts=np.arange(n) % episode == episode - 1, rewards=reward)
    dataset = dataset.replace(
        preferences=bradley_terry_preferences(dataset, reward, 400, 10, seed=1, soft=True),
        expert=reward > np.quantile(reward, 0.7))
    columns = np.column_stack([np.sin(2 * obs[:, 0]), obs[:, 1] ** 2, obs[:, 2],
                               obs[:, 0] * obs[:, 1], np.abs(obs[:, 2])])
    return dataset, columns


SETS = [[0], [1, 2], [0, 1, 2], [3, 4, 0], [2, 4], [0, 1, 2, 3, 4], []]


@pytest.mark.parametrize("objective", ["preferences", "rewards", "demonstrations"])
def test_two_fold_scores_are_each_sets_fits_scored_on_the_other_half(objective: str) -> None:
    dataset, columns = data()
    target = make_objective(objective, dataset)
    halves = target.folds(2, seed=0)
    bases = [target.problem(np.zeros((dataset.n, 0)), None, h) for h in halves]
    parts = [target.problem(columns, None, h).X for h in halves]
    train, validation, fitted = two_fold_scores(bases, parts, SETS)
    share = np.array([b.n_rows for b in bases]) / sum(b.n_rows for b in bases)
    for k, chosen in enumerate(SETS):
        problems = [replace(b, X=p[:, chosen]) for b, p in zip(bases, parts, strict=True)]
        fits = [fit(p) for p in problems]
        expected_train = sum(share[h] * problems[h].loss(f.coef, f.intercept)
                             for h, f in enumerate(fits))
        expected_validation = sum(share[1 - h] * problems[1 - h].loss(f.coef, f.intercept)
                                  for h, f in enumerate(fits))
        assert train[k] == pytest.approx(expected_train, rel=1e-9, abs=1e-12)
        assert validation[k] == pytest.approx(expected_validation, rel=1e-9, abs=1e-12)
        np.testing.assert_allclose(fitted[k], sum(share[h] * f.coef for h, f in enumerate(fits)),
                                   rtol=1e-6, atol=1e-9)


def test_a_warm_start_changes_the_work_not_the_answer() -> None:
    dataset, columns = data()
    target = make_objective("preferences", dataset)
    halves = target.folds(2, seed=0)
    bases = [target.problem(np.zeros((dataset.n, 0)), None, h) for h in halves]
    parts = [target.problem(columns, None, h).X for h in halves]
    cold = two_fold_scores(bases, parts, SETS)
    starts = [np.full(len(s), 5.0) for s in SETS]  # far from the optimum
    warm = two_fold_scores(bases, parts, SETS, starts)
    # Newton stops when it promises less than a relative 1e-13: the training losses agree to
    # that, the weights (where the loss is flat) and so the validation losses less closely.
    np.testing.assert_allclose(warm[0], cold[0], rtol=1e-12)
    np.testing.assert_allclose(warm[1], cold[1], rtol=1e-7)
    for w, c in zip(warm[2], cold[2], strict=True):
        np.testing.assert_allclose(w, c, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("objective", ["preferences", "rewards"])
def test_fitted_losses_are_the_single_solvers(objective: str) -> None:
    dataset, columns = data(seed=3)
    target = make_objective(objective, dataset)
    whole = target.problem(np.zeros((dataset.n, 0)))
    X = target.problem(columns).X
    losses, fitted, intercepts = fitted_losses(whole, X, SETS)
    for k, chosen in enumerate(SETS):
        problem = replace(whole, X=X[:, chosen])
        single = fit(problem)
        assert losses[k] == pytest.approx(problem.loss(single.coef, single.intercept), rel=1e-10)
        np.testing.assert_allclose(fitted[k], single.coef, rtol=1e-6, atol=1e-9)
        assert intercepts[k] == pytest.approx(single.intercept, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("objective", ["preferences", "rewards", "demonstrations"])
def test_both_solvers_fit_a_support_alike(objective: str) -> None:
    """Newton (the learner's cross-validation) and L-BFGS-B (the rounding's refits) find the
    same minimum of the same loss, labelled with the support's own column indices."""
    dataset, columns = data()
    problem = make_objective(objective, dataset).problem(columns)
    for support in [(4, 0), (1,), (0, 1, 2)]:
        fast, slow = fit(problem, support), fit(problem, support, solver="lbfgs")
        assert fast.support == support
        assert fit_loss(problem, fast) == pytest.approx(fit_loss(problem, slow), rel=1e-7,
                                                        abs=1e-10)
        np.testing.assert_allclose(fast.coef, slow.coef, rtol=1e-3, atol=1e-4)
        assert fast.intercept == pytest.approx(slow.intercept, rel=1e-3, abs=1e-4)
    empty = fit(problem, ())
    assert empty.support == () and empty.coef.shape == (0,)
    assert empty.intercept == pytest.approx(fit(problem, (), solver="lbfgs").intercept,
                                            abs=1e-6)


def test_a_start_is_where_lbfgs_starts_and_a_solver_is_named() -> None:
    dataset, columns = data()
    problem = make_objective("preferences", dataset).problem(columns)
    first = fit(problem, (0,))
    warm = fit(problem, (0, 1), solver="lbfgs", start=first)
    assert fit_loss(problem, warm) == pytest.approx(fit_loss(problem, fit(problem, (0, 1))),
                                                    rel=1e-7)
    with pytest.raises(ValueError, match="solver='lbfgs'"):
        fit(problem, (0, 1), start=first)
    with pytest.raises(ValueError, match="choose from newton, lbfgs"):
        fit(problem, (0,), solver="adam")


def test_a_problem_is_derived_with_other_rows_and_columns() -> None:
    dataset, columns = data()
    objective = make_objective("rewards", dataset)
    halves = objective.folds(2, seed=0)
    parts = [objective.problem(columns, None, h) for h in halves]
    whole = LinearProblem.stacked(parts)
    assert whole.n_rows == sum(p.n_rows for p in parts) and whole.fit_intercept
    np.testing.assert_array_equal(whole.X, np.vstack([p.X for p in parts]))
    np.testing.assert_array_equal(whole.rows(np.arange(parts[0].n_rows)).target,
                                  parts[0].target)
    np.testing.assert_array_equal(whole.with_columns(np.array([2, 0])).X, whole.X[:, [2, 0]])
