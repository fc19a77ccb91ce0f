"""Bootstrap confidence intervals for distances between canonical rewards.

A distance is a statistic of the canonical rewards of two reward functions over the evaluated
transitions (the Pearson distance for EPIC and DARD, a normalised norm for STARC). Its sampling
error from the choice of transitions is estimated by the percentile bootstrap: the evaluated
transitions are drawn again with replacement, ``resamples`` times, and the statistic recomputed
on the canonical values already computed. The reward is never evaluated again, so 200 resamples
cost a few milliseconds per measure at 4096 transitions.

What the interval covers: the variation from *which transitions* are evaluated. The other
sampling in a distance (EPIC's coverage samples, DARD's pool of neighbours) is held fixed; its
effect on EPIC shrinks as ``n_mean`` grows (see ``symreward.audit.epic``).

Resample ``b`` of every call with the same ``seed`` and size draws the same transitions, so the
intervals of several measures and comparisons are paired, and each is deterministic.

A resample in which either canonical reward is constant (possible for a reward that is not
constant on only a few transitions) leaves the statistic undefined; it is left out, and
``Estimate.resamples`` counts the resamples used.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from symreward.audit.epic import pearson_distance
from symreward.errors import SymrewardError

__all__ = ["NORMS", "Estimate", "Statistic", "bootstrap_estimate", "check_resampling", "lp_norm",
           "pearson_statistic", "starc_statistic"]

#: The norms of the STARC measures: the name in a measure's name and the order p.
NORMS = {"L1": 1.0, "L2": 2.0, "Linf": math.inf}

#: ``statistic(x, y)`` of two canonical rewards on the same transitions; None where undefined.
Statistic = Callable[[np.ndarray, np.ndarray], "float | None"]


@dataclass(frozen=True)
class Estimate:
    """A statistic on the evaluated transitions and its percentile bootstrap interval."""

    value: float
    low: float | None     # None when no resample had the statistic defined
    high: float | None
    level: float
    resamples: int
    transitions: int


def lp_norm(x: np.ndarray, p: float) -> float:
    """``(mean |x|^p)^(1/p)``: the L_p norm under the empirical distribution of the evaluated
    transitions (``max |x|`` for p = inf). The mean rather than the sum keeps the norm of a
    reward independent of how many transitions are evaluated; STARC's distance is the same
    either way, since both rewards are divided by their norms. Computed on ``x / max|x|`` so
    that large rewards do not overflow."""
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if peak == 0.0 or math.isinf(p):
        return peak
    scaled = np.abs(x) / peak
    return peak * float(np.mean(scaled ** p)) ** (1.0 / p)


def pearson_statistic(floor_x: float, floor_y: float) -> Statistic:
    """The Pearson distance ``sqrt((1 − ρ) / 2)``; undefined where the standard deviation of
    either reward is at most its floor (its canonical reward is constant there)."""

    def statistic(x: np.ndarray, y: np.ndarray) -> float | None:
        if not (np.std(x) > floor_x and np.std(y) > floor_y):
            return None
        return pearson_distance(x, y)

    return statistic


def starc_statistic(p: float, floor_x: float, floor_y: float) -> Statistic:
    """STARC's distance with the L_p norm as both the normalisation and the metric:
    ``‖x/‖x‖ − y/‖y‖‖``, in [0, 2] (0: the same canonical reward up to a positive scale; 2: one is
    a negative multiple of the other). Undefined where either norm is at most its floor."""

    def statistic(x: np.ndarray, y: np.ndarray) -> float | None:
        norm_x, norm_y = lp_norm(x, p), lp_norm(y, p)
        if not (norm_x > floor_x and norm_y > floor_y):
            return None
        return min(lp_norm(x / norm_x - y / norm_y, p), 2.0)

    return statistic


def check_resampling(resamples: int, level: float) -> None:
    """Raise ``SymrewardError`` unless ``resamples`` is a positive integer and ``level`` lies in
    (0, 1)."""
    if isinstance(resamples, bool) or not isinstance(resamples, int | np.integer) \
            or resamples < 1:
        raise SymrewardError(f"bootstrap resamples must be a positive integer; got {resamples!r}")
    ok = isinstance(level, float | int) and not isinstance(level, bool)
    if not (ok and 0.0 < level < 1.0):
        raise SymrewardError(f"the confidence level must lie in (0, 1); got {level!r}")


def bootstrap_estimate(statistic: Statistic, x: np.ndarray, y: np.ndarray, *, resamples: int,
              level: float, seed: int | Sequence[int]) -> Estimate:
    """The statistic on all transitions and its percentile interval at ``level`` over
    ``resamples`` draws of the transitions with replacement (``numpy.random.default_rng(seed)``).

    Raises ``SymrewardError`` for bad ``resamples`` or ``level`` (``check_resampling``), or when
    the statistic is undefined on all transitions (the callers check for constant rewards
    first, so this names a misuse).
    """
    check_resampling(resamples, level)
    n = x.shape[0]
    value = statistic(x, y)
    if value is None:
        raise SymrewardError("the distance is undefined on the evaluated transitions")
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(int(resamples)):
        rows = rng.integers(n, size=n)
        drawn = statistic(x[rows], y[rows])
        if drawn is not None:
            draws.append(drawn)
    low = high = None
    if draws:
        tail = (1.0 - level) / 2.0
        low, high = (float(q) for q in np.quantile(np.asarray(draws), [tail, 1.0 - tail]))
    return Estimate(value=float(value), low=low, high=high, level=float(level),
                    resamples=len(draws), transitions=int(n))
