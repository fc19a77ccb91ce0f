"""The initial population: a dictionary of univariate shapes of each feature, the seeds (the
sparse engine's front), and random term sets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import sympy

from symreward.search.evolve.fitness import Fitness, Individual
from symreward.search.evolve.refinement import Refiner
from symreward.search.evolve.selection import unique
from symreward.search.evolve.variation import Variation
from symreward.search.trees import (
    ABS,
    ADD,
    CONST,
    DIV,
    EXP,
    FEATURE,
    LOG,
    MUL,
    SIN,
    SQRT,
    SQUARE,
    TANH,
    Node,
    Unsupported,
    canonical,
    evaluate_terms,
    from_sympy,
    set_key,
    skeleton,
)


def initial_population(seeds: Sequence[Sequence[sympy.Expr]], names: Sequence[str], size: int,
                       fitness: Fitness, refiner: Refiner, variation: Variation
                       ) -> list[Individual]:
    """The ``univariate`` dictionary, the ``seeds`` (term sets over the features ``names``;
    terms the trees cannot express are dropped) and random term sets, up to ``size``
    individuals (fewer where random sets keep failing)."""
    population: list[Individual] = univariate(fitness, refiner, variation)
    for exprs in seeds:
        terms = []
        for expr in exprs:
            try:
                terms.append(from_sympy(expr, names))
            except Unsupported:
                continue
        seeded = fitness.individual(terms)
        if seeded is not None:
            population.append(seeded)
    attempts = 0
    while len(population) < size and attempts < 20 * size:
        attempts += 1
        count = int(variation.rng.integers(1, min(3, variation.max_terms) + 1))
        terms = [canonical(variation.tree(int(variation.rng.integers(1, 4))))
                 for _ in range(count)]
        individual = fitness.individual([t for t in terms if variation.admissible(t)])
        if individual is not None and math.isfinite(individual.loss):
            population.append(individual)
    return unique(population)


def univariate(fitness: Fitness, refiner: Refiner, variation: Variation, per_feature: int = 8
               ) -> list[Individual]:
    """Each feature's best ``per_feature`` univariate shapes as one-term individuals, their
    constants fitted: ``u(c*v(x) + d)`` for ``v`` one of ``x, x**2, abs(x), sqrt(x),
    log(x), 1/x`` and ``u`` one of ``exp, tanh, sin`` (scale and shift inside matter),
    ``log, sqrt, abs`` (a shift matters), or none — the forms rewards are built from
    (a Gaussian bonus ``exp(-c*d**2)``, a saturating ``tanh``), few of which one random
    change at a time reaches: a dictionary in the manner of FFX (McConaghy 2011) with its
    inner constants fitted by Gauss–Newton (``refinement``), all features' shapes in one run."""
    shapes = [(f, shape) for f in range(variation.n_features)
              for shape in _shapes_of(f, fitness.columns.features, variation)]
    starts = [(f, start) for (f, _), start in
              zip(shapes, fitness.individuals([[s] for _, s in shapes]), strict=True)
              if start is not None and math.isfinite(start.loss)]
    refiner.refined_shapes.update(set_key([skeleton(t) for t in start.terms])
                                  for _, start in starts)
    refined = refiner.refine_all([start for _, start in starts])
    found: list[Individual] = []
    for feature in range(variation.n_features):
        mine = sorted((i for (f, _), i in zip(starts, refined, strict=True)
                       if f == feature and math.isfinite(i.loss)), key=lambda i: i.loss)
        found.extend(mine[:per_feature])
    return found


def _shapes_of(feature: int, features: np.ndarray, variation: Variation) -> list[Node]:
    """The univariate shapes of one feature, their constants started where the inner
    values are centred and scaled."""
    unary, binary = variation.unary, variation.binary
    x: Node = (FEATURE, float(feature))
    inners = [x] + [(op, 0.0, x) for op in (SQUARE, ABS, SQRT, LOG) if op in unary]
    if DIV in binary:
        inners.append((DIV, 0.0, (CONST, 1.0), x))
    scaled = MUL in binary and ADD in binary
    shapes: list[Node] = []
    with np.errstate(all="ignore"):
        values = evaluate_terms(inners, features)
    for inner, column in zip(inners, values, strict=True):
        if not np.isfinite(column).all() or np.ptp(column) <= 0:
            continue
        shapes.append(inner)
        scale, centre = 1.0 / float(np.std(column)), float(np.median(column))
        if scaled and EXP in unary:
            shapes.extend((EXP, 0.0, (MUL, 0.0, (CONST, sign * scale), inner))
                          for sign in (-1.0, 1.0))
        if scaled:
            shapes.extend((op, 0.0, (ADD, 0.0, (MUL, 0.0, (CONST, scale), inner),
                                     (CONST, -scale * centre)))
                          for op in (TANH, SIN) if op in unary)
        if ADD in binary:
            shapes.extend((op, 0.0, (ADD, 0.0, inner, (CONST, shift)))
                          for op, shift in ((LOG, 1.0 - float(column.min())),
                                            (SQRT, 1.0 - float(column.min())),
                                            (ABS, -centre))
                          if op in unary)
    return shapes
