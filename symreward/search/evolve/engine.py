"""The evolutionary engine's options (``EvolutionarySearch``), one run over one objective's data
(``Run``: its parts and the generations) and what a run found (``EvolutionResult``).

Each generation: tournaments pick parents, ``variation`` makes a population of children, all
new term sets are scored in one call (``fitness``), the best archived model not yet merged has
every pair of its terms merged, the most promising new models get their thresholds tuned
(``tuning``) and new shapes their smooth constants refined (``refinement``); NSGA-II selects
the next population and the archive keeps the best at each complexity (``selection``). At the
end every archived model is tuned, refined and its constants rounded.

With ``weight_bounds`` (the sign bounds the learner's constraints prove for a term's weight,
``symreward.constraints``), a model whose fitted weights break them is infeasible: it may breed,
but never enters the archive, so the search proposes none (a feasibility filter, as in
shape-constrained symbolic regression).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import sympy

from symreward import formula, validation
from symreward.errors import OptionError
from symreward.objectives import Objective
from symreward.search.evolve.dictionary import initial_population
from symreward.search.evolve.fitness import Fitness, Individual, constants_in
from symreward.search.evolve.refinement import Refiner
from symreward.search.evolve.selection import (
    is_new_front_point,
    rank,
    select,
    tournament,
    unique,
    update_archive,
)
from symreward.search.evolve.tuning import Tuner
from symreward.search.evolve.variation import Variation
from symreward.search.trees import (
    DEFAULT_OPERATORS,
    MAX_DEPTH_LIMIT,
    OPERATORS,
    Node,
    to_sympy,
)

Progress = Callable[[str], None]
WeightBounds = Callable[[sympy.Expr], tuple[float, float]]


@dataclass
class EvolutionResult:
    """What a run found: term sets of the archive (simplest first) and how it ended.
    ``evaluations`` counts distinct terms run by the interpreter, ``candidates`` the term sets
    whose weights were fitted and scored by two-fold validation, ``constant_fits`` the term sets
    fitted (on all the search's data) while Gauss–Newton tuned their constants."""

    term_sets: list[list[sympy.Expr]]
    generations: int
    evaluations: int
    seconds: float
    stopped: str
    candidates: int = 0
    archive: list[Individual] = field(default_factory=list, repr=False)
    constant_fits: int = 0


@dataclass
class EvolutionarySearch:
    """Options (as in scikit-learn, set here; ``run`` does the work).

    ``population`` individuals per generation, at most ``generations`` generations or
    ``time_limit`` seconds, stopping early after ``patience`` generations without a better
    archive. Terms have at most ``max_size`` nodes and depth ``max_depth``; an individual has at
    most ``max_terms`` terms. Each generation the constants of ``refine_per_generation`` new
    shapes get ``refine_iterations`` Gauss–Newton steps, and the ``tune_per_generation`` most
    promising new models a threshold search too; the archive gets both at the end.
    """

    operators: Sequence[str] = DEFAULT_OPERATORS
    population: int = 200
    generations: int = 300
    time_limit: float | None = 90.0
    patience: int = 30
    max_terms: int = 6
    max_size: int = 15
    max_depth: int = 6
    tune_per_generation: int = 2
    refine_per_generation: int = 8
    refine_iterations: int = 4
    rounding_tolerance: float = 1e-3
    seed: int = 0
    progress: Progress | None = None

    def run(self, objective: Objective, matrix: np.ndarray, names: Sequence[str], *,
            offset: np.ndarray | None = None, seeds: Sequence[Sequence[sympy.Expr]] = (),
            units: np.ndarray | None = None, weight_bounds: WeightBounds | None = None
            ) -> EvolutionResult:
        """Search term sets over the (N, F) feature ``matrix`` whose columns are ``names``,
        on the objective's ``units`` (all by default), seeded with the term sets ``seeds``;
        ``offset`` is a fixed reward per transition (locked terms) that every model adds;
        ``weight_bounds(term)`` the bounds of a term's weight in a feasible model."""
        return self.prepare(objective, matrix, names, offset=offset, units=units,
                            weight_bounds=weight_bounds).evolve(seeds)

    def prepare(self, objective: Objective, matrix: np.ndarray, names: Sequence[str], *,
                offset: np.ndarray | None = None, units: np.ndarray | None = None,
                weight_bounds: WeightBounds | None = None) -> Run:
        """A run on these data (as ``run`` takes them) before its first generation: its
        parts can be used on their own, as the tests do."""
        self.check()
        return Run(self, objective, matrix, names, offset, units, weight_bounds)

    def check(self) -> None:
        """Every option's value; an ``OptionError`` names the first bad one."""
        unknown = sorted(set(self.operators) - set(OPERATORS))
        if unknown:
            raise OptionError("operators", unknown, f"unknown operators (choose from "
                                                    f"{', '.join(OPERATORS)})")
        validation.whole("population", self.population, 2)
        validation.whole("generations", self.generations, 1)
        validation.number("time_limit", self.time_limit, 0.0, low_open=True, optional=True)
        validation.whole("patience", self.patience, 1)
        validation.whole("max_terms", self.max_terms, 1)
        validation.whole("max_size", self.max_size, 1)
        validation.whole("max_depth", self.max_depth, 1)
        if self.max_depth > MAX_DEPTH_LIMIT:
            raise OptionError("max_depth", self.max_depth, f"must be at most {MAX_DEPTH_LIMIT}")
        validation.whole("tune_per_generation", self.tune_per_generation, 0)
        validation.whole("refine_per_generation", self.refine_per_generation, 0)
        validation.whole("refine_iterations", self.refine_iterations, 0)
        validation.number("rounding_tolerance", self.rounding_tolerance, 0.0)
        validation.whole("seed", self.seed, 0)


class Run:
    """One search: the scores of term sets (``fitness``, which holds the cache of term columns,
    ``fitness.columns``), the random changes (``variation``, which holds the run's one stream
    of random numbers), the tuning of constants (``tuner``, ``refiner``), and the generations
    (``evolve``)."""

    def __init__(self, options: EvolutionarySearch, objective: Objective, matrix: np.ndarray,
                 names: Sequence[str], offset: np.ndarray | None,
                 units: np.ndarray | None = None, weight_bounds: WeightBounds | None = None):
        self.options = options
        self.names = list(names)
        self.weight_bounds = weight_bounds
        self.term_bounds: dict[Node, tuple[float, float]] = {}
        self.fitness = Fitness(objective, matrix, offset, units, options.seed)
        self.quantiles = np.quantile(matrix, np.linspace(0.02, 0.98, 49), axis=0).T
        self.variation = Variation(
            np.random.default_rng(options.seed), options.operators, len(self.names),
            self.quantiles, self.fitness, max_terms=options.max_terms,
            max_size=options.max_size, max_depth=options.max_depth)
        self.tuner = Tuner(self.fitness, self.quantiles, options.rounding_tolerance)
        self.refiner = Refiner(self.fitness, options.refine_per_generation)
        # The archived models whose pairs of terms have been merged (once per model).
        self.merged_keys: set[tuple] = set()

    def evolve(self, seeds: Sequence[Sequence[sympy.Expr]]) -> EvolutionResult:
        """The generations from a population seeded with ``seeds``, until the budget or the
        patience runs out; the archive tuned, refined and rounded."""
        options, fitness, variation = self.options, self.fitness, self.variation
        started = time.perf_counter()
        population = initial_population(seeds, self.names, options.population, fitness,
                                        self.refiner, variation)
        archive: dict[int, Individual] = {}
        update_archive(archive, population, fitness.floor, fitness.resolution, self.feasible)
        stale, generation, stopped = 0, 0, "generations"
        for generation in range(1, options.generations + 1):
            if options.time_limit is not None and \
                    time.perf_counter() - started > options.time_limit:
                stopped, generation = "time limit", generation - 1
                break
            rank(population)
            proposals = [variation.offspring(tournament(variation.rng, population),
                                             tournament(variation.rng, population))
                         for _ in range(options.population)]
            children = [child for child in fitness.individuals(proposals)
                        if child is not None and math.isfinite(child.loss)]
            for member in sorted(archive.values(), key=lambda i: i.loss):
                if member.key not in self.merged_keys and len(member.terms) >= 2:
                    self.merged_keys.add(member.key)
                    children.extend(variation.merged(member))
                    break
            ranked = sorted(children, key=lambda c: c.loss)
            promising = [c for c in ranked if constants_in(c) and is_new_front_point(
                archive, c, fitness.floor, fitness.resolution)]
            children.extend(self.refiner.refine(self.tuner.thresholds(c))
                            for c in promising[:options.tune_per_generation])
            children.extend(self.refiner.refine_all(self.refiner.new_shapes(ranked),
                                                    options.refine_iterations))
            population = select(unique([*population, *children]), options.population)
            if update_archive(archive, population, fitness.floor, fitness.resolution,
                              self.feasible):
                stale = 0
            else:
                stale += 1
            if options.progress is not None and (generation % 10 == 0 or generation == 1):
                best = min(archive.values(), key=lambda i: i.loss)
                options.progress(
                    f"evolve: generation {generation}, archive {len(archive)} models, best "
                    f"validation loss {best.loss:.4f}, {fitness.columns.evaluations} terms "
                    f"evaluated, {time.perf_counter() - started:.1f} s")
            if stale >= options.patience:
                stopped = f"no improvement in {options.patience} generations"
                break
        ordered = sorted(archive.values(), key=lambda i: i.complexity)
        final = [i for i in (self.tuner.rounded(i) for i in self.refiner.refine_all(
            [self.tuner.thresholds(i) for i in ordered])) if self.feasible(i)]
        symbols = [formula.symbol(n) for n in self.names]
        term_sets = []
        for individual in final:
            exprs = _simplified_terms(individual.terms, symbols)
            if exprs not in term_sets:
                term_sets.append(exprs)
        return EvolutionResult(term_sets, generation, fitness.columns.evaluations,
                               time.perf_counter() - started, stopped, fitness.candidates, final,
                               fitness.constant_fits)


    def feasible(self, individual: Individual) -> bool:
        """Whether every weight of ``individual`` is within its term's ``weight_bounds`` (to
        a rounding error of the largest weight); each term's bounds are decided once."""
        if self.weight_bounds is None:
            return True
        slack = 1e-9 * max((abs(w) for w in individual.weights), default=0.0)
        symbols = [formula.symbol(n) for n in self.names]
        for term, weight in zip(individual.terms, individual.weights, strict=True):
            if term not in self.term_bounds:
                self.term_bounds[term] = self.weight_bounds(to_sympy(term, symbols))
            low, high = self.term_bounds[term]
            if weight < low - slack or weight > high + slack:
                return False
        return True


def _simplified_terms(terms: Sequence[Node], symbols: Sequence[sympy.Symbol]
                      ) -> list[sympy.Expr]:
    """The terms as sympy expressions, a top-level sum split into its parts and each part's
    numeric factor dropped (the weights carry scale), constants dropped."""
    parts: list[sympy.Expr] = []
    for term in terms:
        expr = to_sympy(term, symbols)
        for part in sympy.Add.make_args(sympy.expand(expr, deep=False, mul=True,
                                                     multinomial=False, power_exp=False,
                                                     power_base=False, log=False)):
            _, rest = part.as_coeff_Mul()
            if rest.is_Number or rest == 1:
                continue
            if rest not in parts:
                parts.append(rest)
    return parts
