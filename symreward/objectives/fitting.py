"""Fitting weights: one set of columns (``fit``), or many sets in one compiled call
(``two_fold_scores``, ``fitted_losses``).

Every fit minimises the problem's own loss plus a tiny ridge (``REFIT_RIDGE``) on columns
standardised by ``column_scale``: debiased (no L1 shrinkage), with the intercept where the
problem fits one, and finite on separable labels. The learner's cross-validation and final fit,
the stepwise search, the evolutionary engine and the rounding of weights all fit this way, so
their weights are on one scale.

A problem with ``LinearConstraints`` (bounds on weights, linear inequalities) is fitted as
above first: the loss is convex, so where that fit meets the constraints it is also the
constrained optimum, bit for bit. Otherwise the constrained minimum is found by an active-set
search whose steps are fits of the same solvers over the directions the active constraints
leave free, or, where that does not settle, by L-BFGS-B (bounds only) or SLSQP (rows too)
from a feasible start found by linear programming (HiGHS); where no weights meet the rows, the
fit within the bounds alone is returned, marked ``feasible=False``. The batch scorers below
take no constraints.

The evolutionary engine scores thousands of term sets a second, each by two-fold validation:
weights fitted on one half of the objective's units, scored on the other, and the other way
round. For the Bradley–Terry loss (preferences, rankings) and squared error (reward labels)
``two_fold_scores`` does this for a whole batch in one call of the compiled solvers
(``solvers``); the other losses (PU risk, label noise) go through ``fit`` one set at a time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy.optimize import linprog, minimize

from symreward.objectives.linear import LinearProblem
from symreward.objectives.solvers import (
    BERNOULLI,
    SQUARED,
    bradley_terry_newton,
    fit_sets,
    score_sets,
)

# Ridge on standardised coefficients: small enough not to bias a fit that the data determine,
# large enough to keep perfectly separable labels finite.
REFIT_RIDGE = 1e-8
SOLVERS = ("newton", "lbfgs")


@dataclass(frozen=True)
class LinearFit:
    """Coefficients (on the problem's raw column scale) of a fit restricted to ``support``;
    ``feasible`` is False where the problem's constraint rows cannot be met on this support."""

    support: tuple[int, ...]
    coef: np.ndarray
    intercept: float = 0.0
    feasible: bool = True


def column_scale(X: np.ndarray, fit_intercept: bool) -> np.ndarray:
    """Per-column spread used to standardise: std with an intercept, else RMS."""
    spread = X.std(axis=0) if fit_intercept else np.sqrt((X**2).mean(axis=0))
    return np.where(spread > 0, spread, 1.0)


def compiled_kind(problem: LinearProblem) -> int | None:
    """The code of ``problem``'s loss in the compiled solvers, or None if they lack it."""
    if problem.kind == "bernoulli" and problem.noise == 0.0:
        return BERNOULLI
    if problem.kind == "squared":
        return SQUARED
    return None


def fit(problem: LinearProblem, support: Sequence[int] | None = None, *,
        solver: str = "newton", start: LinearFit | None = None) -> LinearFit:
    """The weights of the columns in ``support`` (all of ``problem``'s by default) under its
    loss, debiased, on the raw column scale; the fit's ``support`` is ``support`` as given.

    Squared error is one linear solve whatever the ``solver``. Otherwise ``"newton"`` is
    Newton's method, compiled for the Bradley–Terry loss and damped for the other losses that
    are sums over rows, whose Hessian in the row scores is diagonal; ``"lbfgs"`` is L-BFGS-B,
    started from ``start`` (a fit over the same or fewer columns; new ones start at 0). The
    non-negative PU risk (a class prior) is not a sum over rows and always takes L-BFGS-B. Both
    find the same minimum of a convex loss to their tolerances, not to the last bit: the
    rounding of weights refits with L-BFGS-B from the unrounded weights, every other fit uses
    Newton. The problem's constraints, if any, hold for the result (module docstring)."""
    if solver not in SOLVERS:
        raise ValueError(f"solver={solver!r}: choose from {', '.join(SOLVERS)}")
    if start is not None and solver != "lbfgs":
        raise ValueError("start is where L-BFGS-B starts: pass solver='lbfgs'")
    chosen = tuple(range(problem.X.shape[1])) if support is None else tuple(support)
    sub = problem if support is None else problem.with_columns(np.asarray(chosen, dtype=int))
    if solver == "lbfgs" or (problem.kind == "pu" and problem.class_prior is not None):
        coef, intercept = _lbfgs(sub, chosen, start)
    else:
        coef, intercept = _newton(sub)
    if sub.constraints is None or sub.constraints.satisfied(coef, intercept):
        return LinearFit(chosen, coef, intercept)
    return _constrained(sub, chosen, coef, intercept)


def _newton(problem: LinearProblem) -> tuple[np.ndarray, float]:
    k = problem.X.shape[1]
    scale = column_scale(problem.X, problem.fit_intercept)
    X = problem.X / scale
    if problem.fit_intercept:
        X = np.column_stack([X, np.ones(len(X))])
    penalty = np.full(X.shape[1], REFIT_RIDGE)
    if problem.fit_intercept:
        penalty[-1] = 0.0
    kind = compiled_kind(problem)
    if kind == BERNOULLI:
        theta = bradley_terry_newton(np.ascontiguousarray(X), problem.target, problem.offset,
                                     problem.weight, penalty, np.zeros(X.shape[1]))
    elif kind == SQUARED:
        theta = squared_solve(X, problem, penalty)
    else:
        theta = _separable_newton(problem, X, penalty)
    return theta[:k] / scale, float(theta[k]) if problem.fit_intercept else 0.0


def _standardised_loss(problem: LinearProblem, X: np.ndarray
                       ) -> Callable[[np.ndarray], tuple[float, np.ndarray]]:
    """The problem's loss plus the refit ridge, and its gradient, in the parameters
    ``theta`` (weights of the standardised columns ``X``, then the intercept if fitted)."""
    k = X.shape[1]
    n_params = k + (1 if problem.fit_intercept else 0)

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        coef = theta[:k]
        intercept = theta[k] if problem.fit_intercept else 0.0
        loss, grad_z = problem.loss_and_grad_z(X @ coef + intercept + problem.offset)
        grad = np.empty(n_params)
        grad[:k] = X.T @ grad_z + 2 * REFIT_RIDGE * coef
        if problem.fit_intercept:
            grad[k] = grad_z.sum()
        return loss + REFIT_RIDGE * float(coef @ coef), grad
    return objective


def _lbfgs(problem: LinearProblem, support: tuple[int, ...], start: LinearFit | None
           ) -> tuple[np.ndarray, float]:
    """L-BFGS-B on ``problem`` (its columns are ``support``'s), from ``start``."""
    scale = column_scale(problem.X, problem.fit_intercept)
    X = problem.X / scale
    k = X.shape[1]
    n_params = k + (1 if problem.fit_intercept else 0)
    objective = _standardised_loss(problem, X)
    if n_params == 0:
        return np.zeros(0), 0.0
    if problem.kind == "squared":
        design = np.column_stack([X, np.ones(len(X))]) if problem.fit_intercept else X
        penalty = np.r_[np.full(k, REFIT_RIDGE), np.zeros(n_params - k)]
        theta = squared_solve(design, problem, penalty)
        return theta[:k] / scale, float(theta[k]) if problem.fit_intercept else 0.0
    theta0 = np.zeros(n_params)
    if start is not None:
        known = dict(zip(start.support, start.coef, strict=True))
        theta0[:k] = [known.get(j, 0.0) for j in support] * scale
        if problem.fit_intercept:
            theta0[k] = start.intercept
    result = minimize(objective, theta0, jac=True, method="L-BFGS-B",
                      options={"maxiter": 1000, "gtol": 1e-10, "ftol": 1e-14})
    coef = result.x[:k] / scale
    intercept = float(result.x[k]) if problem.fit_intercept else 0.0
    return coef, intercept


def _constrained(problem: LinearProblem, support: tuple[int, ...], coef: np.ndarray,
                 intercept: float) -> LinearFit:
    """The minimum of ``problem``'s loss under its constraints (it has some, and the
    unconstrained minimum ``coef``, ``intercept`` breaks them), on standardised columns.

    First an active-set search (``_active_set``): each trial set of constraints held as
    equalities is a fit of the same loss over the directions they leave free, by the solvers of
    unconstrained fits. Where it does not settle, L-BFGS-B (bounds alone) or SLSQP (rows too),
    started where linear programming finds the rows met; where no weights meet the rows, the
    minimum within the bounds alone, marked infeasible."""
    constraints = problem.constraints
    assert constraints is not None
    if len(coef) == 0 and not problem.fit_intercept:  # no weights to move the unmet rows
        return LinearFit(support, coef, intercept, feasible=False)
    scale = column_scale(problem.X, problem.fit_intercept)
    k = problem.X.shape[1]
    with_intercept = problem.fit_intercept
    lower = constraints.lower * scale
    upper = constraints.upper * scale
    rows = constraints.rows / scale
    if with_intercept:
        lower = np.append(lower, constraints.intercept_lower)
        upper = np.append(upper, constraints.intercept_upper)
        rows = np.column_stack([rows, constraints.intercept_rows])
    start = np.append(coef * scale, intercept) if with_intercept else coef * scale
    limits = constraints.limits
    theta = _active_set(problem, scale, rows, limits, lower, upper, start)
    feasible = True
    if theta is None:
        theta, feasible = _general(problem, scale, rows, limits, lower, upper, start)
    # A weight the optimiser left a rounding error away from a bound of 0 is at the bound: the
    # term is out of the model (``constraints.effective_support`` drops it).
    at_zero = ((lower == 0) | (upper == 0)) & (np.abs(theta) <= 1e-12 * max(
        1.0, float(np.abs(theta).max(initial=0.0))))
    theta[at_zero] = 0.0
    return LinearFit(support, theta[:k] / scale, float(theta[k]) if with_intercept else 0.0,
                     feasible=feasible)


def _active_set(problem: LinearProblem, scale: np.ndarray, rows: np.ndarray,
                limits: np.ndarray, lower: np.ndarray, upper: np.ndarray, theta: np.ndarray
                ) -> np.ndarray | None:
    """The constrained minimum in the standardised parameters ``theta`` (weights, then the
    intercept if fitted), from the unconstrained one: the most violated constraint (a row or a
    bound) joins the set held as equalities, one whose multiplier has the wrong sign leaves
    it, until the point meets every constraint with multipliers of the right sign (the KKT
    conditions of a convex problem: the minimum). None where that does not happen within a
    few steps or the held set cannot be met."""
    n = len(theta)
    finite_upper, finite_lower = np.flatnonzero(np.isfinite(upper)), np.flatnonzero(
        np.isfinite(lower))
    G = np.vstack([rows, np.eye(n)[finite_upper], -np.eye(n)[finite_lower]])
    h = np.concatenate([limits, upper[finite_upper], -lower[finite_lower]])
    slack = 1e-10 * (1 + np.abs(h))
    objective = _standardised_loss(problem, problem.X / scale)
    held: list[int] = []
    for _ in range(2 * len(h) + 4):
        excess = G @ theta - h
        excess[held] = -np.inf
        worst = int(np.argmax(excess)) if len(h) else 0
        if len(h) and excess[worst] > slack[worst]:
            held.append(worst)
        else:
            gradient = objective(theta)[1]
            if not held:
                return theta
            multipliers = np.linalg.lstsq(G[held].T, -gradient, rcond=None)[0]
            scale_of = 1e-8 * max(1.0, float(np.abs(multipliers).max()))
            if multipliers.min() >= -scale_of:
                return theta
            held.pop(int(np.argmin(multipliers)))
        theta = _on_equalities(problem, scale, G[held], h[held])
        if theta is None:
            return None
    return None


def _on_equalities(problem: LinearProblem, scale: np.ndarray, A: np.ndarray, b: np.ndarray
                   ) -> np.ndarray | None:
    """The minimum of the loss in the standardised parameters where ``A @ theta = b``: the
    loss over the directions the equalities leave free, fitted as an unconstrained problem
    whose offset holds the part they fix. None where they cannot all hold."""
    design = problem.X / scale
    if problem.fit_intercept:
        design = np.column_stack([design, np.ones(len(design))])
    n = design.shape[1]
    fixed = np.linalg.lstsq(A, b, rcond=None)[0] if len(A) else np.zeros(n)
    if len(A) and not np.allclose(A @ fixed, b, rtol=1e-9, atol=1e-12):
        return None
    _, singular, right = np.linalg.svd(A) if len(A) else (None, np.zeros(0), np.eye(n))
    rank = int(np.sum(singular > 1e-12 * max(1.0, float(singular.max(initial=0.0)))))
    free = right[rank:].T
    if free.shape[1] == 0:
        return fixed
    sub = replace(problem, X=design @ free, offset=problem.offset + design @ fixed,
                  fit_intercept=False, constraints=None)
    if problem.kind == "pu" and problem.class_prior is not None:
        z = _lbfgs(sub, tuple(range(free.shape[1])), None)[0]
    else:
        z = _newton(sub)[0]
    return fixed + free @ z


def _general(problem: LinearProblem, scale: np.ndarray, rows: np.ndarray, limits: np.ndarray,
             lower: np.ndarray, upper: np.ndarray, start: np.ndarray
             ) -> tuple[np.ndarray, bool]:
    """The constrained minimum by a general solver, and whether the rows can be met: L-BFGS-B
    for bounds alone, SLSQP with rows from a start where linear programming finds them met;
    the minimum within the bounds where they cannot be."""
    theta = np.clip(start, lower, upper)
    if np.any(lower > upper):  # contradictory bounds (invariants that exclude each other)
        return theta, False
    bounds = [(None if math.isinf(lo) else lo, None if math.isinf(hi) else hi)
              for lo, hi in zip(lower, upper, strict=True)]
    objective = _standardised_loss(problem, problem.X / scale)
    feasible = True
    if len(limits) and np.any(rows @ theta > limits):
        found = linprog(np.zeros(len(theta)), A_ub=rows, b_ub=limits, bounds=bounds,
                        method="highs")
        feasible = found.status == 0
        if feasible:
            theta = np.clip(found.x, lower, upper)
    if feasible and len(limits):
        result = minimize(objective, theta, jac=True, method="SLSQP", bounds=bounds,
                          constraints=[{"type": "ineq", "fun": lambda t: limits - rows @ t,
                                        "jac": lambda t: -rows}],
                          options={"maxiter": 1000, "ftol": 1e-15})
        trial = np.clip(result.x, lower, upper)
        # SLSQP meets linear rows to its own tolerance: keep its answer where it does (it is
        # never worse than the feasible start).
        if not np.any(rows @ trial - limits > 1e-9 * (1 + np.abs(limits))):
            theta = trial
        return theta, True
    return np.clip(minimize(objective, theta, jac=True, method="L-BFGS-B", bounds=bounds,
                            options={"maxiter": 1000, "gtol": 1e-10, "ftol": 1e-14}).x,
                   lower, upper), feasible


def squared_solve(design: np.ndarray, problem: LinearProblem, penalty: np.ndarray) -> np.ndarray:
    """The minimiser of the weighted squared error plus ``penalty @ theta**2``: the loss is
    quadratic, so one linear solve gives what an iterative optimiser would approach."""
    w = problem.weight / problem.weight.sum()
    gram = (design.T * w) @ design + np.diag(penalty + 1e-15)
    return np.linalg.lstsq(gram, (design.T * w) @ (problem.target - problem.offset),
                           rcond=None)[0]


def _separable_newton(problem: LinearProblem, X: np.ndarray, penalty: np.ndarray) -> np.ndarray:
    """Damped Newton steps on a loss that is a sum over rows, its Hessian in the row scores
    (diagonal) taken by ``LinearProblem.curvature_z``."""
    theta = np.zeros(X.shape[1])

    def total(theta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        z = X @ theta + problem.offset
        loss, grad_z = problem.loss_and_grad_z(z)
        return loss + float(penalty @ theta**2), grad_z, z

    loss, grad_z, z = total(theta)
    for _ in range(50):
        gradient = X.T @ grad_z + 2 * penalty * theta
        hessian = (X.T * problem.curvature_z(z)) @ X + np.diag(2 * penalty + 1e-12)
        direction = np.linalg.lstsq(hessian, gradient, rcond=None)[0]
        rate = 1.0
        while rate > 1e-8:
            trial = theta - rate * direction
            trial_loss, trial_grad, trial_z = total(trial)
            if trial_loss <= loss - 1e-4 * rate * float(gradient @ direction):
                break
            rate *= 0.5
        else:
            break
        improvement = loss - trial_loss
        theta, loss, grad_z, z = trial, trial_loss, trial_grad, trial_z
        if improvement <= 1e-13 * max(abs(loss), 1e-300):
            break
    return theta


def fit_loss(problem: LinearProblem, fitted: LinearFit) -> float:
    """The loss of ``fitted``'s weights on ``problem`` (whose columns its support indexes)."""
    sub = problem.with_columns(np.asarray(fitted.support, dtype=int))
    return sub.loss(fitted.coef, fitted.intercept)


def fit_accuracy(problem: LinearProblem, fitted: LinearFit) -> float:
    """``LinearProblem.accuracy`` of ``fitted``'s weights on ``problem``."""
    sub = problem.with_columns(np.asarray(fitted.support, dtype=int))
    return sub.accuracy(fitted.coef, fitted.intercept)


def two_fold_scores(halves: Sequence[LinearProblem], columns: Sequence[np.ndarray],
                    sets: Sequence[Sequence[int]],
                    starts: Sequence[Sequence[float]] | None = None
                    ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """For each set of column indices: the mean in-sample (training) loss, the two-fold
    validation loss and the mean fitted weights, weights fitted on each of the two ``halves``
    (problems without columns) and scored on the other. ``columns[h]`` holds half ``h``'s
    columns, one per index, as an (n_rows, n_columns) array; ``starts`` are weights to start
    each set's fits from (the loss is convex, so they change the work, not the answer)."""
    rows = [h.n_rows for h in halves]
    share = np.asarray(rows, dtype=np.float64) / max(sum(rows), 1)
    kind = compiled_kind(halves[0])
    if kind is None:
        return _scores_one_by_one(halves, columns, sets, share)
    members, bounds, initial = _flatten(sets, starts)
    scales = [column_scale(c, halves[0].fit_intercept) for c in columns]
    train, validation, weights = score_sets(
        kind, halves[0].fit_intercept, REFIT_RIDGE, share,
        np.ascontiguousarray(columns[0]), np.ascontiguousarray(columns[1]),
        halves[0].target, halves[1].target, halves[0].offset, halves[1].offset,
        halves[0].weight, halves[1].weight, scales[0], scales[1], members, bounds, initial)
    return train, validation, [weights[k, :len(s)].copy() for k, s in enumerate(sets)]


def fitted_losses(problem: LinearProblem, columns: np.ndarray, sets: Sequence[Sequence[int]],
                  starts: Sequence[Sequence[float]] | None = None
                  ) -> tuple[np.ndarray, list[np.ndarray], np.ndarray]:
    """For each set of column indices: the in-sample loss, weights and intercept of the fit
    on ``problem`` (a problem without columns; ``columns`` is (n_rows, n_columns)), the sets
    in one compiled call where the loss allows."""
    kind = compiled_kind(problem)
    if kind is None:
        losses, weights, intercepts = np.zeros(len(sets)), [], np.zeros(len(sets))
        for k, chosen in enumerate(sets):
            sub = replace(problem, X=columns[:, np.asarray(chosen, dtype=np.int64)])
            found = fit(sub)
            losses[k] = sub.loss(found.coef, found.intercept)
            weights.append(np.asarray(found.coef))
            intercepts[k] = found.intercept
        return losses, weights, intercepts
    members, bounds, initial = _flatten(sets, starts)
    losses, weights, intercepts = fit_sets(
        kind, problem.fit_intercept, REFIT_RIDGE, np.ascontiguousarray(columns),
        problem.target, problem.offset, problem.weight,
        column_scale(columns, problem.fit_intercept), members, bounds, initial)
    return losses, [weights[k, :len(s)].copy() for k, s in enumerate(sets)], intercepts


def _flatten(sets: Sequence[Sequence[int]], starts: Sequence[Sequence[float]] | None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    count = sum(len(s) for s in sets)
    members = np.fromiter((j for s in sets for j in s), dtype=np.int64, count=count)
    bounds = np.zeros(len(sets) + 1, dtype=np.int64)
    np.cumsum([len(s) for s in sets], out=bounds[1:])
    initial = np.zeros(count) if starts is None else np.fromiter(
        (w for s in starts for w in s), dtype=np.float64, count=count)
    return members, bounds, initial


def _scores_one_by_one(halves: Sequence[LinearProblem], columns: Sequence[np.ndarray],
                       sets: Sequence[Sequence[int]], share: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    train, validation, weights = np.zeros(len(sets)), np.zeros(len(sets)), []
    for k, chosen in enumerate(sets):
        index = np.asarray(chosen, dtype=np.int64)
        problems = [replace(half, X=columns[h][:, index]) for h, half in enumerate(halves)]
        mean = np.zeros(len(index))
        for h, problem in enumerate(problems):
            found = fit(problem)
            train[k] += share[h] * problem.loss(found.coef, found.intercept)
            validation[k] += share[1 - h] * problems[1 - h].loss(found.coef, found.intercept)
            mean += share[h] * found.coef
        weights.append(mean)
    return train, validation, weights
