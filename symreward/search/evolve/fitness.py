"""Fitness: an individual (a set of terms) scored by two-fold validation of its fitted weights.

The objective's units (segments or episodes, ``Objective.folds``) are split in halves; weights
fitted on the rows of each are scored on the rows of the other (a preference pair whose segments
fall in different halves is in neither). A single held-out share of 1000 pairs is too noisy to
select on: formulas that fit its noise beat the true reward there. Every new term set of a call
is fitted and scored in one call of the compiled solvers (``objectives.fitting``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from symreward.errors import DataError
from symreward.objectives import LinearProblem, Objective
from symreward.objectives.fitting import fitted_losses, two_fold_scores
from symreward.search.evolve.columns import ColumnCache
from symreward.search.trees import Node, canonical, constants, set_complexity, set_key

# What ``Fitness.whole_fits`` finds for a term set: the loss, design, weights and intercept.
WholeFit = tuple[float, np.ndarray, np.ndarray, float]


@dataclass
class Individual:
    """A term set with its losses (training: in-sample; ``loss``: two-fold validation), its
    complexity and mean fitted weights, and its NSGA-II rank and crowding distance."""

    terms: tuple[Node, ...]
    train_loss: float
    loss: float
    complexity: int
    weights: tuple[float, ...] = ()
    rank: int = 0
    crowding: float = 0.0

    @property
    def key(self) -> tuple:
        return set_key(self.terms)


def constants_in(individual: Individual) -> bool:
    """Whether any of ``individual``'s terms holds a constant (something to tune)."""
    return any(constants(t) for t in individual.terms)


class Fitness:
    """Scores of term sets on the halves of the search's units, each set scored once
    (``candidates`` counts them), and fits on both halves together for tuning constants
    (``constant_fits`` counts those). ``floor`` is the loss no model can go below (the soft
    labels' entropy), ``resolution`` the gain below which a model is not better."""

    def __init__(self, objective: Objective, matrix: np.ndarray, offset: np.ndarray | None,
                 units: np.ndarray | None, seed: int):
        self.halves = objective.folds(2, seed, units)
        empty = np.zeros((matrix.shape[0], 0))
        self.bases = [objective.problem(empty, offset, half) for half in self.halves]
        if len(self.bases) < 2 or not all(objective.scorable(half) for half in self.halves):
            raise DataError(
                f"{objective.dataset.source}: too little data for a structure search: the "
                f"{objective.unit_name} it searches on "
                f"({len(units) if units is not None else objective.n_units}) cannot be "
                "halved so that each half holds "
                f"{objective.row_name} to validate the other half's fit on ({objective.row_name} "
                f"per half: {', '.join(str(b.n_rows) for b in self.bases)}); add data or use "
                "--engine sparse")
        self.columns = ColumnCache(matrix, [objective.row_map(half).tocsc()
                                            for half in self.halves],
                                   self.bases[0].fit_intercept, seed)
        self.whole = LinearProblem.stacked(self.bases)
        self.floor = sum(base.n_rows / self.whole.n_rows * base.loss_floor()
                         for base in self.bases)
        self.candidates = 0
        self.constant_fits = 0
        self.fits: dict[tuple, Individual | None] = {}
        # The last weight fitted to each term: where a fit of a set that holds it starts.
        self.term_weight: dict[Node, float] = {}
        # A millionth of the loss the empty model leaves above the floor: gains below it are
        # rounding, not a better model.
        self.resolution = 1e-6 * max(self._fitted([()])[0].loss - self.floor, 0.0)

    def individual(self, terms: Sequence[Node]) -> Individual | None:
        return self.individuals([terms])[0]

    def individuals(self, term_lists: Sequence[Sequence[Node]]) -> list[Individual | None]:
        """Each list of terms fitted and scored (``None`` where a term is unusable), the new
        ones in one call of the compiled scorer."""
        sets = [tuple(dict.fromkeys(canonical(t) for t in terms)) for terms in term_lists]
        keys = [set_key(terms) for terms in sets]
        pending = {key: terms for key, terms in zip(keys, sets, strict=True)
                   if key not in self.fits}
        self.columns.add([t for terms in pending.values() for t in terms])
        usable = []
        for key, terms in pending.items():
            if self.columns.usable(terms):
                usable.append(key)
            else:
                self.fits[key] = None
        for key, scored in zip(usable, self._fitted([pending[k] for k in usable]), strict=True):
            self.fits[key] = scored
        return [self.fits[key] for key in keys]

    def _fitted(self, term_sets: Sequence[tuple[Node, ...]]) -> list[Individual]:
        """Weights fitted on each half and scored on the other: the validation loss is the
        two-fold cross-validated loss, the training loss the mean in-sample loss."""
        if not term_sets:
            return []
        unique = list(dict.fromkeys(t for terms in term_sets for t in terms))
        index = {t: k for k, t in enumerate(unique)}
        columns = [np.column_stack([self.columns[t][h] for t in unique]) if unique
                   else np.zeros((base.n_rows, 0)) for h, base in enumerate(self.bases)]
        train, validation, weights = two_fold_scores(
            self.bases, columns, [[index[t] for t in terms] for terms in term_sets],
            [[self.term_weight.get(t, 0.0) for t in terms] for terms in term_sets])
        self.candidates += len(term_sets)
        for terms, fitted in zip(term_sets, weights, strict=True):
            self.term_weight.update(zip(terms, fitted.tolist(), strict=True))
        return [Individual(terms, float(train[k]),
                           float(validation[k]) if math.isfinite(validation[k]) else math.inf,
                           set_complexity(terms), tuple(float(w) for w in weights[k]))
                for k, terms in enumerate(term_sets)]

    def whole_fits(self, term_lists: Sequence[Sequence[Node]]) -> list[WholeFit | None]:
        """For each list of terms: the loss, design, weights and intercept of its fit on both
        halves together (``None`` where a term is unusable)."""
        sets = [[canonical(t) for t in terms] for terms in term_lists]
        self.columns.add([t for terms in sets for t in terms])
        usable = [k for k, terms in enumerate(sets) if self.columns.usable(terms)]
        unique = list(dict.fromkeys(t for k in usable for t in sets[k]))
        index = {t: j for j, t in enumerate(unique)}
        columns = np.column_stack([np.concatenate(self.columns[t]) for t in unique]) if unique \
            else np.zeros((self.whole.n_rows, 0))
        losses, weights, intercepts = fitted_losses(
            self.whole, columns, [[index[t] for t in sets[k]] for k in usable],
            [[self.term_weight.get(t, 0.0) for t in sets[k]] for k in usable])
        self.constant_fits += len(usable)
        found: list[WholeFit | None] = [None] * len(sets)
        for j, k in enumerate(usable):
            if math.isfinite(losses[j]):
                found[k] = (float(losses[j]), columns[:, [index[t] for t in sets[k]]],
                            weights[j], float(intercepts[j]))
        return found
