"""Gauss–Newton on the smooth constants inside terms (Levenberg–Marquardt damped), the weights
refit at every step (variable projection, Golub & Pereyra 1973): the constants of
``exp(c*theta**2)`` follow the loss's curvature to their optimum in a few steps, where a pattern
search creeps. Constants under a comparison are left alone (``tuning`` tries those): the loss is
a step function of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from symreward.objectives import LinearProblem
from symreward.search.evolve.columns import map_rows
from symreward.search.evolve.fitness import Fitness, Individual, WholeFit
from symreward.search.trees import (
    CONST,
    Node,
    evaluate_terms,
    set_key,
    skeleton,
    smooth_constants,
    subtree,
    with_subtree,
)

_REFINED = 1e-9  # Gauss–Newton stops when a step gains less than this share of the loss

# A constant's place: the index of its term and its path in the term's tree.
Place = tuple[int, tuple[int, ...]]


class Refiner:
    """Gauss–Newton runs of individuals, scored by ``fitness``; each generation refines
    ``per_generation`` new shapes (``new_shapes``)."""

    def __init__(self, fitness: Fitness, per_generation: int):
        self.fitness = fitness
        self.per_generation = per_generation
        self.refined_shapes: set[tuple] = set()

    def refine(self, individual: Individual, iterations: int = 8) -> Individual:
        return self.refine_all([individual], iterations)[0]

    def refine_all(self, individuals: Sequence[Individual], iterations: int = 8
                   ) -> list[Individual]:
        """Each individual with its smooth constants refined by at most ``iterations``
        Gauss–Newton steps (itself where that does not lower its training loss). All
        ``individuals`` step together, each step's new terms in one interpreter call and their
        fits in one solver call."""
        runs = [_Refinement(list(i.terms), [(k, p) for k, t in enumerate(i.terms)
                                            for p in smooth_constants(t)]) for i in individuals]
        active = [r for r in runs if r.places]
        starts = self.fitness.whole_fits([r.terms for r in active])
        for run, fit in zip(active, starts, strict=True):
            run.fit = fit
        active = [r for r in active if r.fit is not None]
        for _ in range(iterations):
            derivatives = self._derivatives([(r.terms, r.places) for r in active])
            for run, derivative in zip(active, derivatives, strict=True):
                run.propose(self.fitness.whole, derivative)
            trying = [r for r in active if r.step is not None]
            for _ in range(4):
                if not trying:
                    break
                fits = self.fitness.whole_fits([r.trial() for r in trying])
                trying = [r for r, fit in zip(trying, fits, strict=True) if not r.take(fit)]
            active = [r for r in active if r.improved]
            if not active:
                break
        refined = self.fitness.individuals([r.terms for r in runs])
        return [new if new is not None and new.train_loss < old.train_loss else old
                for old, new in zip(individuals, refined, strict=True)]

    def new_shapes(self, children: Sequence[Individual]) -> list[Individual]:
        """The first ``per_generation`` of ``children`` with smooth constants in a shape
        (term set up to the values of its constants) not refined before: a mutation that only
        nudges a constant would be refined to the same optimum again."""
        chosen = []
        for child in children:
            if len(chosen) >= self.per_generation:
                break
            if not any(smooth_constants(t) for t in child.terms):
                continue
            shape = set_key([skeleton(t) for t in child.terms])
            if shape not in self.refined_shapes:
                self.refined_shapes.add(shape)
                chosen.append(child)
        return chosen

    def _derivatives(self, jobs: Sequence[tuple[Sequence[Node], Sequence[Place]]]
                     ) -> list[np.ndarray | None]:
        """For each (terms, places): d(column)/d(constant) at each place, by central
        differences of the interpreter's values, mapped to the objective's rows (both halves)
        as the columns are; all of them in one interpreter call."""
        trees, steps = [], []
        for terms, places in jobs:
            for k, path in places:
                value = subtree(terms[k], path)[1]
                step = 1e-6 * max(1.0, abs(value))
                steps.append(step)
                for sign in (1.0, -1.0):
                    trees.append(with_subtree(terms[k], path, (CONST, value + sign * step)))
        with np.errstate(all="ignore"):
            values = evaluate_terms(trees, self.fitness.columns.features)
            derivative = (values[0::2] - values[1::2]) / (2.0 * np.asarray(steps)[:, None])
        mapped = np.hstack([map_rows(m, derivative) for m in self.fitness.columns.row_maps])
        found: list[np.ndarray | None] = []
        start = 0
        for _, places in jobs:
            block = mapped[start:start + len(places)]
            start += len(places)
            found.append(block.T.copy() if np.isfinite(block).all() else None)
        return found


@dataclass
class _Refinement:
    """One individual's Gauss–Newton run: its terms with constants at ``places``, the fit at
    them, the damping and the step being tried."""

    terms: list[Node]
    places: list[Place]
    fit: WholeFit | None = None
    damping: float = 1e-3
    step: np.ndarray | None = None
    profile: np.ndarray | None = None
    gradient: np.ndarray | None = None
    improved: bool = False

    def values(self) -> np.ndarray:
        return np.array([subtree(self.terms[k], p)[1] for k, p in self.places])

    def propose(self, whole: LinearProblem, derivative: np.ndarray | None) -> None:
        """The damped Gauss–Newton step on the profile loss (weights at their optimum)."""
        self.step, self.improved = None, False
        if derivative is None or self.fit is None:
            return
        loss, X, coef, intercept = self.fit
        z = X @ coef + intercept + whole.offset
        grad_z = whole.loss_and_grad_z(z)[1]
        curvature = whole.curvature_z(z)
        owner = np.array([k for k, _ in self.places])
        Jc = derivative * coef[owner]
        Jw = np.column_stack([X, np.ones(len(z))]) if whole.fit_intercept else X
        # The profile's Gauss–Newton Hessian: the constants' Jacobian with the part the
        # weights can follow projected out (a residual by least squares, not a Schur
        # complement, which cancels to negative values when the two are nearly collinear).
        root = np.sqrt(curvature)[:, None]
        weighted = root * Jw
        residual = root * Jc - weighted @ np.linalg.lstsq(weighted, root * Jc, rcond=None)[0]
        self.profile = residual.T @ residual
        self.gradient = Jc.T @ grad_z
        system = self.profile + self.damping * np.diag(np.maximum(np.diag(self.profile),
                                                                  1e-300))
        step = np.linalg.lstsq(system, -self.gradient, rcond=None)[0]
        # A constant the loss hardly sees (``c + x`` inside a sum) would otherwise leap to
        # 1e11 along its flat direction.
        bound = np.maximum(1.0, np.abs(self.values()))
        self.step = np.clip(step, -bound, bound)
        if not self._promising(loss):
            self.step = None

    def _promising(self, loss: float) -> bool:
        promised = -(self.gradient @ self.step + 0.5 * self.step @ self.profile @ self.step)
        return bool(promised > _REFINED * abs(loss))

    def trial(self) -> list[Node]:
        terms = list(self.terms)
        for (k, path), value in zip(self.places, self.values() + self.step, strict=True):
            terms[k] = with_subtree(terms[k], path, (CONST, float(value)))
        return terms

    def take(self, fit: WholeFit | None) -> bool:
        """Accept the trial if it lowers the loss; else halve the step. Whether this run is
        done trying for now."""
        loss = self.fit[0]
        if fit is not None and fit[0] < loss - _REFINED * abs(loss):
            self.terms, self.fit, self.improved = self.trial(), fit, True
            self.damping = max(self.damping / 10, 1e-9)
            return True
        self.step = self.step / 2
        return not self._promising(loss)
