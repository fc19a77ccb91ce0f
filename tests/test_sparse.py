import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.svm import l1_min_c

from symreward.data import Dataset, bradley_terry_preferences
from symreward.objectives import make_objective
from symreward.search.sparse import _weighted_l1_min_c, l1_supports


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
