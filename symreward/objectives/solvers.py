"""The compiled solvers of linear problems (``fitting`` calls them): damped Newton for the
Bradley–Terry loss, one linear solve for squared error, and the batch loops that fit and score
many sets of columns per call, the sets spread over the cores. Every set is computed by one
thread from its own inputs, so results do not depend on scheduling.

A loss is passed as its code (``BERNOULLI``, ``SQUARED``); the other losses have no compiled
solver.
"""

from __future__ import annotations

import numba
import numpy as np

from symreward.kernels import vecmath

BERNOULLI, SQUARED = 0, 1

# The Bradley–Terry loss is an exp and a log per row: glibc's vector functions where the kernels
# use them, several doubles a call (buffers are padded to ``_PAD``, a multiple of both widths).
_exp_block, _EXP_WIDTH = vecmath.block_math("exp")
_log_block, _LOG_WIDTH = vecmath.block_math("log")
_PAD = max(_EXP_WIDTH, _LOG_WIDTH)


@numba.njit(parallel=True, cache=True, error_model="numpy")
def score_sets(kind: int, fit_intercept: bool, ridge: float, share: np.ndarray,
               columns_0: np.ndarray, columns_1: np.ndarray, target_0: np.ndarray,
               target_1: np.ndarray, offset_0: np.ndarray, offset_1: np.ndarray,
               weight_0: np.ndarray, weight_1: np.ndarray, scale_0: np.ndarray,
               scale_1: np.ndarray, members: np.ndarray, bounds: np.ndarray,
               initial: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - numba
    """For each set ``members[bounds[s]:bounds[s + 1]]`` of columns: weights fitted on each
    half (from ``initial``) and scored on both; the training and validation losses and the
    weights, each weighed by the half's ``share``."""
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
def fit_sets(kind: int, fit_intercept: bool, ridge: float, columns: np.ndarray,
             target: np.ndarray, offset: np.ndarray, weight: np.ndarray, scale: np.ndarray,
             members: np.ndarray, bounds: np.ndarray, initial: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover - numba
    """For each set ``members[bounds[s]:bounds[s + 1]]`` of columns: the loss, weights and
    intercept of its fit (from ``initial``)."""
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
    if kind == BERNOULLI:
        theta0 = np.zeros(width)
        for j in range(k):
            theta0[j] = start[j] * scale[index[j]]
        theta = bradley_terry_newton(X, target, offset, weight, penalty, theta0)
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
    if kind == BERNOULLI:
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
def bradley_terry_newton(X: np.ndarray, target: np.ndarray, offset: np.ndarray,
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
