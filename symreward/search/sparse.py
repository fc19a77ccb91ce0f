"""The sparse engine: an L1 path over the candidate columns, then a debiased refit per support;
and the neighbours of a support the learner scores next (simpler variants, threshold swaps).

scikit-learn walks the path — L1 logistic regression (liblinear) for the classification-shaped
objectives, ``lasso_path`` for labeled rewards — on standardised columns, only to find which
supports (sets of terms) are worth considering. Each support is then refit without the L1
shrinkage under the objective's exact loss (label noise, positive-unlabeled risk, fixed offsets
from locked terms) by ``symreward.objectives.fitting.fit``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, lasso_path

from symreward.objectives import LinearProblem
from symreward.objectives.fitting import column_scale
from symreward.search.library import Candidate

# The path's offset column (locked terms) is scaled up so its L1 penalty is negligible.
_OFFSET_SCALE = 1e3
# The library's kinds of candidate that put a threshold on a feature.
THRESHOLD_KINDS = ("hinge", "indicator")


def l1_supports(problem: LinearProblem, *, max_terms: int, n_steps: int = 40,
                max_rows: int = 50_000, seed: int = 0) -> list[tuple[int, ...]]:
    """Distinct supports along the L1 path, from the sparsest, up to ``max_terms`` terms."""
    if problem.X.shape[1] == 0:
        return []
    problem = subsample(problem, max_rows, seed)
    scale = column_scale(problem.X, problem.fit_intercept)
    X = problem.X / scale
    if problem.kind == "squared":
        path = _lasso_path(X, problem.target - problem.offset, n_steps)
    else:
        path = _logistic_path(problem, X, n_steps, max_terms)
    supports: list[tuple[int, ...]] = []
    for coef in path:
        support = tuple(int(k) for k in np.flatnonzero(np.abs(coef) > 1e-10))
        if len(support) > max_terms:
            break
        if support and support not in supports:
            supports.append(support)
    return supports


def simpler_variants(support: tuple[int, ...], parents: Sequence[Sequence[int]]
                     ) -> list[tuple[int, ...]]:
    """Supports one step simpler than ``support``: a term dropped, or replaced by a parent it was
    built from (``max(0, x + 1.1)`` → ``x``, ``height*x_vel`` → ``x_vel``). Look-alike terms
    can win on noise; offering their parents lets cross-validation and the front prefer the
    plain form when the data cannot tell them apart."""
    variants = []
    for position, term in enumerate(support):
        rest = support[:position] + support[position + 1:]
        variants.append(tuple(sorted(rest)))
        for parent in parents[term]:
            if parent not in support:
                variants.append(tuple(sorted((*rest, parent))))
    return [v for v in dict.fromkeys(variants) if v]


def swapped_variants(support: tuple[int, ...], families: Sequence[Sequence[int]]
                     ) -> list[tuple[int, ...]]:
    """Supports with one term replaced by another of ``families[term]``: for a hinge or an
    indicator, the other hinges and indicators of its feature (``max(0, 23 - speed)`` →
    ``(speed > 8.5)``). A feature's thresholds at neighbouring knots and sides are nearly
    collinear columns, and proposals fitted on all the labels settle on whichever one the
    first terms left room for; one swap away, the knot and form the other terms call for get
    their turn (the swap steps of local combinatorial search, as in Hazimeh and Mazumder's
    L0Learn). Simpler forms are ``simpler_variants``'s."""
    variants = []
    for position, term in enumerate(support):
        rest = support[:position] + support[position + 1:]
        variants.extend(tuple(sorted((*rest, other))) for other in families[term]
                        if other not in support)
    return list(dict.fromkeys(variants))


def threshold_forms(candidates: Sequence[Candidate]) -> list[list[int]]:
    """For each candidate that is a hinge or an indicator, the indices of its feature's hinges
    and indicators (``swapped_variants``'s ``families``); none for other terms."""
    forms: dict[str, list[int]] = {}
    for k, c in enumerate(candidates):
        if c.kind in THRESHOLD_KINDS:
            forms.setdefault(c.parents[0], []).append(k)
    return [forms[c.parents[0]] if c.kind in THRESHOLD_KINDS else [] for c in candidates]


def subsample(problem: LinearProblem, max_rows: int, seed: int) -> LinearProblem:
    """At most ``max_rows`` rows: enough to rank supports, which are refit on all rows. A
    reduced problem (a few rows standing for all of them) is already small: as it is."""
    if problem.represented_rows is not None or problem.n_rows <= max_rows:
        return problem
    rows = np.sort(np.random.default_rng(seed).choice(problem.n_rows, max_rows, replace=False))
    return problem.rows(rows)


def _lasso_path(X: np.ndarray, y: np.ndarray, n_steps: int) -> list[np.ndarray]:
    centred = X - X.mean(axis=0)
    y = y - y.mean()
    top = np.abs(centred.T @ y).max() / len(y)
    if top == 0:
        return []
    alphas = top * np.logspace(0, -4, n_steps)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        _, coefs, _ = lasso_path(centred, y, alphas=alphas)
    return [coefs[:, k] for k in range(coefs.shape[1])]


def _logistic_path(problem: LinearProblem, X: np.ndarray, n_steps: int, max_terms: int
                   ) -> list[np.ndarray]:
    """Coefficients along an L1-logistic path; soft labels become two weighted rows."""
    if problem.kind == "pu":
        labels = (problem.target > 0.5).astype(int)
        rows, y, weight = X, labels, np.where(labels == 1, 0.5 / max(labels.sum(), 1),
                                               0.5 / max((1 - labels).sum(), 1))
        offset = problem.offset
    else:
        positive = problem.weight * problem.target
        negative = problem.weight * (1 - problem.target)
        keep_pos, keep_neg = positive > 0, negative > 0
        rows = np.vstack([X[keep_pos], X[keep_neg]])
        y = np.concatenate([np.ones(keep_pos.sum(), int), np.zeros(keep_neg.sum(), int)])
        weight = np.concatenate([positive[keep_pos], negative[keep_neg]])
        offset = np.concatenate([problem.offset[keep_pos], problem.offset[keep_neg]])
    weight = weight * len(weight) / weight.sum()
    has_offset = bool(np.any(offset != 0))
    if has_offset:
        rows = np.column_stack([rows, offset * _OFFSET_SCALE])
    if len(np.unique(y)) < 2:
        return []
    fit_intercept = problem.fit_intercept
    c_min = _weighted_l1_min_c(rows, y, weight, fit_intercept, intercept_scaling=10.0)
    if c_min is None:
        return []
    path = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for c in c_min * np.logspace(0.02, 4, n_steps):
            model = LogisticRegression(l1_ratio=1.0, solver="liblinear", C=c,
                                       fit_intercept=fit_intercept, intercept_scaling=10.0,
                                       max_iter=500, tol=1e-6)
            model.fit(rows, y, sample_weight=weight)
            coef = model.coef_[0][:X.shape[1]]
            path.append(coef)
            if np.count_nonzero(np.abs(coef) > 1e-10) > max_terms:
                break
    return path


def _weighted_l1_min_c(rows: np.ndarray, y: np.ndarray, weight: np.ndarray,
                       fit_intercept: bool, intercept_scaling: float) -> float | None:
    """The smallest ``C`` at which L1 logistic regression with these sample weights has a
    nonzero coefficient: ``2 / max |sum_i weight_i y_i x_i|`` for labels in {-1, 1}, the
    gradient at zero. scikit-learn's ``l1_min_c`` takes no weights, and a soft label is two
    rows with the same features and opposite labels, whose unweighted gradients cancel: it
    then returns a ``C`` of ~1e13, where liblinear fits every column unpenalised and spends
    its whole iteration budget on a rank-deficient design. None where no column moves the
    loss."""
    signed = weight * np.where(y == 1, 1.0, -1.0)
    strength = np.abs(rows.T @ signed)
    if fit_intercept:
        strength = np.append(strength, abs(signed.sum()) * intercept_scaling)
    top = float(strength.max(initial=0.0))
    return 2.0 / top if top > 0 else None
