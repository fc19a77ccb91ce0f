"""The sparse engine: an L1 path over the candidate columns, then a debiased refit per support.

scikit-learn walks the path — L1 logistic regression (liblinear) for the classification-shaped
objectives, ``lasso_path`` for labeled rewards — on standardised columns, only to find which
supports (sets of terms) are worth considering. Each support is then refit without the L1
shrinkage under the objective's exact loss (label noise, positive-unlabeled risk, fixed offsets
from locked terms), with a tiny ridge so separable data cannot send weights to infinity.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, lasso_path

from symreward.objectives import LinearProblem

# Ridge on standardised coefficients in the refit: small enough not to bias a fit that the
# data determine, large enough to keep perfectly separable labels finite.
REFIT_RIDGE = 1e-8
# The path's offset column (locked terms) is scaled up so its L1 penalty is negligible.
_OFFSET_SCALE = 1e3


@dataclass(frozen=True)
class LinearFit:
    """Coefficients (on the problem's raw column scale) of a fit restricted to ``support``."""

    support: tuple[int, ...]
    coef: np.ndarray
    intercept: float = 0.0


def column_scale(problem: LinearProblem) -> np.ndarray:
    """Per-column spread used to standardise: RMS without an intercept, else std."""
    X = problem.X
    spread = X.std(axis=0) if problem.fit_intercept else np.sqrt((X**2).mean(axis=0))
    return np.where(spread > 0, spread, 1.0)


def l1_supports(problem: LinearProblem, *, max_terms: int, n_steps: int = 40,
                max_rows: int = 50_000, seed: int = 0) -> list[tuple[int, ...]]:
    """Distinct supports along the L1 path, from the sparsest, up to ``max_terms`` terms."""
    if problem.X.shape[1] == 0:
        return []
    problem = subsample(problem, max_rows, seed)
    scale = column_scale(problem)
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


def subsample(problem: LinearProblem, max_rows: int, seed: int) -> LinearProblem:
    """At most ``max_rows`` rows: enough to rank supports, which are refit on all rows."""
    if problem.n_rows <= max_rows:
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


def refit(problem: LinearProblem, support: tuple[int, ...], *, ridge: float = REFIT_RIDGE,
          start: LinearFit | None = None) -> LinearFit:
    """Minimise the exact loss over ``support`` (+ intercept where identified), debiased."""
    sub = problem.with_columns(np.asarray(support, dtype=int))
    scale = column_scale(sub)
    X = sub.X / scale
    k = X.shape[1]
    n_params = k + (1 if sub.fit_intercept else 0)

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        coef = theta[:k]
        intercept = theta[k] if sub.fit_intercept else 0.0
        loss, grad_z = sub.loss_and_grad_z(X @ coef + intercept + sub.offset)
        grad = np.empty(n_params)
        grad[:k] = X.T @ grad_z + 2 * ridge * coef
        if sub.fit_intercept:
            grad[k] = grad_z.sum()
        return loss + ridge * float(coef @ coef), grad

    if n_params == 0:
        return LinearFit((), np.zeros(0), 0.0)
    if sub.kind == "squared":
        design = np.column_stack([X, np.ones(sub.n_rows)]) if sub.fit_intercept else X
        penalty = np.r_[np.full(k, ridge), np.zeros(n_params - k)]
        theta = squared_solve(design, sub, penalty)
        return LinearFit(tuple(support), theta[:k] / scale,
                         float(theta[k]) if sub.fit_intercept else 0.0)
    theta0 = np.zeros(n_params)
    if start is not None:
        # Warm start from a fit over the same or a smaller support (new terms start at 0).
        known = dict(zip(start.support, start.coef, strict=True))
        theta0[:k] = [known.get(j, 0.0) for j in support] * scale
        if sub.fit_intercept:
            theta0[k] = start.intercept
    elif sub.kind == "squared" and sub.fit_intercept:
        theta0[k] = float(np.mean(sub.target - sub.offset))
    result = minimize(objective, theta0, jac=True, method="L-BFGS-B",
                      options={"maxiter": 1000, "gtol": 1e-10, "ftol": 1e-14})
    coef = result.x[:k] / scale
    intercept = float(result.x[k]) if sub.fit_intercept else 0.0
    return LinearFit(tuple(support), coef, intercept)


def squared_solve(design: np.ndarray, problem: LinearProblem, penalty: np.ndarray) -> np.ndarray:
    """The minimiser of the weighted squared error plus ``penalty @ theta**2``: the loss is
    quadratic, so one linear solve gives what an iterative optimiser would approach."""
    w = problem.weight / problem.weight.sum()
    gram = (design.T * w) @ design + np.diag(penalty + 1e-15)
    return np.linalg.lstsq(gram, (design.T * w) @ (problem.target - problem.offset),
                           rcond=None)[0]


def fit_loss(problem: LinearProblem, fit: LinearFit) -> float:
    sub = problem.with_columns(np.asarray(fit.support, dtype=int))
    return sub.loss(fit.coef, fit.intercept)


def fit_accuracy(problem: LinearProblem, fit: LinearFit) -> float:
    sub = problem.with_columns(np.asarray(fit.support, dtype=int))
    return sub.accuracy(fit.coef, fit.intercept)
