"""Variation: random terms, and new term sets from old ones.

Variation is mutation and crossover of single terms, plus joins of two terms into one: inside a
nonlinearity, with the second scaled by the ratio of the fitted weights, and, tried for every
pair of terms of each model that reaches the archive, as a power mean ``sqrt(a**2 + r*b**2)``
or a log-sum-exp. A norm such as ``sqrt(dx**2 + dy**2)`` is otherwise out of reach: its parts
``abs(dx), abs(dy)`` are a good reward on their own, and one random change at a time does not
get from them to it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from symreward.objectives.rounding import round_significant
from symreward.search.evolve.fitness import Fitness, Individual
from symreward.search.trees import (
    ADD,
    BINARY,
    CONST,
    DIV,
    EXP,
    FEATURE,
    GT,
    LOG,
    LT,
    MUL,
    OPERATORS,
    SQRT,
    SQUARE,
    SUB,
    Node,
    canonical,
    depth,
    paths,
    size,
    subtree,
    with_subtree,
)


class Variation:
    """The search's random changes, all drawn from ``rng`` (the search's only stream of random
    numbers, so a seed fixes the run): terms over ``n_features`` features with the
    ``operators``, at most ``max_size`` nodes and depth ``max_depth``, at most ``max_terms``
    per set; thresholds drawn from each feature's ``quantiles``."""

    def __init__(self, rng: np.random.Generator, operators: Sequence[str], n_features: int,
                 quantiles: np.ndarray, fitness: Fitness, *, max_terms: int, max_size: int,
                 max_depth: int):
        self.rng = rng
        self.unary = [OPERATORS[o] for o in operators if OPERATORS[o] not in BINARY]
        self.binary = [OPERATORS[o] for o in operators if OPERATORS[o] in BINARY]
        self.n_features = n_features
        self.quantiles = quantiles
        self.fitness = fitness
        self.max_terms = max_terms
        self.max_size = max_size
        self.max_depth = max_depth

    def leaf(self, near: Node | None = None) -> Node:
        if near is not None and near[0] == FEATURE:
            return (CONST, float(self.rng.choice(self.quantiles[int(near[1])])))
        if self.rng.random() < 0.85:
            return (FEATURE, float(self.rng.integers(self.n_features)))
        return (CONST, float(round_significant(self.rng.normal(0.0, 2.0), 2)))

    def tree(self, max_depth: int) -> Node:
        if max_depth <= 1 or self.rng.random() < 0.3:
            return self.leaf()
        if self.unary and (not self.binary or self.rng.random() < 0.35):
            return (int(self.rng.choice(self.unary)), 0.0, self.tree(max_depth - 1))
        op = int(self.rng.choice(self.binary))
        left = self.tree(max_depth - 1)
        if op in (LT, GT):
            left = left if left[0] == FEATURE else self.leaf()
            return (op, 0.0, left, self.leaf(near=left))
        return (op, 0.0, left, self.tree(max_depth - 1))

    def mutate_term(self, term: Node) -> Node:
        """One change at a random node: a constant nudged, the operator swapped for another of
        the same arity, a new subtree, the node scaled by a constant (for the pattern search to
        tune: ``dx**2 + c*dy**2``), wrapped in an operator, or replaced by a child."""
        places = paths(term)
        path = places[int(self.rng.integers(len(places)))]
        node = subtree(term, path)
        choice = self.rng.random()
        if node[0] == CONST and choice < 0.5:
            factor = 1.0 + self.rng.normal(0.0, 0.2)
            new: Node = (CONST, float(node[1] * factor + self.rng.normal(0.0, 0.05)))
        elif choice < 0.3 and node[0] in BINARY:
            new = (int(self.rng.choice(self.binary)), 0.0, *node[2:])
        elif choice < 0.3 and len(node) == 3 and self.unary:
            new = (int(self.rng.choice(self.unary)), 0.0, *node[2:])
        elif choice < 0.3 and node[0] == FEATURE:
            new = self.leaf()
        elif choice < 0.45:
            new = self.tree(3)
        elif choice < 0.55 and MUL in self.binary:
            new = self._scaled(node, always=True)
        elif choice < 0.67 and self.unary:
            new = (int(self.rng.choice(self.unary)), 0.0, self._scaled(node))
        elif choice < 0.8 and self.binary:
            op = int(self.rng.choice([o for o in self.binary if o not in (LT, GT)] or
                                     self.binary))
            new = (op, 0.0, node, self.tree(2)) if self.rng.random() < 0.5 else \
                (op, 0.0, self.tree(2), node)
        elif len(node) > 2:
            new = node[2 + int(self.rng.integers(len(node) - 2))]
        else:
            new = self.leaf()
        return with_subtree(term, path, new)

    def _scaled(self, node: Node, always: bool = False) -> Node:
        """``node`` times a constant of either sign (always, or half the time): inside a
        nonlinearity the scale and sign matter (``exp(-0.5*theta**2)``), and the fit's weights
        cannot supply them."""
        if MUL not in self.binary or not (always or self.rng.random() < 0.5):
            return node
        scale = self.rng.choice([-1.0, 1.0]) * self.rng.lognormal(0.0, 0.7)
        return (MUL, 0.0, (CONST, float(round_significant(scale, 2))), node)

    def crossover_terms(self, a: Node, b: Node) -> Node:
        paths_a, paths_b = paths(a), paths(b)
        target = paths_a[int(self.rng.integers(len(paths_a)))]
        donor = subtree(b, paths_b[int(self.rng.integers(len(paths_b)))])
        return with_subtree(a, target, donor)

    def combine(self, individual: Individual) -> list[Node]:
        """Two terms joined into one, the way a norm ``sqrt(dx**2 + dy**2)`` grows from the
        separate terms ``dx**2, dy**2`` or from ``abs(dx), abs(dy)``.

        A sum or difference is only new inside a nonlinearity (the weighted sum is already the
        individual's reward), so it is always wrapped in one, with the second term scaled by
        the ratio of the fitted weights: the combination the fit found, bent. Half the time
        the join is one of ``merges``."""
        terms = list(individual.terms)
        first, second = sorted(self.rng.choice(len(terms), size=2, replace=False))
        a, b = terms[first], terms[second]
        arithmetic = [o for o in self.binary if o in (ADD, SUB, MUL, DIV)] or self.binary
        op = int(self.rng.choice(arithmetic))
        merges = self._merges(individual, first, second)
        if op in (ADD, SUB) and merges and self.rng.random() < 0.5:
            joined = merges[int(self.rng.integers(len(merges)))]
        elif op in (ADD, SUB) and self.unary:
            ratio = _ratio(individual.weights[first], individual.weights[second])
            joined = (int(self.rng.choice(self.unary)), 0.0, self._weighted_sum(a, b, ratio))
        else:
            joined = (op, 0.0, a, b)
            if self.unary and self.rng.random() < 0.6:
                joined = (int(self.rng.choice(self.unary)), 0.0, joined)
        rest = [t for k, t in enumerate(terms) if k not in (first, second)]
        return [*rest, joined]

    def merged(self, individual: Individual) -> list[Individual]:
        """Every pair of ``individual``'s terms replaced by each of its ``merges``: a
        systematic local move, tried once on each model that reaches the archive."""
        proposals = []
        for first in range(len(individual.terms)):
            for second in range(first + 1, len(individual.terms)):
                rest = [t for k, t in enumerate(individual.terms) if k not in (first, second)]
                for joined in self._merges(individual, first, second):
                    joined = canonical(joined)
                    if self.admissible(joined):
                        proposals.append([*rest, joined])
        return [child for child in self.fitness.individuals(proposals)
                if child is not None and math.isfinite(child.loss)]

    def _merges(self, individual: Individual, first: int, second: int) -> list[Node]:
        """Terms ``a, b`` mapped through the inner half of an inverse pair, summed with the
        fitted weights' ratio, and mapped back: the power mean ``sqrt(a**2 + r*b**2)`` (the
        Euclidean norm of two magnitudes) and the log-sum-exp ``log(exp(a) + r*exp(b))`` (a
        smooth maximum) — how rewards combine distances and costs."""
        if ADD not in self.binary:
            return []
        a, b = individual.terms[first], individual.terms[second]
        ratio = _ratio(individual.weights[first], individual.weights[second])
        return [(outer, 0.0, self._weighted_sum((inner, 0.0, a), (inner, 0.0, b),
                                                ratio * ratio if inner == SQUARE else 1.0))
                for inner, outer in ((SQUARE, SQRT), (EXP, LOG))
                if inner in self.unary and outer in self.unary]

    def _weighted_sum(self, first: Node, second: Node, ratio: float) -> Node:
        op = ADD if ratio > 0 or SUB not in self.binary else SUB
        scale = round_significant(ratio if op == ADD else -ratio, 2)
        if scale == 1.0 or MUL not in self.binary:
            return (op, 0.0, first, second)
        return (op, 0.0, first, (MUL, 0.0, (CONST, float(scale)), second))

    def admissible(self, term: Node) -> bool:
        return (term[0] != CONST and size(term) <= self.max_size
                and depth(term) <= self.max_depth)

    def offspring(self, a: Individual, b: Individual) -> tuple[Node, ...]:
        """A child's terms: ``a``'s and ``b``'s pooled and drawn from, a term of ``a``
        crossed with one of ``b``, two of ``a``'s joined (``combine``), a random term added,
        one dropped or one mutated; canonical and admissible only."""
        terms = list(a.terms)
        roll = self.rng.random()
        if roll < 0.3 and b.terms:
            pool = list(dict.fromkeys([*a.terms, *b.terms]))
            count = int(self.rng.integers(1, min(len(pool), self.max_terms) + 1))
            picked = self.rng.choice(len(pool), size=count, replace=False)
            terms = [pool[k] for k in sorted(picked)]
        elif roll < 0.45 and terms and b.terms:
            k = int(self.rng.integers(len(terms)))
            terms[k] = self.crossover_terms(terms[k], b.terms[int(self.rng.integers(len(b.terms)))])
        elif roll < 0.55 and len(terms) >= 2:
            terms = self.combine(a)
        elif roll < 0.65 and len(terms) < self.max_terms:
            terms.append(self.tree(3))
        elif roll < 0.72 and len(terms) > 1:
            del terms[int(self.rng.integers(len(terms)))]
        elif terms:
            k = int(self.rng.integers(len(terms)))
            terms[k] = self.mutate_term(terms[k])
        else:
            terms = [self.tree(3)]
        kept = [canonical(t) for t in terms]
        return tuple(t for t in kept if self.admissible(t))


def _ratio(first_weight: float, second_weight: float) -> float:
    """The second fitted weight over the first, or 1 where that is not a usable number."""
    ratio = second_weight / first_weight if first_weight != 0 else 1.0
    return ratio if math.isfinite(ratio) and ratio != 0 else 1.0
