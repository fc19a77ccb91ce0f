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
engine's front. The validation loss is two-fold: the objective's units (pairs, episodes or
transitions, kept whole) are split in halves, weights fitted on each are scored on the other.
A single held-out share of 1000 pairs is too noisy to select on: formulas that fit its noise
beat the true reward there. The learner then cross-validates what the archive proposes, exactly
as it does for the sparse engine's proposals.

Trees are nested tuples ``(opcode, value, *children)``; for evaluation they are flattened to
postfix arrays that a numba stack machine interprets over blocks of rows, every new term of a
generation in one parallel call. Each output value is computed by one thread from the inputs
alone, so results do not depend on thread scheduling; with the same seed and a budget of
generations (not of seconds) a run is reproducible bit for bit.

Operators are protected by rejection, not by substitution: gplearn's ``x/0 = 1`` makes a reported
``x/y`` differ from the function that was scored. Here a term that is not finite on every row of
the data is discarded, so a formula always means what it says. Comparisons and min/max carry a
NaN through (the formula language's ``x < nan`` is 0) so that no NaN inside a term is hidden: sympy
simplifies ``x/x`` to 1 in the reported formula, and ``x < x/x`` must not have been scored as 0
where ``x = 0``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numba
import numpy as np
import sympy

from symreward import formula
from symreward.objectives import LinearProblem, Objective
from symreward.search.library import round_significant
from symreward.search.sparse import (
    REFIT_RIDGE,
    LinearFit,
    column_scale,
    refit,
    squared_solve,
)

Node = tuple  # (opcode, value, *children); value is a feature index or a constant
Progress = Callable[[str], None]

FEATURE, CONST = 0, 1
ADD, SUB, MUL, DIV, MAX, MIN, LT, GT = 2, 3, 4, 5, 6, 7, 8, 9
SQUARE, CUBE, SQRT, ABS, EXP, LOG, SIN, COS, TANH = 10, 11, 12, 13, 14, 15, 16, 17, 18

# Operator name (as given in ``operators``) → opcode.
OPERATORS = {"+": ADD, "-": SUB, "*": MUL, "/": DIV, "max": MAX, "min": MIN, "<": LT, ">": GT,
             "square": SQUARE, "cube": CUBE, "sqrt": SQRT, "abs": ABS, "exp": EXP, "log": LOG,
             "sin": SIN, "cos": COS, "tanh": TANH}
DEFAULT_OPERATORS = ("+", "-", "*", "/", "square", "cube", "sqrt", "abs", "exp", "log", "sin",
                     "cos", "tanh", "<", ">")
_BINARY = frozenset({ADD, SUB, MUL, DIV, MAX, MIN, LT, GT})
_COMMUTATIVE = frozenset({ADD, MUL, MAX, MIN})
# The complexity an operator adds, matching ``formula.OPERATOR_WEIGHTS`` on the printed form.
_WEIGHT = {FEATURE: 1, CONST: 1, ADD: 1, SUB: 1, MUL: 1, DIV: 1, MAX: 1, MIN: 1, LT: 1, GT: 1,
           SQUARE: 2, CUBE: 2, SQRT: 2, ABS: 1, EXP: 2, LOG: 2, SIN: 2, COS: 2, TANH: 2}

_BLOCK = 128     # rows per work item: long enough to amortise dispatch, short enough for cache
_MAX_STACK = 16  # trees are limited to depth ``max_depth`` <= 12, so the stack never overflows
_MAX_DEPTH_LIMIT = 12
_IMPROVEMENT = 1e-3
_TAIL_RATIO = 50.0


@numba.njit(parallel=True, cache=True, error_model="numpy")
def _run_programs(codes: np.ndarray, values: np.ndarray, starts: np.ndarray,
                  features: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - numba
    n_programs = starts.shape[0] - 1
    n_rows = features.shape[1]
    n_blocks = (n_rows + _BLOCK - 1) // _BLOCK
    for job in numba.prange(n_programs * n_blocks):
        program = job // n_blocks
        lo = (job % n_blocks) * _BLOCK
        m = min(n_rows, lo + _BLOCK) - lo
        stack = np.empty((_MAX_STACK, _BLOCK))
        top = -1
        for k in range(starts[program], starts[program + 1]):
            op = codes[k]
            if op == 0:
                top += 1
                column = int(values[k])
                for i in range(m):
                    stack[top, i] = features[column, lo + i]
            elif op == 1:
                top += 1
                constant = values[k]
                for i in range(m):
                    stack[top, i] = constant
            elif op < 10:
                top -= 1
                a = stack[top]
                b = stack[top + 1]
                if op == 2:
                    for i in range(m):
                        a[i] = a[i] + b[i]
                elif op == 3:
                    for i in range(m):
                        a[i] = a[i] - b[i]
                elif op == 4:
                    for i in range(m):
                        a[i] = a[i] * b[i]
                elif op == 5:
                    for i in range(m):
                        a[i] = a[i] / b[i]
                elif op == 6:
                    for i in range(m):
                        a[i] = max(a[i], b[i]) if a[i] == a[i] and b[i] == b[i] else np.nan
                elif op == 7:
                    for i in range(m):
                        a[i] = min(a[i], b[i]) if a[i] == a[i] and b[i] == b[i] else np.nan
                elif op == 8:
                    for i in range(m):
                        a[i] = (1.0 if a[i] < b[i] else 0.0) if a[i] == a[i] and b[i] == b[i] \
                            else np.nan
                else:
                    for i in range(m):
                        a[i] = (1.0 if a[i] > b[i] else 0.0) if a[i] == a[i] and b[i] == b[i] \
                            else np.nan
            else:
                a = stack[top]
                if op == 10:
                    for i in range(m):
                        a[i] = a[i] * a[i]
                elif op == 11:
                    for i in range(m):
                        a[i] = a[i] * a[i] * a[i]
                elif op == 12:
                    for i in range(m):
                        a[i] = np.sqrt(a[i])
                elif op == 13:
                    for i in range(m):
                        a[i] = abs(a[i])
                elif op == 14:
                    for i in range(m):
                        a[i] = np.exp(a[i])
                elif op == 15:
                    for i in range(m):
                        a[i] = np.log(a[i])
                elif op == 16:
                    for i in range(m):
                        a[i] = np.sin(a[i])
                elif op == 17:
                    for i in range(m):
                        a[i] = np.cos(a[i])
                else:
                    for i in range(m):
                        a[i] = np.tanh(a[i])
        for i in range(m):
            out[program, lo + i] = stack[0, i]


# -- trees ---------------------------------------------------------------------------------

def size(node: Node) -> int:
    return 1 + sum(size(c) for c in node[2:])


def depth(node: Node) -> int:
    return 1 + max((depth(c) for c in node[2:]), default=0)


def complexity(node: Node) -> int:
    """Weighted node count, the same scale as ``formula.complexity`` of the printed term."""
    return _WEIGHT[node[0]] + sum(complexity(c) for c in node[2:])


def set_complexity(terms: Sequence[Node]) -> int:
    """Complexity of ``w1*t1 + ... + wk*tk``: each weight adds a leaf and a product, each sum
    an addition, as ``formula.complexity`` counts them."""
    if not terms:
        return 0
    return sum(complexity(t) for t in terms) + 3 * len(terms) - 1


def _paths(node: Node, prefix: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    found = [prefix]
    for k, child in enumerate(node[2:]):
        found.extend(_paths(child, (*prefix, k)))
    return found


def _get(node: Node, path: tuple[int, ...]) -> Node:
    for k in path:
        node = node[2 + k]
    return node


def _replace(node: Node, path: tuple[int, ...], new: Node) -> Node:
    if not path:
        return new
    children = list(node[2:])
    children[path[0]] = _replace(children[path[0]], path[1:], new)
    return (node[0], node[1], *children)


def canonical(node: Node) -> Node:
    """Children of commutative operators in a fixed order, constant subtrees folded, so that
    equal terms share one cache entry. A constant subtree with no finite value (``-2.5/0``)
    folds to NaN, which makes its whole term invalid: sympy would fold it differently."""
    children = [canonical(c) for c in node[2:]]
    op = node[0]
    if children and all(c[0] == CONST for c in children):
        folded = _fold(op, [c[1] for c in children])
        return (CONST, folded if math.isfinite(folded) else math.nan)
    if op in _COMMUTATIVE:
        children.sort(key=_order_key)
    if op == SQUARE and children[0][0] == ABS:
        # |x|**2 == x**2 (and |x**2| below), so these meet their simpler form in the cache
        return (SQUARE, 0.0, children[0][2])
    if op == ABS and children[0][0] == SQUARE:
        return children[0]
    if op in (FEATURE, CONST):
        return (op, float(node[1]))
    return (op, 0.0, *children)


def _order_key(node: Node) -> tuple:
    return (node[0], node[1], tuple(_order_key(c) for c in node[2:]))


def _set_key(terms: Sequence[Node]) -> tuple:
    """One key for a set of terms, whatever their order."""
    return tuple(sorted(_order_key(t) for t in terms))


def _fold(op: int, args: list[float]) -> float:
    features = np.asarray([[0.0]])
    codes, values, starts = _postfix([(op, 0.0, *[(CONST, a) for a in args])])
    out = np.empty((1, 1))
    with np.errstate(all="ignore"):
        _run_programs(codes, values, starts, features, out)
    return float(out[0, 0])


def _postfix(terms: Sequence[Node]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    codes: list[int] = []
    values: list[float] = []
    starts = [0]

    def emit(node: Node) -> None:
        for child in node[2:]:
            emit(child)
        codes.append(node[0])
        values.append(float(node[1]))

    for term in terms:
        emit(term)
        starts.append(len(codes))
    return (np.asarray(codes, dtype=np.int8), np.asarray(values, dtype=np.float64),
            np.asarray(starts, dtype=np.int64))


def evaluate_terms(terms: Sequence[Node], features: np.ndarray) -> np.ndarray:
    """Values of ``terms`` on the (F, N) feature array, as a (len(terms), N) array."""
    features = np.ascontiguousarray(features, dtype=np.float64)
    out = np.empty((len(terms), features.shape[1]))
    if terms:
        codes, values, starts = _postfix(terms)
        _run_programs(codes, values, starts, features, out)
    return out


def to_sympy(node: Node, symbols: Sequence[sympy.Symbol]) -> sympy.Expr:
    op = node[0]
    if op == FEATURE:
        return symbols[int(node[1])]
    if op == CONST:
        value = node[1]
        return sympy.Integer(int(value)) if float(value).is_integer() else sympy.Float(value)
    args = [to_sympy(c, symbols) for c in node[2:]]
    try:
        return _SYMPY[op](*args)
    except (TypeError, ValueError):
        # sympy refuses e.g. max(-1, 0/0): a constant subtree with no real value, whose term
        # is never finite on data and so is never reported.
        raise Unsupported(f"no real value: {_SYMPY[op].__name__}{tuple(args)}") from None


_SYMPY: dict[int, Callable[..., sympy.Expr]] = {
    ADD: lambda a, b: a + b, SUB: lambda a, b: a - b, MUL: lambda a, b: a * b,
    DIV: lambda a, b: a / b,
    MAX: lambda a, b: sympy.Max(a, b, evaluate=a.is_comparable and b.is_comparable),
    MIN: lambda a, b: sympy.Min(a, b, evaluate=a.is_comparable and b.is_comparable),
    LT: formula.Less, GT: formula.Greater,
    SQUARE: lambda a: a**2, CUBE: lambda a: a**3, SQRT: sympy.sqrt, ABS: sympy.Abs,
    EXP: sympy.exp, LOG: sympy.log, SIN: sympy.sin, COS: sympy.cos, TANH: sympy.tanh,
}


class Unsupported(ValueError):
    """A sympy expression with an operator the engine's trees do not have."""


def from_sympy(expr: sympy.Expr, names: Sequence[str]) -> Node:
    """The tree of a formula-language expression over the features ``names``."""
    index = {formula.symbol(n): k for k, n in enumerate(names)}
    return canonical(_from_sympy(expr, index))


def _from_sympy(expr: sympy.Expr, index: dict[sympy.Symbol, int]) -> Node:
    if expr in index:
        return (FEATURE, float(index[expr]))
    if expr.is_Number:
        return (CONST, float(expr))
    if isinstance(expr, sympy.Add | sympy.Mul | sympy.Min | sympy.Max):
        op = {sympy.Add: ADD, sympy.Mul: MUL, sympy.Min: MIN, sympy.Max: MAX}[type(expr)]
        if op == MUL:
            numerators = [a for a in expr.args if not _is_reciprocal(a)]
            denominators = [1 / a for a in expr.args if _is_reciprocal(a)]
            if denominators:
                top = _chain(MUL, [_from_sympy(a, index) for a in numerators]) \
                    if numerators else (CONST, 1.0)
                bottom = _chain(MUL, [_from_sympy(a, index) for a in denominators])
                return (DIV, 0.0, top, bottom)
        return _chain(op, [_from_sympy(a, index) for a in expr.args])
    if isinstance(expr, sympy.Pow):
        base, exponent = expr.args
        if _is_reciprocal(expr):
            return (DIV, 0.0, (CONST, 1.0), _from_sympy(1 / expr, index))
        inner = _from_sympy(base, index)
        if exponent == sympy.Rational(1, 2):
            return (SQRT, 0.0, inner)
        if exponent == sympy.Rational(3, 2):
            return (MUL, 0.0, inner, (SQRT, 0.0, inner))
        if exponent.is_Integer and 2 <= int(exponent) <= 6:
            power = int(exponent)
            return _power_tree(inner, power)
        raise Unsupported(f"power {exponent}")
    unary = {sympy.Abs: ABS, sympy.exp: EXP, sympy.log: LOG, sympy.sin: SIN, sympy.cos: COS,
             sympy.tanh: TANH}
    for kind, op in unary.items():
        if isinstance(expr, kind):
            return (op, 0.0, _from_sympy(expr.args[0], index))
    if isinstance(expr, formula.Less | formula.Greater):
        op = LT if isinstance(expr, formula.Less) else GT
        return (op, 0.0, *[_from_sympy(a, index) for a in expr.args])
    raise Unsupported(type(expr).__name__)


def _power_tree(inner: Node, power: int) -> Node:
    if power == 2:
        return (SQUARE, 0.0, inner)
    if power == 3:
        return (CUBE, 0.0, inner)
    if power == 4:
        return (SQUARE, 0.0, (SQUARE, 0.0, inner))
    if power == 6:
        return (SQUARE, 0.0, (CUBE, 0.0, inner))
    return (MUL, 0.0, _power_tree(inner, power - 2), (SQUARE, 0.0, inner))


def _chain(op: int, nodes: list[Node]) -> Node:
    node = nodes[0]
    for other in nodes[1:]:
        node = (op, 0.0, node, other)
    return node


def _is_reciprocal(expr: sympy.Expr) -> bool:
    return isinstance(expr, sympy.Pow) and expr.exp.is_Number and expr.exp.is_negative


def constants(node: Node) -> list[tuple[int, ...]]:
    """Paths of the constants in ``node``."""
    return [p for p in _paths(node) if _get(node, p)[0] == CONST]


# -- weights -------------------------------------------------------------------------------

def fit_weights(problem: LinearProblem) -> LinearFit:
    """The weights of all of ``problem``'s columns under its loss (debiased, on the scale of
    ``refit``): Newton's method compiled for the Bradley–Terry loss, a linear solve for squared
    error, and damped Newton steps for the other losses that are sums over rows, whose Hessian
    in the row scores is diagonal and is taken by central differences of the row gradient. The
    non-separable PU risk (with a class prior) uses ``refit``."""
    k = problem.X.shape[1]
    support = tuple(range(k))
    if problem.kind == "pu" and problem.class_prior is not None:
        return refit(problem, support)
    scale = column_scale(problem)
    X = problem.X / scale
    if problem.fit_intercept:
        X = np.column_stack([X, np.ones(problem.n_rows)])
    penalty = np.full(X.shape[1], REFIT_RIDGE)
    if problem.fit_intercept:
        penalty[-1] = 0.0
    if problem.kind == "bernoulli" and problem.noise == 0.0:
        theta = _bradley_terry_newton(np.ascontiguousarray(X), problem.target, problem.offset,
                                      problem.weight, penalty)
    elif problem.kind == "squared":
        theta = squared_solve(X, problem, penalty)
    else:
        theta = _separable_newton(problem, X, penalty)
    coef = theta[:k] / scale
    intercept = float(theta[k]) if problem.fit_intercept else 0.0
    return LinearFit(support, coef, intercept)


@numba.njit(cache=True, error_model="numpy")
def _bradley_terry_newton(X: np.ndarray, target: np.ndarray, offset: np.ndarray,
                          weight: np.ndarray, penalty: np.ndarray
                          ) -> np.ndarray:  # pragma: no cover - numba
    n, k = X.shape
    total = weight.sum()
    theta = np.zeros(k)
    z = offset.copy()

    def loss_at(z: np.ndarray, theta: np.ndarray) -> float:
        value = 0.0
        for i in range(n):
            value += weight[i] * (np.log1p(np.exp(-abs(z[i]))) + max(-z[i], 0.0)
                                  + (1.0 - target[i]) * z[i])
        return value / total + (penalty * theta * theta).sum()

    loss = loss_at(z, theta)
    for _ in range(100):
        gradient = 2.0 * penalty * theta
        hessian = np.diag(2.0 * penalty + 1e-12)
        for i in range(n):
            e = np.exp(-abs(z[i]))
            s = (1.0 if z[i] >= 0 else e) / (1.0 + e)
            g = weight[i] * (s - target[i]) / total
            h = weight[i] * s * (1.0 - s) / total
            for a in range(k):
                gradient[a] += g * X[i, a]
                for b in range(a + 1):
                    hessian[a, b] += h * X[i, a] * X[i, b]
        for a in range(k):
            for b in range(a):
                hessian[b, a] = hessian[a, b]
        direction = np.linalg.solve(hessian, gradient)
        decrease = (gradient * direction).sum()
        rate = 1.0
        while True:
            trial = theta - rate * direction
            trial_z = X @ trial + offset
            trial_loss = loss_at(trial_z, trial)
            if trial_loss <= loss - 1e-4 * rate * decrease or rate < 1e-8:
                break
            rate *= 0.5
        if rate < 1e-8:
            break
        improvement = loss - trial_loss
        theta, z, loss = trial, trial_z, trial_loss
        if improvement <= 1e-13 * max(abs(loss), 1e-300):
            break
    return theta


def _separable_newton(problem: LinearProblem, X: np.ndarray, penalty: np.ndarray) -> np.ndarray:
    theta = np.zeros(X.shape[1])

    def total(theta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        z = X @ theta + problem.offset
        loss, grad_z = problem.loss_and_grad_z(z)
        return loss + float(penalty @ theta**2), grad_z, z

    loss, grad_z, z = total(theta)
    for _ in range(50):
        step = 1e-4 * np.maximum(1.0, np.abs(z))
        hessian_z = (problem.loss_and_grad_z(z + step)[1]
                     - problem.loss_and_grad_z(z - step)[1]) / (2 * step)
        gradient = X.T @ grad_z + 2 * penalty * theta
        hessian = (X.T * np.maximum(hessian_z, 0.0)) @ X + np.diag(2 * penalty + 1e-12)
        direction = np.linalg.lstsq(hessian, gradient, rcond=None)[0]
        rate = 1.0
        while rate > 1e-8:
            trial = theta - rate * direction
            trial_loss, trial_grad, trial_z = total(trial)
            if trial_loss <= loss - 1e-4 * rate * float(gradient @ direction):
                break
            rate *= 0.5
        else:
            break
        improvement = loss - trial_loss
        theta, loss, grad_z, z = trial, trial_loss, trial_grad, trial_z
        if improvement <= 1e-13 * max(abs(loss), 1e-300):
            break
    return theta


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
        return _set_key(self.terms)


@dataclass
class EvolutionResult:
    """What a run found: term sets of the archive (simplest first) and how it ended.
    ``evaluations`` counts distinct terms run by the interpreter, ``candidates`` the term sets
    whose weights were fitted and scored."""

    term_sets: list[list[sympy.Expr]]
    generations: int
    evaluations: int
    seconds: float
    stopped: str
    candidates: int = 0
    archive: list[Individual] = field(default_factory=list, repr=False)


@dataclass
class EvolutionarySearch:
    """Options (as in scikit-learn, set here; ``run`` does the work).

    ``population`` individuals per generation, at most ``generations`` generations or
    ``time_limit`` seconds, stopping early after ``patience`` generations without a better
    archive. Terms have at most ``max_size`` nodes and depth ``max_depth``; an individual has at
    most ``max_terms`` terms.
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
    rounding_tolerance: float = 1e-3
    seed: int = 0
    progress: Progress | None = None

    def run(self, objective: Objective, matrix: np.ndarray, names: Sequence[str], *,
            offset: np.ndarray | None = None,
            seeds: Sequence[Sequence[sympy.Expr]] = ()) -> EvolutionResult:
        """Search term sets over the (N, F) feature ``matrix`` whose columns are ``names``."""
        unknown = set(self.operators) - set(OPERATORS)
        if unknown:
            raise ValueError(f"unknown operators {sorted(unknown)} (choose from "
                             f"{', '.join(OPERATORS)})")
        if not 1 <= self.max_depth <= _MAX_DEPTH_LIMIT:
            raise ValueError(f"max_depth must be in 1..{_MAX_DEPTH_LIMIT}, got {self.max_depth}")
        return _Run(self, objective, matrix, names, offset).evolve(seeds)


class _Run:
    """One search: the data, the cache of term columns, the population and the archive."""

    def __init__(self, options: EvolutionarySearch, objective: Objective, matrix: np.ndarray,
                 names: Sequence[str], offset: np.ndarray | None):
        self.options = options
        self.objective = objective
        self.names = list(names)
        self.features = np.ascontiguousarray(matrix.T, dtype=np.float64)
        self.offset = offset
        self.rng = np.random.default_rng(options.seed)
        self.halves = objective.folds(2, options.seed)
        empty = np.zeros((matrix.shape[0], 0))
        self.bases = [objective.problem(empty, offset, half) for half in self.halves]
        rows = sum(base.n_rows for base in self.bases)
        self.floor = sum(base.n_rows / rows * base.loss_floor() for base in self.bases)
        self.quantiles = np.quantile(matrix, np.linspace(0.02, 0.98, 49), axis=0).T
        self.feature_tails = [_tail_ratio(column) for column in self.features]
        self.unary = [OPERATORS[o] for o in options.operators if OPERATORS[o] not in _BINARY]
        self.binary = [OPERATORS[o] for o in options.operators if OPERATORS[o] in _BINARY]
        self.cache: dict[Node, tuple[np.ndarray, np.ndarray] | None] = {}
        self.evaluations = 0
        self.candidates = 0
        self.fits: dict[tuple, Individual | None] = {}
        self.merged_keys: set[tuple] = set()

    # columns and fitness -----------------------------------------------------------------

    def columns(self, terms: Sequence[Node]) -> None:
        """Evaluate, in one kernel call, the terms not in the cache, and store their train and
        validation columns (``None`` for a term that is not finite or is constant)."""
        new = list(dict.fromkeys(t for t in terms if t not in self.cache))
        if not new:
            return
        if len(self.cache) > 200_000:
            for key in list(self.cache)[: len(self.cache) // 2]:
                del self.cache[key]
        with np.errstate(all="ignore"):
            values = evaluate_terms(new, self.features)
        self.evaluations += len(new)
        finite = np.isfinite(values).all(axis=1) & (np.abs(values).max(axis=1) < 1e150)
        finite[finite] = [self.tame(term, row) for term, row in
                          zip([t for t, ok in zip(new, finite, strict=True) if ok],
                              values[finite], strict=True)]
        if finite.any():
            kept = values[finite].T
            parts = [self.objective.problem(kept, None, half).X for half in self.halves]
        k = 0
        for term, ok in zip(new, finite, strict=True):
            if not ok:
                self.cache[term] = None
                continue
            column = np.concatenate([parts[0][:, k], parts[1][:, k]])
            spread = np.ptp(column) if len(column) else 0.0
            varies = spread > 1e-12 * max(float(np.abs(column).max(initial=0.0)), 1e-300) or (
                not self.bases[0].fit_intercept and np.abs(column).max(initial=0.0) > 0)
            self.cache[term] = (parts[0][:, k], parts[1][:, k]) if varies else None
            k += 1

    def tame(self, term: Node, values: np.ndarray) -> bool:
        """Whether a term's extremes stay in proportion to its bulk, as its features' do.

        A term like ``a/dx`` takes values thousands of times its typical size on the few rows
        where ``dx`` is near 0; it can win a few pairs' noise and it behaves wildly off the data.
        Such a term is rejected when its tail ratio (largest deviation from the median over the
        99th percentile of deviations) exceeds ``_TAIL_RATIO`` and twice its features' own.
        """
        ratio = _tail_ratio(values)
        if ratio <= _TAIL_RATIO:
            return True
        used = {int(n[1]) for p in _paths(term) if (n := _get(term, p))[0] == FEATURE}
        return ratio <= 2 * max((self.feature_tails[f] for f in used), default=0.0)

    def individual(self, terms: Sequence[Node]) -> Individual | None:
        terms = tuple(dict.fromkeys(canonical(t) for t in terms))
        key = _set_key(terms)
        if key in self.fits:
            return self.fits[key]
        self.columns(terms)
        usable = tuple(t for t in terms if self.cache.get(t) is not None)
        if len(usable) != len(terms):
            self.fits[key] = None
            return None
        result = self._fitted(usable)
        self.fits[key] = result
        return result

    def _fitted(self, terms: tuple[Node, ...]) -> Individual:
        """Weights fitted on each half and scored on the other: the validation loss is the
        two-fold cross-validated loss, the training loss the mean in-sample loss."""
        problems = [_with_x(base, np.column_stack([self.cache[t][h] for t in terms])
                            if terms else np.zeros((base.n_rows, 0)))
                    for h, base in enumerate(self.bases)]
        self.candidates += 1
        train_loss = loss = 0.0
        weights = np.zeros(len(terms))
        rows = sum(p.n_rows for p in problems)
        for h, problem in enumerate(problems):
            fit = fit_weights(problem)
            other = problems[1 - h]
            train_loss += problem.n_rows / rows * problem.loss(fit.coef, fit.intercept)
            loss += other.n_rows / rows * other.loss(fit.coef, fit.intercept)
            weights += problem.n_rows / rows * fit.coef
        if not math.isfinite(loss):
            loss = math.inf
        return Individual(terms, train_loss, loss, set_complexity(terms),
                          tuple(float(w) for w in weights))

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
        paths = _paths(term)
        path = paths[int(self.rng.integers(len(paths)))]
        node = _get(term, path)
        choice = self.rng.random()
        if node[0] == CONST and choice < 0.5:
            factor = 1.0 + self.rng.normal(0.0, 0.2)
            new: Node = (CONST, float(node[1] * factor + self.rng.normal(0.0, 0.05)))
        elif choice < 0.3 and node[0] in _BINARY:
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
        return _replace(term, path, new)

    def _scaled(self, node: Node, always: bool = False) -> Node:
        """``node`` times a constant of either sign (always, or half the time): inside a
        nonlinearity the scale and sign matter (``exp(-0.5*theta**2)``), and the fit's weights
        cannot supply them."""
        if MUL not in self.binary or not (always or self.rng.random() < 0.5):
            return node
        scale = self.rng.choice([-1.0, 1.0]) * self.rng.lognormal(0.0, 0.7)
        return (MUL, 0.0, (CONST, float(round_significant(scale, 2))), node)

    def crossover_terms(self, a: Node, b: Node) -> Node:
        paths_a, paths_b = _paths(a), _paths(b)
        target = paths_a[int(self.rng.integers(len(paths_a)))]
        donor = _get(b, paths_b[int(self.rng.integers(len(paths_b)))])
        return _replace(a, target, donor)

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
        children = []
        for first in range(len(individual.terms)):
            for second in range(first + 1, len(individual.terms)):
                rest = [t for k, t in enumerate(individual.terms) if k not in (first, second)]
                for joined in self._merges(individual, first, second):
                    joined = canonical(joined)
                    if not self.admissible(joined):
                        continue
                    child = self.individual([*rest, joined])
                    if child is not None and math.isfinite(child.loss):
                        children.append(child)
        return children

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

    def tune(self, individual: Individual, rounds: int = 4) -> Individual:
        """Pattern search on the constants inside terms, each round's trials in one call."""
        best = individual
        places = [(k, p) for k, t in enumerate(best.terms) for p in constants(t)]
        if not places:
            return best
        for k, path in places:
            parent = _get(best.terms[k], path[:-1]) if path else None
            if parent is not None and parent[0] in (LT, GT) and parent[2][0] == FEATURE:
                grid = self.quantiles[int(parent[2][1])][::3]
                best = self._best_of(best, k, path, np.unique(grid))
        step = 0.2
        for round_ in range(rounds):
            for k, path in places:
                if k >= len(best.terms) or path not in constants(best.terms[k]):
                    continue
                value = _get(best.terms[k], path)[1]
                trials = value * (1 + step * np.array([-1.0, -0.5, 0.5, 1.0])) + \
                    step * 0.1 * np.array([-1.0, 0.0, 0.0, 1.0])
                if round_ == 0:
                    # a multiplicative search never crosses zero: exp(2.6*x**2) → exp(-x**2/2)
                    trials = np.append(trials, -value)
                best = self._best_of(best, k, path, trials)
            step *= 0.4
        return best

    def _best_of(self, individual: Individual, k: int, path: tuple[int, ...],
                 trials: np.ndarray) -> Individual:
        variants = []
        for value in trials:
            terms = list(individual.terms)
            terms[k] = _replace(terms[k], path, (CONST, float(value)))
            variants.append(tuple(terms))
        self.columns([t for v in variants for t in v])
        best = individual
        for terms in variants:
            if not all(self.cache.get(t) is not None for t in terms):
                continue
            candidate = self._fitted(terms)
            if candidate.train_loss < best.train_loss - 1e-12:
                best = candidate
        return best

    def rounded(self, individual: Individual) -> Individual:
        """Constants inside terms at the fewest significant digits that keep the training loss
        within ``rounding_tolerance`` (relative)."""
        best = individual
        limit = individual.train_loss + self.options.rounding_tolerance * abs(
            individual.train_loss) + 1e-12
        for k in range(len(best.terms)):
            for path in constants(best.terms[k]):
                value = _get(best.terms[k], path)[1]
                for digits in range(1, 7):
                    terms = list(best.terms)
                    terms[k] = _replace(terms[k], path, (CONST, round_significant(value, digits)))
                    self.columns(terms)
                    if not all(self.cache.get(t) is not None for t in terms):
                        continue
                    candidate = self._fitted(tuple(terms))
                    if candidate.train_loss <= limit:
                        best = candidate
                        break
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
            self.columns([canonical(t) for terms in proposals for t in terms])
            children = [child for terms in proposals
                        if (child := self.individual(terms)) is not None
                        and math.isfinite(child.loss)]
            for member in sorted(archive.values(), key=lambda i: i.loss):
                if member.key not in self.merged_keys and len(member.terms) >= 2:
                    self.merged_keys.add(member.key)
                    children.extend(self.merged(member))
                    break
            promising = [c for c in sorted(children, key=lambda c: c.loss)
                         if constants_in(c) and _is_new_front_point(archive, c, self.floor)]
            children.extend(self.tune(c) for c in promising[:options.tune_per_generation])
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
        final = [self.rounded(self.tune(i)) for i in sorted(archive.values(),
                                                             key=lambda i: i.complexity)]
        symbols = [formula.symbol(n) for n in self.names]
        term_sets = []
        for individual in final:
            exprs = _simplified_terms(individual.terms, symbols)
            if exprs not in term_sets:
                term_sets.append(exprs)
        return EvolutionResult(term_sets, generation, self.evaluations,
                               time.perf_counter() - started, stopped, self.candidates, final)

    def _initial(self, seeds: Sequence[Sequence[sympy.Expr]]) -> list[Individual]:
        population: list[Individual] = []
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
                improved = improved or _is_new_front_point(archive, individual, self.floor)
                archive[individual.complexity] = individual
        lowest = math.inf
        for complexity in sorted(archive):
            if archive[complexity].loss >= lowest:
                del archive[complexity]
            else:
                lowest = archive[complexity].loss
        return improved


def _is_new_front_point(archive: dict[int, Individual], individual: Individual,
                        floor: float) -> bool:
    """Whether ``individual`` beats every archived model at most as complex by more than
    ``_IMPROVEMENT`` of its loss above ``floor`` (the labels' own entropy for soft labels, which
    no model can go below): smaller gains, which a long run keeps finding by fitting the
    validation share's noise, do not postpone the early stop."""
    excess = individual.loss - floor
    return all(held.loss - floor > excess * (1 + _IMPROVEMENT) + 1e-12
               for c, held in archive.items() if c <= individual.complexity)


def _ratio(first_weight: float, second_weight: float) -> float:
    """The second fitted weight over the first, or 1 where that is not a usable number."""
    ratio = second_weight / first_weight if first_weight != 0 else 1.0
    return ratio if math.isfinite(ratio) and ratio != 0 else 1.0


def constants_in(individual: Individual) -> bool:
    return any(constants(t) for t in individual.terms)


def _with_x(base: LinearProblem, X: np.ndarray) -> LinearProblem:
    return LinearProblem(base.kind, X, base.target, base.offset, base.weight, base.fit_intercept,
                         base.noise, base.class_prior)


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


def _tail_ratio(values: np.ndarray) -> float:
    deviation = np.abs(values - np.median(values))
    bulk = np.quantile(deviation, 0.99)
    return float(deviation.max() / bulk) if bulk > 0 else 0.0
