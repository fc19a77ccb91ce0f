"""The weights of term sets: fitted by the objective's own convex loss, many sets per call.

The evolutionary engine scores thousands of term sets a second, each by two-fold validation:
weights fitted on one half of the objective's units, scored on the other, and the other way
round. For the Bradley–Terry loss (preferences, rankings) and squared error (reward labels)
``two_fold_scores`` does this for a whole batch in one compiled call, the sets spread over the
cores; every set is computed by one thread from its own inputs, so results do not depend on
scheduling. The other losses (PU risk, label noise) go through ``fit_weights`` one set at a time.

Weights are fitted on columns standardised as ``sparse.refit`` standardises them, with its tiny
ridge, so they are on the same scale as the learner's later refit.
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np

from symreward.kernels import vecmath
from symreward.objectives import LinearProblem
from symreward.search.sparse import REFIT_RIDGE, LinearFit, column_scale, refit, squared_solve

_BERNOULLI, _SQUARED = 0, 1


# The Bradley–Terry loss is an exp and a log per row: glibc's vector functions where the kernels
# use them, several doubles a call (buffers are padded to ``_PAD``, a multiple of both widths).
_exp_block, _EXP_WIDTH = vecmath.block_math("exp")
_log_block, _LOG_WIDTH = vecmath.block_math("log")
_PAD = max(_EXP_WIDTH, _LOG_WIDTH)


def compiled_kind(problem: LinearProblem) -> int | None:
    """The code of ``problem``'s loss in the compiled solvers, or None if they lack it."""
    if problem.kind == "bernoulli" and problem.noise == 0.0:
        return _BERNOULLI
    if problem.kind == "squared":
        return _SQUARED
    return None


def fit_weights(problem: LinearProblem) -> LinearFit:
    """The weights of all of ``problem``'s columns under its loss (debiased, on the scale of
    ``refit``): Newton's method compiled for the Bradley–Terry loss, a linear solve for squared
    error, and damped Newton steps for the other losses that are sums over rows, whose Hessian
    in the row scores is diagonal and is taken by central differences of the row gradient. The
    non-separable PU risk (with a class prior) uses ``refit``."""
    k = problem.X.shape[1]
    support = tuple(range(k))
    if problem.kind == "pu" and problem.class_prior is not None:
        return refit(problem, support)
    scale = column_scale(problem)
    X = problem.X / scale
    if problem.fit_intercept:
        X = np.column_stack([X, np.ones(problem.n_rows)])
    penalty = np.full(X.shape[1], REFIT_RIDGE)
    if problem.fit_intercept:
        penalty[-1] = 0.0
    kind = compiled_kind(problem)
    if kind == _BERNOULLI:
        theta = _bradley_terry_newton(np.ascontiguousarray(X), problem.target, problem.offset,
                                      problem.weight, penalty, np.zeros(X.shape[1]))
    elif kind == _SQUARED:
        theta = squared_solve(X, problem, penalty)
    else:
        theta = _separable_newton(problem, X, penalty)
    coef = theta[:k] / scale
    intercept = float(theta[k]) if problem.fit_intercept else 0.0
    return LinearFit(support, coef, intercept)


def fit_support(problem: LinearProblem, support: tuple[int, ...]) -> LinearFit:
    """``fit_weights`` over the columns in ``support`` only: what ``refit`` returns, with the
    compiled solvers where the loss has one."""
    fit = fit_weights(problem.with_columns(np.asarray(support, dtype=int)))
    return LinearFit(tuple(support), fit.coef, fit.intercept)


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
    scales = [_column_scales(c, halves[0].fit_intercept) for c in columns]
    train, validation, weights = _score_sets(
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
            sub = with_x(problem, columns[:, np.asarray(chosen, dtype=np.int64)])
            fit = fit_weights(sub)
            losses[k] = sub.loss(fit.coef, fit.intercept)
            weights.append(np.asarray(fit.coef))
            intercepts[k] = fit.intercept
        return losses, weights, intercepts
    members, bounds, initial = _flatten(sets, starts)
    losses, weights, intercepts = _fit_sets(
        kind, problem.fit_intercept, REFIT_RIDGE, np.ascontiguousarray(columns),
        problem.target, problem.offset, problem.weight,
        _column_scales(columns, problem.fit_intercept), members, bounds, initial)
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


def _column_scales(columns: np.ndarray, fit_intercept: bool) -> np.ndarray:
    spread = columns.std(axis=0) if fit_intercept else np.sqrt((columns**2).mean(axis=0))
    return np.where(spread > 0, spread, 1.0)


def _scores_one_by_one(halves: Sequence[LinearProblem], columns: Sequence[np.ndarray],
                       sets: Sequence[Sequence[int]], share: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    train, validation, weights = np.zeros(len(sets)), np.zeros(len(sets)), []
    for k, chosen in enumerate(sets):
        index = np.asarray(chosen, dtype=np.int64)
        problems = [with_x(half, columns[h][:, index]) for h, half in enumerate(halves)]
        mean = np.zeros(len(index))
        for h, problem in enumerate(problems):
            fit = fit_weights(problem)
            train[k] += share[h] * problem.loss(fit.coef, fit.intercept)
            validation[k] += share[1 - h] * problems[1 - h].loss(fit.coef, fit.intercept)
            mean += share[h] * fit.coef
        weights.append(mean)
    return train, validation, weights


def with_x(base: LinearProblem, X: np.ndarray) -> LinearProblem:
    """``base`` with the columns ``X``."""
    return LinearProblem(base.kind, X, base.target, base.offset, base.weight, base.fit_intercept,
                         base.noise, base.class_prior)


@numba.njit(parallel=True, cache=True, error_model="numpy")
def _score_sets(kind: int, fit_intercept: bool, ridge: float, share: np.ndarray,
                columns_0: np.ndarray, columns_1: np.ndarray, target_0: np.ndarray,
                target_1: np.ndarray, offset_0: np.ndarray, offset_1: np.ndarray,
                weight_0: np.ndarray, weight_1: np.ndarray, scale_0: np.ndarray,
                scale_1: np.ndarray, members: np.ndarray, bounds: np.ndarray,
                initial: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - numba
    n_sets = bounds.shape[0] - 1
    train = np.zeros(n_sets)
    validation = np.zeros(n_sets)
    weights = np.zeros((n_sets, _widest(bounds)))
    for s in numba.prange(n_sets):
        index = members[bounds[s]:bounds[s + 1]]
        start = initial[bounds[s]:bounds[s + 1]]
        for half in range(2):
            if half == 0:
                fit_columns, fit_target, fit_offset, fit_weight = \
                    columns_0, target_0, offset_0, weight_0
                other_columns, other_target, other_offset, other_weight = \
                    columns_1, target_1, offset_1, weight_1
                scale = scale_0
            else:
                fit_columns, fit_target, fit_offset, fit_weight = \
                    columns_1, target_1, offset_1, weight_1
                other_columns, other_target, other_offset, other_weight = \
                    columns_0, target_0, offset_0, weight_0
                scale = scale_1
            coef, intercept = _fit(kind, fit_intercept, ridge, fit_columns, fit_target,
                                   fit_offset, fit_weight, scale, index, start)
            train[s] += share[half] * _loss(kind, fit_columns, fit_target, fit_offset,
                                            fit_weight, index, coef, intercept)
            validation[s] += share[1 - half] * _loss(kind, other_columns, other_target,
                                                     other_offset, other_weight, index, coef,
                                                     intercept)
            for j in range(index.shape[0]):
                weights[s, j] += share[half] * coef[j]
    return train, validation, weights


@numba.njit(parallel=True, cache=True, error_model="numpy")
def _fit_sets(kind: int, fit_intercept: bool, ridge: float, columns: np.ndarray,
              target: np.ndarray, offset: np.ndarray, weight: np.ndarray, scale: np.ndarray,
              members: np.ndarray, bounds: np.ndarray, initial: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - numba
    n_sets = bounds.shape[0] - 1
    losses = np.zeros(n_sets)
    weights = np.zeros((n_sets, _widest(bounds)))
    intercepts = np.zeros(n_sets)
    for s in numba.prange(n_sets):
        index = members[bounds[s]:bounds[s + 1]]
        coef, intercept = _fit(kind, fit_intercept, ridge, columns, target, offset, weight,
                               scale, index, initial[bounds[s]:bounds[s + 1]])
        losses[s] = _loss(kind, columns, target, offset, weight, index, coef, intercept)
        weights[s, :index.shape[0]] = coef
        intercepts[s] = intercept
    return losses, weights, intercepts


@numba.njit(cache=True)
def _widest(bounds: np.ndarray) -> int:  # pragma: no cover - numba
    """The most columns any set has (sets are ``members[bounds[s]:bounds[s + 1]]``)."""
    widest = 0
    for s in range(bounds.shape[0] - 1):
        widest = max(widest, bounds[s + 1] - bounds[s])
    return widest


@numba.njit(cache=True, error_model="numpy")
def _fit(kind: int, fit_intercept: bool, ridge: float, columns: np.ndarray, target: np.ndarray,
         offset: np.ndarray, weight: np.ndarray, scale: np.ndarray, index: np.ndarray,
         start: np.ndarray) -> tuple[np.ndarray, float]:  # pragma: no cover - numba
    n = columns.shape[0]
    k = index.shape[0]
    width = k + 1 if fit_intercept else k
    X = np.empty((n, width))
    for i in range(n):
        for j in range(k):
            X[i, j] = columns[i, index[j]] / scale[index[j]]
        if fit_intercept:
            X[i, k] = 1.0
    penalty = np.full(width, ridge)
    if fit_intercept:
        penalty[k] = 0.0
    if kind == 0:
        theta0 = np.zeros(width)
        for j in range(k):
            theta0[j] = start[j] * scale[index[j]]
        theta = _bradley_terry_newton(X, target, offset, weight, penalty, theta0)
    else:
        theta = _squared_solve(X, target, offset, weight, penalty)
    coef = np.empty(k)
    for j in range(k):
        coef[j] = theta[j] / scale[index[j]]
    return coef, theta[k] if fit_intercept else 0.0


@numba.njit(cache=True, error_model="numpy")
def _loss(kind: int, columns: np.ndarray, target: np.ndarray, offset: np.ndarray,
          weight: np.ndarray, index: np.ndarray, coef: np.ndarray,
          intercept: float) -> float:  # pragma: no cover - numba
    n = columns.shape[0]
    total = weight.sum()
    if not total > 0:
        return 0.0
    z = np.empty(n)
    for i in range(n):
        z[i] = offset[i] + intercept
        for j in range(index.shape[0]):
            z[i] += columns[i, index[j]] * coef[j]
    if kind == 0:
        padded = -(-n // _PAD) * _PAD
        return _bradley_terry_value(z, np.zeros(padded), np.zeros(padded), target, weight,
                                    total)
    value = 0.0
    for i in range(n):
        value += weight[i] * (z[i] - target[i]) ** 2
    return value / total


@numba.njit(cache=True, error_model="numpy")
def _squared_solve(X: np.ndarray, target: np.ndarray, offset: np.ndarray, weight: np.ndarray,
                   penalty: np.ndarray) -> np.ndarray:  # pragma: no cover - numba
    n, k = X.shape
    if k == 0:
        return np.zeros(0)
    total = weight.sum()
    gram = np.zeros((k, k))
    rhs = np.zeros(k)
    for i in range(n):
        w = weight[i] / total
        residual = target[i] - offset[i]
        for a in range(k):
            rhs[a] += w * X[i, a] * residual
            for b in range(a + 1):
                gram[a, b] += w * X[i, a] * X[i, b]
    for a in range(k):
        gram[a, a] += penalty[a] + 1e-15
        for b in range(a):
            gram[b, a] = gram[a, b]
    return np.linalg.lstsq(gram, rhs)[0]


@numba.njit(cache=True, error_model="numpy")
def _bradley_terry_newton(X: np.ndarray, target: np.ndarray, offset: np.ndarray,
                          weight: np.ndarray, penalty: np.ndarray, theta0: np.ndarray
                          ) -> np.ndarray:  # pragma: no cover - numba
    """Damped Newton on the Bradley–Terry cross-entropy plus ``penalty @ theta**2``, from
    ``theta0``. Each point costs one exp and one log per row, a vector at a time:
    ``exp(-|z|)`` gives the loss there and the sigmoid of the next gradient. It stops when the
    Newton decrement promises less than a relative 1e-13."""
    n, k = X.shape
    total = weight.sum()
    theta = theta0.copy()
    if k == 0:
        return theta
    z = offset.copy()
    for i in range(n):
        for a in range(k):
            z[i] += X[i, a] * theta[a]
    padded = -(-n // _PAD) * _PAD
    e, softplus = np.zeros(padded), np.zeros(padded)
    trial_z, trial_e, trial_softplus = np.empty(n), np.zeros(padded), np.zeros(padded)
    loss = _bradley_terry_value(z, e, softplus, target, weight, total) + \
        (penalty * theta * theta).sum()
    for _ in range(100):
        gradient = 2.0 * penalty * theta
        hessian = np.zeros((k, k))
        for a in range(k):
            hessian[a, a] = 2.0 * penalty[a] + 1e-12
        for i in range(n):
            s = (1.0 if z[i] >= 0 else e[i]) / (1.0 + e[i])
            g = weight[i] * (s - target[i]) / total
            h = weight[i] * s * (1.0 - s) / total
            for a in range(k):
                gradient[a] += g * X[i, a]
                for b in range(a + 1):
                    hessian[a, b] += h * X[i, a] * X[i, b]
        for a in range(k):
            for b in range(a):
                hessian[b, a] = hessian[a, b]
        direction = np.linalg.solve(hessian, gradient)
        decrease = (gradient * direction).sum()
        if not decrease > 2e-13 * max(abs(loss), 1e-300):
            break
        rate = 1.0
        while True:
            trial = theta - rate * direction
            for i in range(n):
                value = offset[i]
                for a in range(k):
                    value += X[i, a] * trial[a]
                trial_z[i] = value
            trial_loss = _bradley_terry_value(trial_z, trial_e, trial_softplus, target, weight,
                                              total) + (penalty * trial * trial).sum()
            if trial_loss <= loss - 1e-4 * rate * decrease or rate < 1e-8:
                break
            rate *= 0.5
        if rate < 1e-8:
            break
        theta = trial
        z, trial_z = trial_z, z
        e, trial_e = trial_e, e
        softplus, trial_softplus = trial_softplus, softplus
        loss = trial_loss
    return theta


@numba.njit(cache=True, error_model="numpy")
def _bradley_terry_value(z: np.ndarray, e: np.ndarray, softplus: np.ndarray,
                         target: np.ndarray, weight: np.ndarray, total: float
                         ) -> float:  # pragma: no cover - numba
    """The mean Bradley–Terry cross-entropy at row scores ``z``, as ``softplus(-|z|) +
    max(-z, 0) + (1 - p) z``; leaves ``exp(-|z|)`` in ``e`` and its softplus in ``softplus``
    (both padded to a whole number of vectors)."""
    n = z.shape[0]
    for i in range(n):
        e[i] = -abs(z[i])
    for start in range(0, n, _EXP_WIDTH):
        _exp_block(e, start)
    for i in range(n):
        softplus[i] = 1.0 + e[i]
    for start in range(0, n, _LOG_WIDTH):
        _log_block(softplus, start)
    value = 0.0
    for i in range(n):
        value += weight[i] * (softplus[i] + max(-z[i], 0.0) + (1.0 - target[i]) * z[i])
    return value / total


def _separable_newton(problem: LinearProblem, X: np.ndarray, penalty: np.ndarray) -> np.ndarray:
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
