"""Constants inside terms tried at listed values, each round's trials scored in one call:
thresholds (a constant compared with a feature, ``x < c``) by a pattern search that starts at
the feature's quantiles, since the loss is a step function of them that no gradient can
follow; and every constant at the fewest significant digits that keep the fit.
"""

from __future__ import annotations

import numpy as np

from symreward.objectives.rounding import round_significant
from symreward.search.evolve.fitness import Fitness, Individual
from symreward.search.trees import (
    CONST,
    FEATURE,
    GT,
    LT,
    constants,
    smooth_constants,
    subtree,
    with_subtree,
)


class Tuner:
    """Pattern searches and rounding of constants, scored by ``fitness``; thresholds start at
    each feature's ``quantiles``, rounding keeps the training loss within
    ``rounding_tolerance`` (relative)."""

    def __init__(self, fitness: Fitness, quantiles: np.ndarray, rounding_tolerance: float):
        self.fitness = fitness
        self.quantiles = quantiles
        self.rounding_tolerance = rounding_tolerance

    def thresholds(self, individual: Individual, rounds: int = 4) -> Individual:
        """A pattern search on the constants under a comparison, thresholds tried at the
        feature's quantiles first (the loss is a step function of them), each round's trials
        in one kernel call. A trial can land on a term set already scored with its terms in
        another order (the cache is keyed by the set), so a place is tuned only where the
        current best still has a constant there."""
        best = individual
        places = [(k, p) for k, t in enumerate(best.terms) for p in constants(t)
                  if p not in smooth_constants(t)]
        for k, path in places:
            if not _has_constant(best, k, path):
                continue
            parent = subtree(best.terms[k], path[:-1]) if path else None
            if parent is not None and parent[0] in (LT, GT) and parent[2][0] == FEATURE:
                grid = self.quantiles[int(parent[2][1])][::3]
                best = self._best_of(best, k, path, np.unique(grid))
        step = 0.2
        for _ in range(rounds if places else 0):
            for k, path in places:
                if not _has_constant(best, k, path):
                    continue
                value = subtree(best.terms[k], path)[1]
                trials = value * (1 + step * np.array([-1.0, -0.5, 0.5, 1.0])) + \
                    step * 0.1 * np.array([-1.0, 0.0, 0.0, 1.0])
                best = self._best_of(best, k, path, trials)
            step *= 0.4
        return best

    def _best_of(self, individual: Individual, k: int, path: tuple[int, ...],
                 trials: np.ndarray) -> Individual:
        variants = []
        for value in trials:
            terms = list(individual.terms)
            terms[k] = with_subtree(terms[k], path, (CONST, float(value)))
            variants.append(tuple(terms))
        best = individual
        for candidate in self.fitness.individuals(variants):
            if candidate is not None and candidate.train_loss < best.train_loss - 1e-12:
                best = candidate
        return best

    def rounded(self, individual: Individual) -> Individual:
        """Constants inside terms at the fewest significant digits that keep the training loss
        within ``rounding_tolerance`` (relative)."""
        best = individual
        limit = individual.train_loss + self.rounding_tolerance * abs(
            individual.train_loss) + 1e-12
        k = 0
        while k < len(best.terms):
            for path in constants(best.terms[k]):
                if k >= len(best.terms) or path not in constants(best.terms[k]):
                    continue
                value = subtree(best.terms[k], path)[1]
                variants = []
                for digits in range(1, 7):
                    terms = list(best.terms)
                    terms[k] = with_subtree(terms[k], path,
                                            (CONST, round_significant(value, digits)))
                    variants.append(terms)
                for candidate in self.fitness.individuals(variants):
                    if candidate is not None and candidate.train_loss <= limit:
                        best = candidate
                        break
            k += 1
        return best


def _has_constant(individual: Individual, k: int, path: tuple[int, ...]) -> bool:
    return k < len(individual.terms) and path in constants(individual.terms[k])

