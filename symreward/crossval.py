"""Cross-validation folds for the learner: which folds of an objective's units can score a
model, how many partitions of the units it takes to validate most rows, what they ran on, what
to say when the data allow none, and the share of the units a structure search never sees. The
units themselves, and why they are segments or episodes, are the objectives'
(``symreward.objectives``)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from symreward.errors import DataError
from symreward.objectives import LinearProblem, Objective

# The share of the objective's units a structure search never sees (see ``selection_split``).
SELECTION_SHARE = 0.25
# Where one partition validates less than this share of the rows (pairs that straddle two
# folds are validated by none), further partitions are cut, at most ``MAX_PARTITIONS`` in all.
COVERAGE = 0.9
MAX_PARTITIONS = 3


@dataclass(frozen=True)
class Folds:
    """Validation folds, partition by partition: each partition splits the units into disjoint
    folds, and a model is fitted on the rest of the units and scored on each fold of each.
    Partitions cut at other places validate pairs the first one cut, and average out where the
    cuts fall; they reuse the same labels, so a standard error counts the folds of one
    partition, not all of them."""

    folds: tuple[np.ndarray, ...] = ()
    partitions: int = 0

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self.folds)

    def __len__(self) -> int:
        return len(self.folds)


def validation_folds(objective: Objective, n_folds: int, seed: int,
                     units: np.ndarray | None = None, *, allow_none: bool = False) -> Folds:
    """Folds of ``units`` (all by default) whose loss, and the fit on every other unit, are
    defined (``scorable_fold``); folds without are left out. Where records link two units
    and the first partition validates less than ``COVERAGE`` of them (segments reused across
    preference pairs: a pair is validated only by a fold that holds both its segments),
    partitions from further seeds are added until that share is validated by some fold,
    ``MAX_PARTITIONS`` at most (a ranking's pairs are formed inside each fold by design).
    Fewer than two usable folds: no cross-validation is possible, a ``DataError`` that says
    what is short and what to do, or, with ``allow_none``, no folds (models are then compared
    by their training loss)."""
    folds = objective.folds(n_folds, seed, units)
    usable = [fold for fold in folds if scorable_fold(objective, fold)]
    if len(usable) < 2:
        if allow_none:
            return Folds()
        raise DataError(_too_few_to_cross_validate(objective, len(folds), len(usable),
                                                   n_folds))
    if objective.unit_links() is None:
        return Folds(tuple(usable), 1)
    validated = _validated(objective, usable)
    wanted = COVERAGE * objective.n_rows(units)
    partitions = 1
    while validated.sum() < wanted and partitions < MAX_PARTITIONS:
        more = [fold for fold in objective.folds(n_folds, _partition_seed(seed, partitions),
                                                 units) if scorable_fold(objective, fold)]
        if len(more) < 2:
            break
        usable += more
        validated |= _validated(objective, more)
        partitions += 1
    return Folds(tuple(usable), partitions)


def _partition_seed(seed: int, partition: int) -> int:
    return int(np.random.SeedSequence([seed, partition]).generate_state(1)[0])


def _validated(objective: Objective, folds: list[np.ndarray]) -> np.ndarray:
    """Which of the objective's records some fold validates, where records are its rows
    (every objective but rankings, whose rows are pairs formed inside a fold)."""
    seen = np.zeros(objective.n_rows(), dtype=bool)
    for fold in folds:
        seen[objective.members(fold)] = True
    return seen


def fold_report(objective: Objective, folds: Folds) -> dict[str, Any]:
    """What cross-validation ran on: the units, how many partitions of them, each fold's
    training and validation rows, and the rows no fold validates (pairs that straddle two
    folds in every partition)."""
    sizes = objective.fold_sizes(list(folds))
    validated = (sum(held for _, held in sizes) if folds.partitions <= 1
                 else int(_validated(objective, list(folds)).sum()))
    return {"scored_by": "cross-validation" if folds else "training loss",
            "units": objective.unit_name, "rows": objective.row_name,
            "partitions": folds.partitions,
            "folds": [[train, held] for train, held in sizes],
            "never_validated": objective.n_rows() - validated}


def folds_floor(objective: Objective, offset: np.ndarray | None, folds: Folds
                ) -> float | None:
    """The lowest cross-validated loss a reward can reach on these folds: each fold's
    reachable floor, weighted by its rows as the learner weights the fold losses (the
    held-out units' labels can be noisier or cleaner than the rest's); None where a fold has
    none."""
    empty = np.zeros((objective.dataset.n, 0))
    return problems_floor([objective.problem(empty, offset, fold) for fold in folds] if folds
                          else [objective.problem(empty, offset)])


def problems_floor(problems: Sequence[LinearProblem]) -> float | None:
    """``folds_floor`` from the folds' validation problems (or the one problem on all the
    data, where there are no folds): their reachable floors weighted by their rows."""
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
