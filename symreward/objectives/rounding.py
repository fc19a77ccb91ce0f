"""Rounding for people to read: a number at a few significant digits (``round_significant``:
knots, constants inside terms, weights shown on the front), and a fitted reward's weights at the
fewest digits that keep the fit and the ratios between weights as they were
(``rounded_weights``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from symreward.objectives.fitting import LinearFit, fit
from symreward.objectives.linear import LinearProblem

# How far rounding may move the ratio of a weight to the largest one (relative): the ratios are
# what preferences, rankings and demonstrations identify, so they are what must read true.
RATIO_TOLERANCE = 0.01


def round_significant(value: float, digits: int) -> float:
    """``value`` at ``digits`` significant digits (0 and non-finite values unchanged)."""
    if value == 0 or not np.isfinite(value):
        return value
    return float(f"{value:.{digits}g}")


def rounded_weights(problem: LinearProblem, fitted: LinearFit, tolerance: float
                    ) -> tuple[list[float], float]:
    """``fitted``'s coefficients, each at the fewest significant digits (largest first) that keep
    the training loss on ``problem`` within ``tolerance`` (relative) of the unrounded fit and
    every ratio between weights within ``RATIO_TOLERANCE`` of the fitted one: the ratios are
    all a preference or a ranking identifies. After each rounding the coefficients not yet rounded
    are refit around it, so they move with it: ``0.97*x - 4.85*low`` can become
    ``x - 5*low``. Then the intercept: 0 where that keeps the loss within the tolerance
    (a fitted ``-4.9e-09`` beside weights of 1 is no term), else its fewest digits that
    do. Where ``problem`` has constraints the fit meets, a rounding is kept only if the
    weights still meet them."""
    weights = np.asarray(fitted.coef, dtype=float)
    coefficients = [float(c) for c in weights]
    intercept = fitted.intercept
    if not coefficients:
        return coefficients, intercept
    sub = problem.with_columns(np.asarray(fitted.support, dtype=int))
    exact = sub.loss(weights, intercept)
    limit = exact + tolerance * abs(exact) + 1e-12
    held = _meets(sub, weights, intercept)
    fixed: dict[int, float] = {}
    for k in (int(j) for j in np.argsort(-np.abs(coefficients))):
        fixed[k] = coefficients[k]
        for digits in range(1, 7):
            trial = _refit_others(sub, {**fixed, k: round_significant(coefficients[k], digits)},
                                  coefficients, intercept)
            if (_same_ratios(trial, weights) and sub.loss(trial, intercept) <= limit
                    and (not held or _meets(sub, trial, intercept))):
                coefficients = [float(c) for c in trial]
                fixed[k] = coefficients[k]
                break
    if intercept != 0:
        shorter = [0.0, *(round_significant(intercept, d) for d in range(1, 7))]
        intercept = next((b for b in shorter if sub.loss(coefficients, b) <= limit
                          and (not held or _meets(sub, coefficients, b))), intercept)
    return coefficients, intercept


def _meets(problem: LinearProblem, coef: Sequence[float] | np.ndarray, intercept: float
           ) -> bool:
    """Whether the weights meet ``problem``'s constraints (there are none to meet, or they
    hold)."""
    return problem.constraints is None or problem.constraints.satisfied(coef, intercept)


def _same_ratios(trial: np.ndarray, fitted: np.ndarray) -> bool:
    """Whether every weight of ``trial``, relative to its largest, is within
    ``RATIO_TOLERANCE`` of the same ratio in ``fitted``."""
    largest = int(np.argmax(np.abs(fitted)))
    if trial[largest] == 0 or fitted[largest] == 0:
        return bool(np.array_equal(trial, fitted))
    return bool(np.all(np.abs(trial / trial[largest] - fitted / fitted[largest])
                       <= RATIO_TOLERANCE * np.abs(fitted / fitted[largest])))


def _refit_others(problem: LinearProblem, fixed: dict[int, float], coefficients: list[float],
                  intercept: float) -> np.ndarray:
    """``coefficients`` with the ``fixed`` ones set and the others refit around them (the
    intercept kept)."""
    result = np.asarray(coefficients, dtype=float)
    chosen = sorted(fixed)
    result[chosen] = [fixed[j] for j in chosen]
    free = [j for j in range(len(coefficients)) if j not in fixed]
    if not free:
        return result
    rest = problem.with_fixed(chosen, result[chosen], intercept)
    support = tuple(range(len(free)))
    result[free] = fit(rest, solver="lbfgs", start=LinearFit(support, result[free])).coef
    return result
