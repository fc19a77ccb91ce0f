"""The learner's linear problems: on all the data and on each cross-validation fold.

Every objective's problems can be cut from candidate columns held in memory
(``ColumnProblems``: each fold's rows taken from the columns). Squared error (labelled rewards)
needs less: each problem is fixed by the moments of its rows (``objectives.moments``), so
``MomentProblems`` reduces the rows once per group of units (a validation fold, or no fold),
pools the groups into the whole data and each fold's training and validation sets, and hands
out reduced problems of a few rows each. The moments come from columns in memory
(``moments_of_columns``) or from a dataset read chunk by chunk (``symreward.chunked``): the
same reduction either way, so the two learn the same reward.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from symreward.objectives import LinearProblem, Objective
from symreward.objectives.moments import Moments, reduced_problem

Splits = list[tuple[LinearProblem, LinearProblem]]
# Rows reduced at a time where the columns are in memory: the moments' temporaries stay small.
MOMENT_BLOCK = 65_536


@dataclass(frozen=True)
class ColumnProblems:
    """Problems cut from the candidate ``columns`` (N, K) in memory, with the locked terms'
    ``offset``."""

    objective: Objective
    columns: np.ndarray
    offset: np.ndarray | None

    def problems(self, folds: Sequence[np.ndarray]) -> tuple[LinearProblem, Splits]:
        """The problem on every unit, and for each fold (units) the problem on the other units
        (to train on) and on the fold (to validate on)."""
        objective = self.objective
        units = np.arange(objective.n_units)
        full = objective.problem(self.columns, self.offset)
        return full, [(objective.problem(self.columns, self.offset, np.setdiff1d(units, fold)),
                       objective.problem(self.columns, self.offset, fold)) for fold in folds]


@dataclass(frozen=True)
class MomentProblems:
    """Squared-error problems from moments: ``moments_of(group_of_unit, n_groups)`` reduces the
    rows of ``[columns, offset, target]`` by group, each unit's rows in its group."""

    objective: Objective
    moments_of: Callable[[np.ndarray, int], Moments]

    def problems(self, folds: Sequence[np.ndarray]) -> tuple[LinearProblem, Splits]:
        """As ``ColumnProblems.problems``, from one reduction of the rows: a group for each
        fold and one for the units in none. Folds of transitions never share a unit."""
        n_folds = len(folds)
        group_of_unit = np.full(self.objective.n_units, n_folds, dtype=np.int64)
        for g, fold in enumerate(folds):
            if np.any(group_of_unit[fold] != n_folds):
                raise ValueError("folds that share units have no moments of their own")
            group_of_unit[fold] = g
        moments = self.moments_of(group_of_unit, n_folds + 1)
        every = range(n_folds + 1)
        full = reduced_problem(moments.pooled(every))
        return full, [(reduced_problem(moments.pooled([h for h in every if h != g])),
                       reduced_problem(moments.pooled([g]))) for g in range(n_folds)]


def column_problems(objective: Objective, columns: np.ndarray, offset: np.ndarray | None
                    ) -> ColumnProblems | MomentProblems:
    """The problems of ``objective`` over ``columns`` in memory: from their moments for squared
    error, else cut from them."""
    if objective.kind != "squared":
        return ColumnProblems(objective, columns, offset)

    def moments_of(group_of_unit: np.ndarray, n_groups: int) -> Moments:
        groups = group_of_unit[objective.unit_of_row]  # type: ignore[attr-defined]
        return moments_of_columns(columns, offset, objective.target, groups, n_groups)
    return MomentProblems(objective, moments_of)


def moments_of_columns(columns: np.ndarray, offset: np.ndarray | None, target: np.ndarray,
                       groups: np.ndarray, n_groups: int) -> Moments:
    """The moments of the rows of ``[columns, offset, target]`` (no offset: 0) by group,
    ``MOMENT_BLOCK`` rows at a time."""
    moments = Moments.empty(n_groups, columns.shape[1] + 2)
    for start in range(0, len(columns), MOMENT_BLOCK):
        rows = slice(start, min(start + MOMENT_BLOCK, len(columns)))
        values = np.column_stack([
            columns[rows], np.zeros(rows.stop - start) if offset is None else offset[rows],
            target[rows]])
        moments = moments.merge(Moments.of_rows(values, groups[rows], n_groups))
    return moments
