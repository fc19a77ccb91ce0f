"""The evolutionary engine: the structure of terms is searched, their weights are fitted.

An individual is a set of terms, each an expression tree over the features; its reward is the
weighted sum of its terms with the weights fitted by the objective's own convex loss (as in FEAT,
La Cava et al. 2019), so evolution searches structure only. Constants inside terms are tuned by a
pattern search that evaluates all its trial values in one kernel call; a constant compared with a
feature (``x < c``) is first tried at the feature's quantiles, since its loss is a step function
that no gradient can follow.

Variation is mutation and crossover of single terms, plus joins of two terms into one: inside a
nonlinearity, with the second scaled by the ratio of the fitted weights, and, tried for every
pair of terms of each model that reaches the archive, as a power mean ``sqrt(a**2 + r*b**2)``
or a log-sum-exp. A norm such as ``sqrt(dx**2 + dy**2)`` is otherwise out of reach: its parts
``abs(dx), abs(dy)`` are a good reward on their own, and one random change at a time does not
get from them to it.

Selection is NSGA-II (Deb et al. 2002) on (validation loss, complexity), with a Pareto archive
of the best validation loss seen at each complexity. The search is seeded with the sparse
engine's front. The validation loss is two-fold: the objective's units (segments or episodes,
``Objective.folds``) are split in halves, weights fitted on the rows of each are scored on the
rows of the other (a preference pair whose segments fall in different halves is in neither).
A single held-out share of 1000 pairs is too noisy to select on: formulas that fit its noise
beat the true reward there. The learner then cross-validates what the archive proposes, exactly
as it does for the sparse engine's proposals.

Terms are trees (``symreward.search.trees``); every new term of a generation is evaluated in one
parallel call of its interpreter, every term set fitted and scored in one call of the compiled
solvers (``symreward.objectives.fitting``). With the same seed and a budget of generations (not of
seconds) a run is reproducible bit for bit on one machine.

Operators are protected by rejection, not by substitution: gplearn's ``x/0 = 1`` makes a reported
``x/y`` differ from the function that was scored. Here a term that is not finite on every row of
the data is discarded, so a formula always means what it says.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numba
import numpy as np
import scipy.sparse as sp
import sympy

from symreward import formula, validation
from symreward.errors import DataError, OptionError
from symreward.objectives import LinearProblem, Objective
from symreward.objectives.fitting import fitted_losses, two_fold_scores
from symreward.objectives.rounding import round_significant
from symreward.search.trees import (
    ABS,
    ADD,
    BINARY,
    CONST,
    DEFAULT_OPERATORS,
    DIV,
    EXP,
    FEATURE,
    GT,
    LOG,
    LT,
    MAX_DEPTH_LIMIT,
    MUL,
    OPERATORS,
    SIN,
    SQRT,
    SQUARE,
    SUB,
    TANH,
    Node,
    Unsupported,
    canonical,
    constants,
    depth,
    evaluate_terms,
    from_sympy,
    paths,
    set_complexity,
    set_key,
    size,
    skeleton,
    smooth_constants,
    subtree,
    to_sympy,
    with_subtree,
)

Progress = Callable[[str], None]

_IMPROVEMENT = 1e-3
_TAIL_RATIO = 50.0
_BULK_ROWS = 4096
_REFINED = 1e-9  # Gauss–Newton stops when a step gains less than this share of the loss

# -- the search ----------------------------------------------------------------------------

@dataclass
class Individual:
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
            units: np.ndarray | None = None) -> EvolutionResult:
        """Search term sets over the (N, F) feature ``matrix`` whose columns are ``names``,
        on the objective's ``units`` (all by default)."""
        self.check()
        return _Run(self, objective, matrix, names, offset, units).evolve(seeds)

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


def _has_constant(individual: Individual, k: int, path: tuple[int, ...]) -> bool:
    return k < len(individual.terms) and path in constants(individual.terms[k])


class _Run:
    """One search: the data, the cache of term columns, the population and the archive."""

    def __init__(self, options: EvolutionarySearch, objective: Objective, matrix: np.ndarray,
                 names: Sequence[str], offset: np.ndarray | None,
                 units: np.ndarray | None = None):
        self.options = options
        self.objective = objective
        self.names = list(names)
        self.features = np.ascontiguousarray(matrix.T, dtype=np.float64)
        self.offset = offset
        self.rng = np.random.default_rng(options.seed)
        self.halves = objective.folds(2, options.seed, units)
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
        self.row_maps = [objective.row_map(half).tocsc() for half in self.halves]
        self.whole = LinearProblem.stacked(self.bases)
        rows = sum(base.n_rows for base in self.bases)
        self.floor = sum(base.n_rows / rows * base.loss_floor() for base in self.bases)
        self.quantiles = np.quantile(matrix, np.linspace(0.02, 0.98, 49), axis=0).T
        transitions = self.features.shape[1]
        self.bulk_rows = np.arange(transitions) if transitions <= _BULK_ROWS else np.sort(
            np.random.default_rng(options.seed).choice(transitions, _BULK_ROWS, replace=False))
        self.feature_tails = list(_screen(self.features, self.bulk_rows)[1])
        self.unary = [OPERATORS[o] for o in options.operators if OPERATORS[o] not in BINARY]
        self.binary = [OPERATORS[o] for o in options.operators if OPERATORS[o] in BINARY]
        self.cache: dict[Node, tuple[np.ndarray, np.ndarray] | None] = {}
        # Half the cache is dropped past about 2 GB of columns (or 200,000 terms).
        self.cache_limit = min(200_000, 2 * 10**9 // (8 * max(self.whole.n_rows, 1)))
        self.evaluations = 0
        self.candidates = 0
        self.constant_fits = 0
        self.fits: dict[tuple, Individual | None] = {}
        self.merged_keys: set[tuple] = set()
        self.refined_shapes: set[tuple] = set()
        # The last weight fitted to each term: where a fit of a set that holds it starts.
        self.term_weight: dict[Node, float] = {}
        # A millionth of the loss the empty model leaves above the floor: gains below it are
        # rounding, not a better model.
        self.resolution = 1e-6 * max(self._fitted([()])[0].loss - self.floor, 0.0)

    # columns and fitness -----------------------------------------------------------------

    def columns(self, terms: Sequence[Node]) -> None:
        """Evaluate, in one kernel call, the terms not in the cache, and store their train and
        validation columns (``None`` for a term that is not finite or is constant)."""
        new = list(dict.fromkeys(t for t in terms if t not in self.cache))
        if not new:
            return
        if len(self.cache) > self.cache_limit:
            for key in list(self.cache)[: len(self.cache) // 2]:
                del self.cache[key]
        with np.errstate(all="ignore"):
            values = evaluate_terms(new, self.features)
        self.evaluations += len(new)
        finite, ratios = _screen(values, self.bulk_rows)
        finite[finite] = [self.tame(term, ratio) for term, ratio, ok in
                          zip(new, ratios, finite, strict=True) if ok]
        parts = [map_rows(m, values[finite]) for m in self.row_maps]
        both = np.concatenate(parts, axis=1)
        largest = np.abs(both).max(axis=1, initial=0.0)
        varies = np.ptp(both, axis=1) > 1e-12 * np.maximum(largest, 1e-300) if both.shape[1] \
            else np.zeros(len(both), dtype=bool)
        if not self.bases[0].fit_intercept:
            varies |= largest > 0
        kept = iter(range(len(both)))
        for term, ok in zip(new, finite, strict=True):
            k = next(kept) if ok else -1
            self.cache[term] = (parts[0][k], parts[1][k]) if ok and varies[k] else None

    def tame(self, term: Node, ratio: float) -> bool:
        """Whether a term's extremes stay in proportion to its bulk, as its features' do.

        A term like ``a/dx`` takes values thousands of times its typical size on the few rows
        where ``dx`` is near 0; it can win a few pairs' noise and it behaves wildly off the data.
        Such a term is rejected when its tail ratio (``_screen``) exceeds ``_TAIL_RATIO`` and
        twice its features' own.
        """
        if ratio <= _TAIL_RATIO:
            return True
        used = {int(n[1]) for p in paths(term) if (n := subtree(term, p))[0] == FEATURE}
        return ratio <= 2 * max((self.feature_tails[f] for f in used), default=0.0)

    def individual(self, terms: Sequence[Node]) -> Individual | None:
        return self.individuals([terms])[0]

    def individuals(self, term_lists: Sequence[Sequence[Node]]) -> list[Individual | None]:
        """Each list of terms fitted and scored (``None`` where a term is unusable), the new
        ones in one call of the compiled scorer."""
        sets = [tuple(dict.fromkeys(canonical(t) for t in terms)) for terms in term_lists]
        keys = [set_key(terms) for terms in sets]
        pending = {key: terms for key, terms in zip(keys, sets, strict=True)
                   if key not in self.fits}
        self.columns([t for terms in pending.values() for t in terms])
        usable = []
        for key, terms in pending.items():
            if all(self.cache.get(t) is not None for t in terms):
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
        columns = [np.column_stack([self.cache[t][h] for t in unique]) if unique
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

    # variation -----------------------------------------------------------------------------

    def leaf(self, near: Node | None = None) -> Node:
        if near is not None and near[0] == FEATURE:
            return (CONST, float(self.rng.choice(self.quantiles[int(near[1])])))
        if self.rng.random() < 0.85:
            return (FEATURE, float(self.rng.integers(len(self.names))))
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
        return [child for child in self.individuals(proposals)
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
        return (term[0] != CONST and size(term) <= self.options.max_size
                and depth(term) <= self.options.max_depth)

    def offspring(self, a: Individual, b: Individual) -> tuple[Node, ...]:
        terms = list(a.terms)
        roll = self.rng.random()
        if roll < 0.3 and b.terms:
            pool = list(dict.fromkeys([*a.terms, *b.terms]))
            count = int(self.rng.integers(1, min(len(pool), self.options.max_terms) + 1))
            picked = self.rng.choice(len(pool), size=count, replace=False)
            terms = [pool[k] for k in sorted(picked)]
        elif roll < 0.45 and terms and b.terms:
            k = int(self.rng.integers(len(terms)))
            terms[k] = self.crossover_terms(terms[k], b.terms[int(self.rng.integers(len(b.terms)))])
        elif roll < 0.55 and len(terms) >= 2:
            terms = self.combine(a)
        elif roll < 0.65 and len(terms) < self.options.max_terms:
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

    # constants -------------------------------------------------------------------------------

    def tune(self, individual: Individual) -> Individual:
        """Constants inside terms: ``thresholds``, then Gauss–Newton on the smooth ones."""
        return self.refine(self.thresholds(individual))

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
        for candidate in self.individuals(variants):
            if candidate is not None and candidate.train_loss < best.train_loss - 1e-12:
                best = candidate
        return best

    def refine(self, individual: Individual, iterations: int = 8) -> Individual:
        return self.refine_all([individual], iterations)[0]

    def refine_all(self, individuals: Sequence[Individual], iterations: int = 8
                   ) -> list[Individual]:
        """Gauss–Newton (Levenberg–Marquardt damped) on the smooth constants inside terms,
        the weights refit at every step (variable projection, Golub & Pereyra 1973): the
        constants of ``exp(c*theta**2)`` follow the loss's curvature to their optimum in a few
        steps, where a pattern search creeps. Constants under a comparison are left alone: the
        loss is a step function of them. All ``individuals`` step together, each step's new
        terms in one interpreter call and their fits in one solver call."""
        runs = [_Refinement(list(i.terms), [(k, p) for k, t in enumerate(i.terms)
                                            for p in smooth_constants(t)]) for i in individuals]
        active = [r for r in runs if r.places]
        for run, fit in zip(active, self._whole_fits([r.terms for r in active]), strict=True):
            run.fit = fit
        active = [r for r in active if r.fit is not None]
        for _ in range(iterations):
            derivatives = self._constant_derivatives([(r.terms, r.places) for r in active])
            for run, derivative in zip(active, derivatives, strict=True):
                run.propose(self.whole, derivative)
            trying = [r for r in active if r.step is not None]
            for _ in range(4):
                if not trying:
                    break
                fits = self._whole_fits([r.trial() for r in trying])
                trying = [r for r, fit in zip(trying, fits, strict=True) if not r.take(fit)]
            active = [r for r in active if r.improved]
            if not active:
                break
        refined = self.individuals([r.terms for r in runs])
        return [new if new is not None and new.train_loss < old.train_loss else old
                for old, new in zip(individuals, refined, strict=True)]

    def _new_shapes(self, children: Sequence[Individual]) -> list[Individual]:
        """The first ``refine_per_generation`` of ``children`` with smooth constants in a shape
        (term set up to the values of its constants) not refined before: a mutation that only
        nudges a constant would be refined to the same optimum again."""
        chosen = []
        for child in children:
            if len(chosen) >= self.options.refine_per_generation:
                break
            if not any(smooth_constants(t) for t in child.terms):
                continue
            shape = set_key([skeleton(t) for t in child.terms])
            if shape not in self.refined_shapes:
                self.refined_shapes.add(shape)
                chosen.append(child)
        return chosen

    def _whole_fits(self, term_lists: Sequence[Sequence[Node]]
                    ) -> list[tuple[float, np.ndarray, np.ndarray, float] | None]:
        """For each list of terms: the loss, design, weights and intercept of its fit on both
        halves together (``None`` where a term is unusable)."""
        sets = [[canonical(t) for t in terms] for terms in term_lists]
        self.columns([t for terms in sets for t in terms])
        usable = [k for k, terms in enumerate(sets)
                  if all(self.cache.get(t) is not None for t in terms)]
        unique = list(dict.fromkeys(t for k in usable for t in sets[k]))
        index = {t: j for j, t in enumerate(unique)}
        columns = np.column_stack([np.concatenate(self.cache[t]) for t in unique]) if unique \
            else np.zeros((self.whole.n_rows, 0))
        losses, weights, intercepts = fitted_losses(
            self.whole, columns, [[index[t] for t in sets[k]] for k in usable],
            [[self.term_weight.get(t, 0.0) for t in sets[k]] for k in usable])
        self.constant_fits += len(usable)
        found: list[tuple[float, np.ndarray, np.ndarray, float] | None] = [None] * len(sets)
        for j, k in enumerate(usable):
            if math.isfinite(losses[j]):
                found[k] = (float(losses[j]), columns[:, [index[t] for t in sets[k]]],
                            weights[j], float(intercepts[j]))
        return found

    def _constant_derivatives(self, jobs: Sequence[tuple[Sequence[Node],
                                                         Sequence[tuple[int, tuple[int, ...]]]]]
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
            values = evaluate_terms(trees, self.features)
            derivative = (values[0::2] - values[1::2]) / (2.0 * np.asarray(steps)[:, None])
        mapped = np.hstack([map_rows(m, derivative) for m in self.row_maps])
        found: list[np.ndarray | None] = []
        start = 0
        for _, places in jobs:
            block = mapped[start:start + len(places)]
            start += len(places)
            found.append(block.T.copy() if np.isfinite(block).all() else None)
        return found

    def rounded(self, individual: Individual) -> Individual:
        """Constants inside terms at the fewest significant digits that keep the training loss
        within ``rounding_tolerance`` (relative)."""
        best = individual
        limit = individual.train_loss + self.options.rounding_tolerance * abs(
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
                for candidate in self.individuals(variants):
                    if candidate is not None and candidate.train_loss <= limit:
                        best = candidate
                        break
            k += 1
        return best

    # the loop ----------------------------------------------------------------------------------

    def evolve(self, seeds: Sequence[Sequence[sympy.Expr]]) -> EvolutionResult:
        options = self.options
        started = time.perf_counter()
        population = self._initial(seeds)
        archive: dict[int, Individual] = {}
        self._archive(archive, population)
        stale, generation, stopped = 0, 0, "generations"
        for generation in range(1, options.generations + 1):
            if options.time_limit is not None and \
                    time.perf_counter() - started > options.time_limit:
                stopped, generation = "time limit", generation - 1
                break
            _rank(population)
            proposals = [self.offspring(self._tournament(population),
                                        self._tournament(population))
                         for _ in range(options.population)]
            children = [child for child in self.individuals(proposals)
                        if child is not None and math.isfinite(child.loss)]
            for member in sorted(archive.values(), key=lambda i: i.loss):
                if member.key not in self.merged_keys and len(member.terms) >= 2:
                    self.merged_keys.add(member.key)
                    children.extend(self.merged(member))
                    break
            ranked = sorted(children, key=lambda c: c.loss)
            promising = [c for c in ranked if constants_in(c) and _is_new_front_point(
                archive, c, self.floor, self.resolution)]
            children.extend(self.tune(c) for c in promising[:options.tune_per_generation])
            children.extend(self.refine_all(self._new_shapes(ranked),
                                            options.refine_iterations))
            population = _select(_unique([*population, *children]), options.population)
            if self._archive(archive, population):
                stale = 0
            else:
                stale += 1
            if options.progress is not None and (generation % 10 == 0 or generation == 1):
                best = min(archive.values(), key=lambda i: i.loss)
                options.progress(
                    f"evolve: generation {generation}, archive {len(archive)} models, best "
                    f"validation loss {best.loss:.4f}, {self.evaluations} terms evaluated, "
                    f"{time.perf_counter() - started:.1f} s")
            if stale >= options.patience:
                stopped = f"no improvement in {options.patience} generations"
                break
        ordered = sorted(archive.values(), key=lambda i: i.complexity)
        final = [self.rounded(i) for i in self.refine_all([self.thresholds(i)
                                                           for i in ordered])]
        symbols = [formula.symbol(n) for n in self.names]
        term_sets = []
        for individual in final:
            exprs = _simplified_terms(individual.terms, symbols)
            if exprs not in term_sets:
                term_sets.append(exprs)
        return EvolutionResult(term_sets, generation, self.evaluations,
                               time.perf_counter() - started, stopped, self.candidates, final,
                               self.constant_fits)

    def univariate(self, per_feature: int = 8) -> list[Individual]:
        """Each feature's best ``per_feature`` univariate shapes as one-term individuals, their
        constants fitted: ``u(c*v(x) + d)`` for ``v`` one of ``x, x**2, abs(x), sqrt(x),
        log(x), 1/x`` and ``u`` one of ``exp, tanh, sin`` (scale and shift inside matter),
        ``log, sqrt, abs`` (a shift matters), or none — the forms rewards are built from
        (a Gaussian bonus ``exp(-c*d**2)``, a saturating ``tanh``), few of which one random
        change at a time reaches: a dictionary in the manner of FFX (McConaghy 2011) with its
        inner constants fitted by ``refine``, all features' shapes in one run."""
        shapes = [(f, shape) for f in range(len(self.names)) for shape in self._shapes_of(f)]
        starts = [(f, start) for (f, _), start in
                  zip(shapes, self.individuals([[s] for _, s in shapes]), strict=True)
                  if start is not None and math.isfinite(start.loss)]
        self.refined_shapes.update(set_key([skeleton(t) for t in start.terms])
                                   for _, start in starts)
        refined = self.refine_all([start for _, start in starts])
        found: list[Individual] = []
        for feature in range(len(self.names)):
            mine = sorted((i for (f, _), i in zip(starts, refined, strict=True)
                           if f == feature and math.isfinite(i.loss)), key=lambda i: i.loss)
            found.extend(mine[:per_feature])
        return found

    def _shapes_of(self, feature: int) -> list[Node]:
        """The univariate shapes of one feature, their constants started where the inner
        values are centred and scaled."""
        x: Node = (FEATURE, float(feature))
        inners = [x] + [(op, 0.0, x) for op in (SQUARE, ABS, SQRT, LOG) if op in self.unary]
        if DIV in self.binary:
            inners.append((DIV, 0.0, (CONST, 1.0), x))
        scaled = MUL in self.binary and ADD in self.binary
        shapes: list[Node] = []
        with np.errstate(all="ignore"):
            values = evaluate_terms(inners, self.features)
        for inner, column in zip(inners, values, strict=True):
            if not np.isfinite(column).all() or np.ptp(column) <= 0:
                continue
            shapes.append(inner)
            scale, centre = 1.0 / float(np.std(column)), float(np.median(column))
            if scaled and EXP in self.unary:
                shapes.extend((EXP, 0.0, (MUL, 0.0, (CONST, sign * scale), inner))
                              for sign in (-1.0, 1.0))
            if scaled:
                shapes.extend((op, 0.0, (ADD, 0.0, (MUL, 0.0, (CONST, scale), inner),
                                         (CONST, -scale * centre)))
                              for op in (TANH, SIN) if op in self.unary)
            if ADD in self.binary:
                shapes.extend((op, 0.0, (ADD, 0.0, inner, (CONST, shift)))
                              for op, shift in ((LOG, 1.0 - float(column.min())),
                                                (SQRT, 1.0 - float(column.min())),
                                                (ABS, -centre))
                              if op in self.unary)
        return shapes

    def _initial(self, seeds: Sequence[Sequence[sympy.Expr]]) -> list[Individual]:
        population: list[Individual] = self.univariate()
        for exprs in seeds:
            terms = []
            for expr in exprs:
                try:
                    terms.append(from_sympy(expr, self.names))
                except Unsupported:
                    continue
            seeded = self.individual(terms)
            if seeded is not None:
                population.append(seeded)
        attempts = 0
        while len(population) < self.options.population and \
                attempts < 20 * self.options.population:
            attempts += 1
            count = int(self.rng.integers(1, min(3, self.options.max_terms) + 1))
            terms = [canonical(self.tree(int(self.rng.integers(1, 4)))) for _ in range(count)]
            individual = self.individual([t for t in terms if self.admissible(t)])
            if individual is not None and math.isfinite(individual.loss):
                population.append(individual)
        return _unique(population)

    def _tournament(self, population: list[Individual]) -> Individual:
        a, b = (population[int(k)] for k in self.rng.integers(len(population), size=2))
        return a if (a.rank, -a.crowding) <= (b.rank, -b.crowding) else b

    def _archive(self, archive: dict[int, Individual], population: list[Individual]) -> bool:
        """Keep the lowest validation loss at each complexity, dominated entries dropped;
        whether the archive improved by more than a relative 1e-6."""
        improved = False
        for individual in population:
            held = archive.get(individual.complexity)
            if held is None or individual.loss < held.loss - 1e-6 * abs(held.loss):
                improved = improved or _is_new_front_point(archive, individual, self.floor,
                                                               self.resolution)
                archive[individual.complexity] = individual
        lowest = math.inf
        for complexity in sorted(archive):
            if archive[complexity].loss >= lowest:
                del archive[complexity]
            else:
                lowest = archive[complexity].loss
        return improved


@dataclass
class _Refinement:
    """One individual's Gauss–Newton run: its terms with constants at ``places``, the fit at
    them, the damping and the step being tried."""

    terms: list[Node]
    places: list[tuple[int, tuple[int, ...]]]
    fit: tuple[float, np.ndarray, np.ndarray, float] | None = None
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

    def take(self, fit: tuple[float, np.ndarray, np.ndarray, float] | None) -> bool:
        """Accept the trial if it lowers the loss; else halve the step. Whether this run is
        done trying for now."""
        loss = self.fit[0]
        if fit is not None and fit[0] < loss - _REFINED * abs(loss):
            self.terms, self.fit, self.improved = self.trial(), fit, True
            self.damping = max(self.damping / 10, 1e-9)
            return True
        self.step = self.step / 2
        return not self._promising(loss)


def _is_new_front_point(archive: dict[int, Individual], individual: Individual,
                        floor: float, resolution: float) -> bool:
    """Whether ``individual`` beats every archived model at most as complex by more than
    ``_IMPROVEMENT`` of its loss above ``floor`` (the labels' own entropy for soft labels, which
    no model can go below) and by more than ``resolution``: smaller gains, which a long run
    keeps finding by fitting the validation share's noise or by polishing a model that already
    reproduces the labels, do not postpone the early stop."""
    excess = individual.loss - floor
    return all(held.loss - floor > excess * (1 + _IMPROVEMENT) + resolution
               for c, held in archive.items() if c <= individual.complexity)


def _ratio(first_weight: float, second_weight: float) -> float:
    """The second fitted weight over the first, or 1 where that is not a usable number."""
    ratio = second_weight / first_weight if first_weight != 0 else 1.0
    return ratio if math.isfinite(ratio) and ratio != 0 else 1.0


def constants_in(individual: Individual) -> bool:
    return any(constants(t) for t in individual.terms)


def _unique(population: list[Individual]) -> list[Individual]:
    seen: dict[tuple, Individual] = {}
    for individual in population:
        seen.setdefault(individual.key, individual)
    return list(seen.values())


def _rank(population: list[Individual]) -> None:
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
        rank = 0
        while rank < len(fronts):
            complexity, loss = lowest[rank]
            dominated = complexity < individual.complexity or (
                complexity == individual.complexity and loss < individual.loss)
            if not dominated:
                break
            rank += 1
        if rank == len(fronts):
            fronts.append([])
            lowest.append((individual.complexity, individual.loss))
        fronts[rank].append(i)
        if individual.complexity < lowest[rank][0]:
            lowest[rank] = (individual.complexity, individual.loss)
        individual.rank = rank
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


def _select(population: list[Individual], count: int) -> list[Individual]:
    _rank(population)
    ordered = sorted(population, key=lambda i: (i.rank, -i.crowding, i.loss, i.complexity))
    return ordered[:count]


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


def map_rows(matrix: sp.csc_matrix, values: np.ndarray) -> np.ndarray:
    """``(matrix @ values.T).T``: each row of ``values`` (a term over the transitions) mapped to
    the objective's rows by its (rows, N) row map, held in CSC form."""
    return _map_rows(matrix.indptr, matrix.indices, matrix.data, values, matrix.shape[0])


@numba.njit(parallel=True, cache=True)
def _map_rows(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, values: np.ndarray,
              n_rows: int) -> np.ndarray:  # pragma: no cover - numba
    """``map_rows`` by columns of the map: each transition's value is read once, in order, and
    added to the (few) rows it enters, for four terms at a time. Each output sums its
    transitions in increasing order, as a row-wise product over sorted indices would."""
    n_terms = values.shape[0]
    out = np.zeros((n_terms, n_rows))
    for group in numba.prange((n_terms + 3) // 4):
        lo = 4 * group
        if lo + 4 <= n_terms:
            for j in range(indptr.shape[0] - 1):
                v0, v1 = values[lo, j], values[lo + 1, j]
                v2, v3 = values[lo + 2, j], values[lo + 3, j]
                for k in range(indptr[j], indptr[j + 1]):
                    row, w = indices[k], data[k]
                    out[lo, row] += w * v0
                    out[lo + 1, row] += w * v1
                    out[lo + 2, row] += w * v2
                    out[lo + 3, row] += w * v3
        else:
            for t in range(lo, n_terms):
                for j in range(indptr.shape[0] - 1):
                    v = values[t, j]
                    for k in range(indptr[j], indptr[j + 1]):
                        out[t, indices[k]] += data[k] * v
    return out


@numba.njit(parallel=True, cache=True)
def _screen(values: np.ndarray, bulk_rows: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - numba
    """For each row of ``values`` (a term): whether it is finite and below 1e150 everywhere,
    and its tail ratio, the largest deviation from the median over the 99th percentile of
    deviations. The median and percentile are taken on the ``bulk_rows`` (a fixed sample: the
    bulk needs no more rows to be known), the largest deviation over every row."""
    finite = np.zeros(values.shape[0], dtype=np.bool_)
    ratios = np.zeros(values.shape[0])
    for t in numba.prange(values.shape[0]):
        row = values[t]
        low, high = np.inf, -np.inf
        for i in range(row.shape[0]):
            low = min(low, row[i])
            high = max(high, row[i])
        # NaN fails every comparison, so it leaves low and high as they were: count it apart.
        finite[t] = low > -1e150 and high < 1e150 and not np.isnan(row.sum())
        if not finite[t]:
            continue
        bulk = row[bulk_rows]
        median = _quantile(bulk, 0.5)
        spread = _quantile(np.abs(bulk - median), 0.99)
        largest = max(high - median, median - low)
        ratios[t] = largest / spread if spread > 0 else 0.0
    return finite, ratios


@numba.njit(cache=True)
def _quantile(values: np.ndarray, q: float) -> float:  # pragma: no cover - numba
    """numpy's default (linear) quantile by selection, not by sorting."""
    position = q * (values.shape[0] - 1)
    k = int(position)
    part = np.partition(values, k)
    if k + 1 >= values.shape[0]:
        return part[k]
    upper = part[k + 1:].min()
    return part[k] + (position - k) * (upper - part[k])
