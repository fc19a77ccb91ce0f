"""Selection: NSGA-II (Deb et al. 2002) on (validation loss, complexity), binary tournaments,
and the Pareto archive of the best validation loss seen at each complexity, with what counts as
progress for the early stop.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from symreward.search.evolve.fitness import Individual

# A model postpones the early stop only where it beats the archive by this share of its loss
# above the floor (``is_new_front_point``).
IMPROVEMENT = 1e-3


def tournament(rng: np.random.Generator, population: list[Individual]) -> Individual:
    """The better ranked (then less crowded) of two individuals drawn at random."""
    a, b = (population[int(k)] for k in rng.integers(len(population), size=2))
    return a if (a.rank, -a.crowding) <= (b.rank, -b.crowding) else b


def select(population: list[Individual], count: int) -> list[Individual]:
    """The ``count`` best of ``population`` by NSGA-II rank, then crowding distance."""
    rank(population)
    ordered = sorted(population, key=lambda i: (i.rank, -i.crowding, i.loss, i.complexity))
    return ordered[:count]


def unique(population: list[Individual]) -> list[Individual]:
    """The first individual of each term set."""
    seen: dict[tuple, Individual] = {}
    for individual in population:
        seen.setdefault(individual.key, individual)
    return list(seen.values())


def rank(population: list[Individual]) -> None:
    """NSGA-II non-dominated sorting and crowding distance on (loss, complexity).

    With two objectives the sort takes one pass in order of loss: an individual joins the first
    front none of whose members dominates it, which is decided by that front's lowest complexity.
    """
    order = sorted(range(len(population)),
                   key=lambda i: (population[i].loss, population[i].complexity))
    fronts: list[list[int]] = []
    lowest: list[tuple[int, float]] = []  # per front: (lowest complexity, its loss)
    for i in order:
        individual = population[i]
        level = 0
        while level < len(fronts):
            complexity, loss = lowest[level]
            dominated = complexity < individual.complexity or (
                complexity == individual.complexity and loss < individual.loss)
            if not dominated:
                break
            level += 1
        if level == len(fronts):
            fronts.append([])
            lowest.append((individual.complexity, individual.loss))
        fronts[level].append(i)
        if individual.complexity < lowest[level][0]:
            lowest[level] = (individual.complexity, individual.loss)
        individual.rank = level
    for front in fronts:
        _crowding([population[i] for i in front])


def _crowding(front: list[Individual]) -> None:
    for individual in front:
        individual.crowding = 0.0
    for value in (lambda i: i.loss, lambda i: float(i.complexity)):
        ordered = sorted(front, key=value)
        ordered[0].crowding = ordered[-1].crowding = math.inf
        span = value(ordered[-1]) - value(ordered[0])
        if span <= 0 or not math.isfinite(span):
            continue
        for k in range(1, len(ordered) - 1):
            ordered[k].crowding += (value(ordered[k + 1]) - value(ordered[k - 1])) / span


def update_archive(archive: dict[int, Individual], population: list[Individual], floor: float,
                   resolution: float,
                   feasible: Callable[[Individual], bool] | None = None) -> bool:
    """Keep the lowest validation loss at each complexity, dominated entries dropped; whether
    a model entered that ``is_new_front_point``. Models that ``feasible`` refuses never
    enter."""
    improved = False
    for individual in population:
        held = archive.get(individual.complexity)
        if feasible is not None and (held is None or individual.loss < held.loss) \
                and not feasible(individual):
            continue
        if held is None or individual.loss < held.loss - 1e-6 * abs(held.loss):
            improved = improved or is_new_front_point(archive, individual, floor, resolution)
            archive[individual.complexity] = individual
    lowest = math.inf
    for complexity in sorted(archive):
        if archive[complexity].loss >= lowest:
            del archive[complexity]
        else:
            lowest = archive[complexity].loss
    return improved


def is_new_front_point(archive: dict[int, Individual], individual: Individual,
                       floor: float, resolution: float) -> bool:
    """Whether ``individual`` beats every archived model at most as complex by more than
    ``IMPROVEMENT`` of its loss above ``floor`` (the labels' own entropy for soft labels, which
    no model can go below) and by more than ``resolution``: smaller gains, which a long run
    keeps finding by fitting the validation share's noise or by polishing a model that already
    reproduces the labels, do not postpone the early stop."""
    excess = individual.loss - floor
    return all(held.loss - floor > excess * (1 + IMPROVEMENT) + resolution
               for c, held in archive.items() if c <= individual.complexity)
