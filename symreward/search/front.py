"""The Pareto front of complexity against held-out loss, and how one model is chosen from it.

Selection rules:

* ``"1se"`` (default): the simplest model whose cross-validated loss is within a margin of the
  *reference* model's (the one-standard-error rule of Breiman et al. and glmnet, measured from
  a reference that has paid for its terms). The margin is the larger of

  - the standard error of the model's loss *difference* to the reference, paired by fold.
    Every model sees the same folds, and how hard a fold's pairs are is shared by all of them;
    the spread of the fold losses themselves (glmnet's ``cvsd``) counts that shared difficulty
    as noise and can hide a real gain ten times its size;
  - a practical margin, 1% of the loss reduction the lowest-loss model achieves over the simplest
    one on the front, earned in full by a model at least ``TERM_COMPLEXITY`` (3, one weighted
    feature ``+ w*x``) simpler than the reference and in proportion below that. It guards
    near-separable labels, where every loss is tiny and a formula would otherwise collect terms
    worth a hundredth of a percent; the proportion keeps a model that is barely simpler (an
    ``abs(dx)`` where the best has ``sqrt(dx**2 + dy**2)``, one unit less) from winning with a
    loss that is measurably worse. Where the labels have a ``floor`` a reward can reach (soft
    preference labels: their entropy; noiseless reward labels: 0), the practical margin is at
    most ``FLOOR_FACTOR`` (100) times the lowest loss's own excess over it: once a model
    reproduces the labels, an approximation a hundred times further from them is not chosen
    for being simpler (on [1, 3], ``1.67/theta`` for ``exp(-theta**2/2)``, 0.5% of the
    deviance worse), while one that is about as far is.

  The reference is the model with the lowest loss once each unit of complexity is charged a
  third of the practical margin: a term must lower the held-out loss by the practical margin
  to be worth its place, every term, not only the last one the margin lets go. The front's
  lowest loss itself is a poor reference: the search scores hundreds of supports on the same
  folds, and the lowest of them is biased low most where the search looked hardest (large
  supports, thresholds at the knots that suit these labels: the winner's curse). glmnet's rule
  measures from the lowest point of one smooth path; measured from the lowest model of a
  searched front, one term's margin cannot reach a model several terms simpler (on our
  ``reacher-gate`` benchmark the true ``ctrl`` lost to its look-alike ``max(0, ctrl - 0.43)``,
  both measured from a model with two more terms).

* ``"best"`` (PySR's default): among models whose held-out loss is within ``tolerance`` (1.5x)
  of the lowest, the one with the highest *score*, the drop in log-loss per unit of added
  complexity against the next simpler model. It suits losses that fall towards zero (squared
  error); cross-entropy losses have a floor set by label noise, where 1.5x is very loose.
* ``"accuracy"``: the lowest held-out loss. ``"simplest"``: the simplest within ``tolerance``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from symreward.errors import OptionError

SELECTION_RULES = ("1se", "best", "accuracy", "simplest")
DEVIANCE_TOLERANCE = 0.01
# A more complex model joins the front only if it lowers the loss by more than this (relative):
# a restatement of the same reward (``sqrt(2*x**2)`` beside ``sqrt(x**2)``, split weights) fits
# equally up to the ridge and rounding, and would otherwise become the best model.
_TIE = 1e-6
TERM_COMPLEXITY = 3
FLOOR_FACTOR = 100.0


@dataclass
class FrontEntry:
    """One model: its complexity, held-out figures and formula."""

    complexity: int
    loss: float
    accuracy: float
    formula: str
    loss_se: float = 0.0
    fold_losses: tuple[float, ...] = ()
    # How many partitions of the units ``fold_losses`` come from (``crossval.Folds``): a
    # standard error counts the folds of one.
    partitions: int = 1
    train_loss: float = math.nan
    score: float = 0.0
    payload: object = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict[str, object]:
        return {"complexity": self.complexity, "heldout_loss": _clean(self.loss),
                "heldout_accuracy": _clean(self.accuracy), "formula": self.formula}


def _clean(value: float) -> float:
    return round(float(value), 6) if math.isfinite(value) else float("nan")


@dataclass
class ParetoFront:
    """Non-dominated models, simplest first; ``chosen`` indexes the selected one."""

    entries: list[FrontEntry]
    chosen: int = 0
    rule: str = "1se"

    @classmethod
    def from_models(cls, models: Sequence[FrontEntry], *, rule: str = "1se",
                    tolerance: float = 1.5, floor: float | None = None) -> ParetoFront:
        """The front of ``models`` and the one ``rule`` selects; ``floor`` is the lowest loss a
        reward can reach on these labels, where one can (``LinearProblem.reachable_floor``)."""
        if rule not in SELECTION_RULES:
            raise OptionError("selection", rule, f"choose from {', '.join(SELECTION_RULES)}")
        if not models:
            raise ValueError("no models to choose from")
        front: list[FrontEntry] = []
        for model in sorted(models, key=lambda m: (m.complexity, m.loss)):
            if not front or model.loss < front[-1].loss - _TIE * abs(front[-1].loss):
                front.append(model)
        for i, entry in enumerate(front):
            entry.score = 0.0 if i == 0 else _score(front[i - 1], entry)
        return cls(front, _select(front, rule, tolerance, floor), rule)

    @property
    def best(self) -> FrontEntry:
        return self.entries[self.chosen]

    def table(self) -> list[list[str]]:
        """Rows for display: mark, complexity, held-out loss, accuracy, formula."""
        return [["*" if i == self.chosen else "", str(e.complexity), f"{e.loss:.4f}",
                 "-" if not math.isfinite(e.accuracy) else f"{e.accuracy:.3f}", e.formula]
                for i, e in enumerate(self.entries)]


def _score(simpler: FrontEntry, entry: FrontEntry) -> float:
    if simpler.loss <= 0 or entry.loss <= 0:
        return 0.0
    return -math.log(entry.loss / simpler.loss) / max(entry.complexity - simpler.complexity, 1)


def _select(front: list[FrontEntry], rule: str, tolerance: float, floor: float | None) -> int:
    lowest = min(e.loss for e in front)
    if rule == "1se":
        deviance = DEVIANCE_TOLERANCE * (front[0].loss - lowest)
        if floor is not None:
            deviance = min(deviance, FLOOR_FACTOR * max(lowest - floor, 0.0))
        charge = deviance / TERM_COMPLEXITY
        reference = min(front, key=lambda e: e.loss + charge * e.complexity)

        def margin(e: FrontEntry) -> float:
            saved = min(max(reference.complexity - e.complexity, 0) / TERM_COMPLEXITY, 1.0)
            return max(_paired_se(e, reference), saved * deviance)

        return next(i for i, e in enumerate(front) if e.loss <= reference.loss + margin(e))
    eligible = [i for i, e in enumerate(front) if e.loss <= tolerance * lowest + 1e-12]
    if rule == "accuracy":
        return min(eligible, key=lambda i: front[i].loss)
    if rule == "simplest":
        return eligible[0]
    return max(eligible, key=lambda i: (front[i].score, -i))


def _paired_se(entry: FrontEntry, best: FrontEntry) -> float:
    """Standard error of ``entry``'s fold-by-fold loss difference to ``best``, counting the
    folds of one partition; the standard error of ``best``'s own loss where the fold losses
    are not known."""
    if entry is best:
        return 0.0
    if len(entry.fold_losses) != len(best.fold_losses) or len(entry.fold_losses) < 2:
        return best.loss_se
    differences = [a - b for a, b in zip(entry.fold_losses, best.fold_losses, strict=True)]
    mean = sum(differences) / len(differences)
    variance = sum((d - mean) ** 2 for d in differences) / (len(differences) - 1)
    return math.sqrt(variance * max(best.partitions, 1) / len(differences))
