"""Greedy forward selection under the exact loss: supports for the sparse engine beside its L1
path, one term added per step.

Each step's candidates are ranked by the score test and the best few refit with
``objectives.fitting.fit``, as cross-validation fits them.
"""

from __future__ import annotations

import numpy as np

from symreward.objectives import LinearProblem
from symreward.objectives.fitting import LinearFit, fit, fit_loss
from symreward.search.sparse import subsample


def stepwise_supports(problem: LinearProblem, *, max_terms: int, screen: int = 8,
                      max_rows: int = 50_000, seed: int = 0) -> list[tuple[int, ...]]:
    """Supports of greedy forward selection under the exact loss, one term added per step.

    Each step shortlists the ``screen`` candidates whose addition the score test ranks
    highest (``score_gains``), refits each, and keeps the one whose refit loss is lowest.
    Unlike the L1 path, every step is judged unshrunk, so a correlated but wrong column that
    the penalty happens to favour early does not lock out the right ones.
    """
    if problem.X.shape[1] == 0:
        return []
    problem = subsample(problem, max_rows, seed)
    support: tuple[int, ...] = ()
    current = fit(problem, support)
    supports = []
    for _ in range(min(max_terms, problem.X.shape[1])):
        gains = score_gains(problem, current)
        order = np.argsort(-gains, kind="stable")[:screen]
        shortlist = [int(k) for k in order if gains[k] > 0]
        if not shortlist:
            break
        trials = [fit(problem, (*support, k)) for k in shortlist]
        losses = [fit_loss(problem, trial) for trial in trials]
        best = int(np.argmin(losses))
        current = trials[best]
        support = current.support
        supports.append(tuple(sorted(support)))
    return supports


def score_gains(problem: LinearProblem, fit: LinearFit) -> np.ndarray:
    """For each column outside ``fit``'s support, the loss one Newton step would save by
    adding it with the support's weights refit (the score test): its gradient squared over
    twice the curvature left once the support's columns (and the intercept) are projected out
    in the loss's own metric. A column the support already spans, or that the rows cannot
    move, gains 0; columns in the support get -inf.

    Ranking by the raw gradient instead favours a column correlated with one already in: at a
    fit whose residual the support explains, a near-copy of a chosen term still shows a large
    gradient, but adding it saves almost nothing, while a column with fresh signal (the second
    of two action costs whose segment sums move together) ranks below it."""
    X = problem.X
    chosen = list(fit.support)
    z = problem.predict(np.zeros(X.shape[1]), fit.intercept)
    if chosen:
        z = z + X[:, chosen] @ fit.coef
    _, grad_z = problem.loss_and_grad_z(z)
    curvature = problem.curvature_z(z)
    gradient = X.T @ grad_z
    weighted = X * curvature[:, None]
    own = np.einsum("ij,ij->j", X, weighted)
    base = X[:, chosen]
    if problem.fit_intercept:
        base = np.column_stack([base, np.ones(len(X))])
    left = own.copy()
    if base.shape[1]:
        cross = base.T @ weighted
        inner = base.T @ (base * curvature[:, None])
        inner += np.diag(np.full(len(inner), 1e-12 * max(np.trace(inner), 1e-300)))
        left -= np.einsum("ij,ij->j", cross, np.linalg.solve(inner, cross))
    moves = left > 1e-9 * np.maximum(own, 1e-300)
    gains = np.where(moves, gradient**2 / (2 * np.where(moves, left, 1.0)), 0.0)
    gains[chosen] = -np.inf
    return gains
