"""Cross-validation folds for the learner: which folds of an objective's units can score a
model, what they ran on, what to say when the data allow none, and the share of the units a
structure search never sees. The units themselves, and why they are segments or episodes, are
the objectives' (``symreward.objectives``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from symreward.errors import DataError
from symreward.objectives import Objective

# The share of the objective's units a structure search never sees (see ``selection_split``).
SELECTION_SHARE = 0.25


def validation_folds(objective: Objective, n_folds: int, seed: int,
                     units: np.ndarray | None = None, *, allow_none: bool = False
                     ) -> list[np.ndarray]:
    """Folds of ``units`` (all by default) whose loss, and the fit on every other unit, are
    defined (``scorable_fold``); folds without are left out. Fewer than two such folds: no
    cross-validation is possible, a ``DataError`` that says what is short and what to do, or,
    with ``allow_none``, no folds (models are then compared by their training loss)."""
    folds = objective.folds(n_folds, seed, units)
    usable = [fold for fold in folds if scorable_fold(objective, fold)]
    if len(usable) >= 2:
        return usable
    if allow_none:
        return []
    raise DataError(_too_few_to_cross_validate(objective, len(folds), len(usable), n_folds))


def fold_report(objective: Objective, folds: list[np.ndarray]) -> dict[str, Any]:
    """What cross-validation ran on: the units, each fold's training and validation rows,
    and the rows no fold validates (pairs that straddle two folds)."""
    sizes = objective.fold_sizes(folds)
    return {"scored_by": "cross-validation" if folds else "training loss",
            "units": objective.unit_name, "rows": objective.row_name,
            "folds": [[train, held] for train, held in sizes],
            "never_validated": objective.n_rows() - sum(held for _, held in sizes)}


def folds_floor(objective: Objective, offset: np.ndarray | None, folds: list[np.ndarray]
                 ) -> float | None:
    """The lowest cross-validated loss a reward can reach on these folds: each fold's
    reachable floor, weighted by its rows as the learner weights the fold losses (the
    held-out units' labels can be noisier or cleaner than the rest's); None where a fold has
    none."""
    empty = np.zeros((objective.dataset.n, 0))
    problems = ([objective.problem(empty, offset, fold) for fold in folds] if folds
                else [objective.problem(empty, offset)])
    floors = [problem.reachable_floor() for problem in problems]
    if any(floor is None for floor in floors) or not sum(p.n_rows for p in problems):
        return None
    return float(np.average(floors, weights=[p.n_rows for p in problems]))


def selection_split(objective: Objective, n_folds: int, seed: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """The objective's units split into those held out of a structure search, to choose among
    its proposals by cross-validation, and those it searches on: one part of a balanced
    partition into ``1/SELECTION_SHARE`` parts (``Objective.folds``, which keeps segments
    shared by pairs together). A search scores thousands of formulas; the ones that win on the
    data it saw include formulas that fit that data's label noise, and only data it never saw
    tells them from the truth. Where the held-out part cannot be cross-validated in
    ``n_folds`` folds that each have rows to train and validate on, or the rest cannot be
    halved into two parts with rows, every unit does both."""
    units = np.arange(objective.n_units)
    parts = objective.folds(round(1 / SELECTION_SHARE), seed)
    if len(parts) >= 2:
        held = parts[0]
        searched = np.setdiff1d(units, held)
        folds = objective.folds(n_folds, seed, held)
        validated = sum(scorable_fold(objective, fold) for fold in folds)
        halves = objective.folds(2, seed, searched)
        if validated >= n_folds and len(halves) == 2 and all(
                objective.scorable(half) for half in halves):
            return held, searched
    return units, units


def scorable_fold(objective: Objective, fold: np.ndarray) -> bool:
    """Whether a fold's loss and the fit on every other unit are both defined."""
    rest = np.setdiff1d(np.arange(objective.n_units), fold)
    return objective.scorable(fold) and objective.scorable(rest)


def _too_few_to_cross_validate(objective: Objective, n_folds: int, usable: int,
                               asked: int) -> str:
    """One line: what is short for cross-validation, and what to do."""
    rule = {"pairs": "a fold validates the pairs whose segments it holds and trains on the "
                     "pairs that touch none of them",
            "ranked pairs": "a fold validates the pairs among the ranked segments it holds",
            "transitions": f"a fold holds whole {objective.unit_name}"}[objective.row_name]
    if objective.name == "demonstrations":
        rule += ", with expert and unlabeled transitions on both of its sides"
    fewer = "use fewer folds (--folds 2), " if asked > 2 else ""
    return (f"{objective.dataset.source}: too little data to cross-validate: "
            f"{_count(objective.n_rows(), objective.row_name)} over "
            f"{_count(objective.n_units, objective.unit_name)} give {usable} of "
            f"{_count(n_folds, 'folds')} with {objective.row_name} to both train and validate "
            f"on ({rule}), and at least 2 are needed; add data, {fewer}or choose the simplest "
            "model by its training loss (--selection simplest)")


_SINGULAR = {"pairs": "pair", "ranked pairs": "ranked pair", "segments": "segment",
             "episodes": "episode", "blocks of episodes": "block of episodes",
             "transitions": "transition", "folds": "fold"}


def _count(number: int, plural: str) -> str:
    return f"{number} {_SINGULAR.get(plural, plural) if number == 1 else plural}"
