import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.svm import l1_min_c

from symreward.data import Dataset, bradley_terry_preferences
from symreward.objectives import LinearProblem, make_objective
from symreward.objectives.fitting import fit, fit_loss
from symreward.search.library import Candidate, TermLibrary
from symreward.search.sparse import (
    _weighted_l1_min_c,
    l1_supports,
    swapped_variants,
    threshold_forms,
)
from symreward.search.stepwise import score_gains, stepwise_supports


def _nonzero_at(rows, y, weight, c, fit_intercept):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LogisticRegression(l1_ratio=1.0, solver="liblinear", C=c,
                                   fit_intercept=fit_intercept, intercept_scaling=10.0,
                                   tol=1e-8, max_iter=1000).fit(rows, y, sample_weight=weight)
    intercept = model.intercept_ if fit_intercept else np.zeros(1)
    return np.count_nonzero(np.abs(np.append(model.coef_, intercept)) > 1e-10)


@pytest.mark.parametrize("fit_intercept", [False, True])
def test_weighted_min_c_is_where_liblinear_leaves_zero(fit_intercept):
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(300, 6)) + 0.3
    y = (rng.random(300) < 0.4).astype(int)
    weight = rng.uniform(0.1, 2.0, size=300)
    c_min = _weighted_l1_min_c(rows, y, weight, fit_intercept, 10.0)
    assert _nonzero_at(rows, y, weight, 0.98 * c_min, fit_intercept) == 0
    assert _nonzero_at(rows, y, weight, 1.2 * c_min, fit_intercept) >= 1
    unit = _weighted_l1_min_c(rows, y, np.ones(300), fit_intercept, 10.0)
    assert unit == pytest.approx(l1_min_c(rows, y, loss="log", fit_intercept=fit_intercept,
                                          intercept_scaling=10.0), rel=1e-12)


def test_soft_labels_walk_the_l1_path_from_the_strongest_column():
    """A soft label is two weighted rows with opposite labels; unweighted, their gradients
    cancel and the path used to start at a C where every column enters at once."""
    rng = np.random.default_rng(1)
    n = 3000
    obs = np.cumsum(rng.normal(scale=0.3, size=(n, 3)), axis=0) % 4 - 2
    data = Dataset(observations=obs, actions=np.zeros((n, 1)), next_observations=obs,
                   terminals=np.zeros(n, bool), timeouts=np.arange(n) % 30 == 29)
    reward = 2.0 * obs[:, 0] + 0.5 * obs[:, 1]
    soft = bradley_terry_preferences(data, reward, 600, 10, temperature=1.0, seed=2, soft=True)
    problem = make_objective("preferences", data.replace(preferences=soft)).problem(obs)
    supports = l1_supports(problem, max_terms=3)
    assert supports[:2] == [(0,), (0, 1)], supports


def _squared_problem(X: np.ndarray, y: np.ndarray) -> LinearProblem:
    n = len(y)
    return LinearProblem("squared", X, y, np.zeros(n), np.ones(n), fit_intercept=True)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 3))
def test_score_gains_are_the_exact_savings_of_a_squared_loss(seed, chosen):
    """Squared error is quadratic: one Newton step is the refit, so the score test's gain of a
    column is exactly what adding it (the support's weights and intercept refit) saves."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(80, 6))
    X[:, 5] = X[:, 0] + 0.5 * X[:, 1] + 0.1 * rng.normal(size=80)
    y = X @ rng.normal(size=6) + rng.normal(size=80)
    problem = _squared_problem(X, y)
    support = tuple(range(chosen))
    fitted = fit(problem, support)
    gains = score_gains(problem, fitted)
    assert np.all(np.isneginf(gains[list(support)]))
    for k in range(chosen, 6):
        saved = fit_loss(problem, fitted) - fit_loss(problem, fit(problem, (*support, k)))
        assert gains[k] == pytest.approx(saved, rel=1e-4, abs=1e-9)  # fit has a tiny ridge


def test_a_near_copy_of_a_chosen_term_gains_nothing_and_fresh_signal_is_taken():
    """Segment sums of two action costs that move together (one policy scales both joints):
    once the first is in, the raw gradient still ranks a near-copy of it above the second
    cost, whose fresh signal is what lowers the loss; the score test ranks by the saving."""
    rng = np.random.default_rng(3)
    n = 600
    scale = rng.uniform(0.1, 1.0, size=n)
    first = scale * rng.uniform(0.8, 1.2, size=n)
    second = scale * rng.uniform(0.8, 1.2, size=n)
    copy = first * 1.01 + 0.001 * rng.normal(size=n)
    X = np.column_stack([first, copy, second]) - np.column_stack([first, copy, second])[::-1]
    z = -4 * (X[:, 0] + X[:, 2])
    labels = (rng.random(n) < 1 / (1 + np.exp(-z))).astype(float)
    problem = LinearProblem("bernoulli", X, labels, np.zeros(n), np.ones(n))
    gains = score_gains(problem, fit(problem, (0,)))
    assert gains[2] > 10 * gains[1]
    assert stepwise_supports(problem, max_terms=2)[1] == (0, 2)


def _library() -> list[Candidate]:
    values = np.random.default_rng(0).normal(size=(500, 2))
    library = TermLibrary(powers=(1, 2), absolute=False, products=False,
                          knot_quantiles=(0.25, 0.75))
    return library.build(["x", "y"], values)[0]


CANDIDATES = _library()


def test_a_thresholds_forms_are_its_features_hinges_and_indicators() -> None:
    candidates = CANDIDATES
    texts = [c.text for c in candidates]
    forms = {c.text: sorted(texts[k] for k in ks)
             for c, ks in zip(candidates, threshold_forms(candidates), strict=True)}
    of_x = sorted(c.text for c in candidates
                  if c.kind in ("hinge", "indicator") and c.parents == ("x",))
    assert len(of_x) == 6  # two knots, each a hinge above, a hinge below and an indicator
    assert all(forms[text] == of_x for text in of_x)
    assert forms["x"] == forms["x**2"] == forms["y"] == []
    assert not set(forms["(y > 0.6)"]) & set(of_x)


@settings(max_examples=50, deadline=None)
@given(st.sets(st.integers(0, len(CANDIDATES) - 1), min_size=1, max_size=4))
def test_a_swap_replaces_exactly_one_term_by_another_threshold_of_its_feature(chosen) -> None:
    forms = threshold_forms(CANDIDATES)
    support = tuple(sorted(chosen))
    variants = swapped_variants(support, forms)
    assert len(variants) == len(set(variants))
    expected = {tuple(sorted((*(t for t in support if t != term), other)))
                for term in support for other in forms[term] if other not in support}
    assert set(variants) == expected
    for variant in variants:
        assert len(variant) == len(support)
        (gone,), (new,) = set(support) - set(variant), set(variant) - set(support)
        assert new in forms[gone]
