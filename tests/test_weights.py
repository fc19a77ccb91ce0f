"""Weights of many term sets in one compiled call, against the one-set solver and the loss."""

import numpy as np
import pytest

from symreward.data import Dataset, bradley_terry_preferences
from symreward.objectives import make_objective
from symreward.search import weights
from symreward.search.sparse import fit_loss, refit


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
    train, validation, fitted = weights.two_fold_scores(bases, parts, SETS)
    share = np.array([b.n_rows for b in bases]) / sum(b.n_rows for b in bases)
    for k, chosen in enumerate(SETS):
        problems = [weights.with_x(b, p[:, chosen]) for b, p in zip(bases, parts, strict=True)]
        fits = [weights.fit_weights(p) for p in problems]
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
    cold = weights.two_fold_scores(bases, parts, SETS)
    starts = [np.full(len(s), 5.0) for s in SETS]  # far from the optimum
    warm = weights.two_fold_scores(bases, parts, SETS, starts)
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
    losses, fitted, intercepts = weights.fitted_losses(whole, X, SETS)
    for k, chosen in enumerate(SETS):
        problem = weights.with_x(whole, X[:, chosen])
        fit = weights.fit_weights(problem)
        assert losses[k] == pytest.approx(problem.loss(fit.coef, fit.intercept), rel=1e-10)
        np.testing.assert_allclose(fitted[k], fit.coef, rtol=1e-6, atol=1e-9)
        assert intercepts[k] == pytest.approx(fit.intercept, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("objective", ["preferences", "rewards", "demonstrations"])
def test_a_support_is_fitted_as_refit_fits_it(objective: str) -> None:
    """``fit_support`` stands in for ``refit`` in the learner's cross-validation: the same
    minimum of the same loss, labelled with the support's own column indices."""
    dataset, columns = data()
    problem = make_objective(objective, dataset).problem(columns)
    for support in [(4, 0), (1,), (0, 1, 2)]:
        fast, slow = weights.fit_support(problem, support), refit(problem, support)
        assert fast.support == support
        assert fit_loss(problem, fast) == pytest.approx(fit_loss(problem, slow), rel=1e-7,
                                                        abs=1e-10)
        np.testing.assert_allclose(fast.coef, slow.coef, rtol=1e-3, atol=1e-4)
        assert fast.intercept == pytest.approx(slow.intercept, rel=1e-3, abs=1e-4)
    empty = weights.fit_support(problem, ())
    assert empty.support == () and empty.coef.shape == (0,)
    assert empty.intercept == pytest.approx(refit(problem, ()).intercept, abs=1e-6)
