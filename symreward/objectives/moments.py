"""The squared loss's sufficient statistics, and a problem of a few rows with the same loss.

The squared error of a reward linear in K columns, with an intercept and a fixed offset,
depends on the rows only through the count, the mean and the covariance of ``[columns,
offset, target]``: the loss of any weights, its gradient and curvature, the columns' spreads,
R² and every refit are functions of them. ``Moments`` holds them per group of rows (the
learner's groups are its validation folds), computed from a block of rows at a time
(``Moments.of_rows``) and merged exactly as one pass would have them (up to rounding: the
centred update of Chan, Golub and LeVeque, which stays accurate where the means are large
against the spreads). A dataset too large for memory is reduced chunk by chunk this way.

``reduced_problem`` turns the moments of a set of rows into a ``LinearProblem`` whose at most
K + 3 rows have the same weighted mean and covariance, so the same loss for every weight
vector: points of a simplex around the mean, scaled to the covariance. Every fit, search step
and rounding then runs on it unchanged, at a cost set by K and not by the number of rows; the
problem reports the rows it stands for (``LinearProblem.n_rows``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from symreward.objectives.linear import LinearProblem


@dataclass(frozen=True)
class Moments:
    """Per group ``g``: ``count[g]`` rows, their ``mean[g]`` (D,) and their centred scatter
    ``scatter[g]`` (D, D), the sum over the rows of ``(v - mean) (v - mean)^T``."""

    count: np.ndarray
    mean: np.ndarray
    scatter: np.ndarray

    @classmethod
    def empty(cls, n_groups: int, width: int) -> Moments:
        return cls(np.zeros(n_groups, dtype=np.int64), np.zeros((n_groups, width)),
                   np.zeros((n_groups, width, width)))

    @classmethod
    def of_rows(cls, values: np.ndarray, groups: np.ndarray, n_groups: int) -> Moments:
        """The moments of the rows of ``values`` (n, D), row ``i`` in group ``groups[i]``."""
        values = np.asarray(values, dtype=np.float64)
        groups = np.asarray(groups, dtype=np.int64)
        moments = cls.empty(n_groups, values.shape[1])
        for g in np.unique(groups):
            rows = values[groups == g]
            mean = rows.mean(axis=0)
            centred = rows - mean
            moments.count[g] = len(rows)
            moments.mean[g] = mean
            moments.scatter[g] = centred.T @ centred
        return moments

    @property
    def n_groups(self) -> int:
        return len(self.count)

    def merge(self, other: Moments) -> Moments:
        """The moments of both sets of rows, group by group; a group empty on one side is
        the other's as it is."""
        n_a, n_b = self.count.astype(np.float64), other.count.astype(np.float64)
        total = n_a + n_b
        share = np.divide(n_b, total, out=np.zeros_like(total), where=total > 0)
        delta = other.mean - self.mean
        mean = self.mean + delta * share[:, None]
        cross = n_a * share
        scatter = (self.scatter + other.scatter
                   + delta[:, :, None] * delta[:, None, :] * cross[:, None, None])
        only_a, only_b = other.count == 0, self.count == 0
        mean[only_a], scatter[only_a] = self.mean[only_a], self.scatter[only_a]
        mean[only_b], scatter[only_b] = other.mean[only_b], other.scatter[only_b]
        return Moments(self.count + other.count, mean, scatter)

    def pooled(self, groups: Sequence[int]) -> Moments:
        """One group: the rows of ``groups``, merged in ascending order."""
        pooled = Moments.empty(1, self.mean.shape[1])
        for g in sorted(int(g) for g in groups):
            pooled = pooled.merge(Moments(self.count[g:g + 1], self.mean[g:g + 1],
                                          self.scatter[g:g + 1]))
        return pooled


def reduced_problem(moments: Moments) -> LinearProblem:
    """The squared-error problem, with an intercept, of the rows whose moments (one group) are
    of ``[columns (K), offset, target]``: at most K + 3 rows of equal weight with the same
    weighted mean and covariance (so the same loss at every weight vector), standing for
    ``moments.count[0]`` rows.

    The covariance is factored on the correlation scale (columns of very different spreads
    keep their relative precision); coordinates constant on these rows (the offset without
    locked terms) are their value exactly."""
    count = int(moments.count[0])
    width = moments.mean.shape[1]
    k = width - 2
    if count == 0:
        return LinearProblem("squared", np.zeros((0, k)), np.zeros(0), np.zeros(0), np.zeros(0),
                             fit_intercept=True, represented_rows=0)
    mean, covariance = moments.mean[0], moments.scatter[0] / count
    spread = np.sqrt(np.maximum(np.diag(covariance), 0.0))
    varying = np.flatnonzero(spread > 0)
    factor = np.zeros((len(varying), 0))
    if len(varying):
        scale = spread[varying]
        correlation = covariance[np.ix_(varying, varying)] / np.outer(scale, scale)
        values, vectors = np.linalg.eigh(correlation)
        kept = values > 0
        factor = vectors[:, kept] * np.sqrt(values[kept]) * scale[:, None]
    rank = factor.shape[1]
    rows = np.tile(mean, (rank + 1, 1))
    rows[:, varying] += math.sqrt(rank + 1) * _simplex(rank) @ factor.T
    return LinearProblem("squared", rows[:, :k], rows[:, k + 1], rows[:, k],
                         np.full(rank + 1, count / (rank + 1)), fit_intercept=True,
                         represented_rows=count)


def _simplex(rank: int) -> np.ndarray:
    """A (rank + 1, rank) matrix of orthonormal columns orthogonal to the ones vector (the
    Helmert contrasts): rank + 1 points of equal weight with mean 0 and covariance
    ``I / (rank + 1)``."""
    basis = np.zeros((rank + 1, rank))
    for j in range(1, rank + 1):
        norm = math.sqrt(j * (j + 1))
        basis[:j, j - 1] = 1.0 / norm
        basis[j, j - 1] = -j / norm
    return basis
