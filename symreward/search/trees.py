"""Expression trees of the evolutionary engine, their array encoding and its interpreter.

Trees are nested tuples ``(opcode, value, *children)``; ``value`` is a feature's index for a
feature leaf, the number for a constant. ``canonical`` orders the children of commutative
operators and folds constant subtrees, so equal terms share one cache entry. For evaluation
the trees of one call become one graph in which equal subtrees are a single node (``_shared``:
arrays of opcodes, values, children and scratch slots), and a numba kernel runs that graph over
blocks of rows, the blocks in parallel. A population shares many subtrees — one of gplearn's,
after 180 generations on the Reacher data, held 5836 nodes in 656 distinct subtrees — and each
is computed once per block. Each output value is computed by one thread from the inputs
alone, in the same operations whatever else the call holds, so results do not depend on thread
scheduling or on which terms are evaluated together.

Comparisons and min/max carry a NaN through (the formula language's ``x < nan`` is 0) so that no
NaN inside a term is hidden: sympy simplifies ``x/x`` to 1 in the reported formula, and
``x < x/x`` must not have been scored as 0 where ``x = 0``. These trees are a kernel detail of
the search; what leaves it is sympy (``to_sympy``), and ``from_sympy`` reads formulas back.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import numba
import numpy as np
import sympy

from symreward import formula
from symreward.kernels import vecmath

Node = tuple  # (opcode, value, *children); value is a feature index or a constant

FEATURE, CONST = 0, 1
ADD, SUB, MUL, DIV, MAX, MIN, LT, GT = 2, 3, 4, 5, 6, 7, 8, 9
SQUARE, CUBE, SQRT, ABS, EXP, LOG, SIN, COS, TANH = 10, 11, 12, 13, 14, 15, 16, 17, 18

# Operator name (as given in ``operators``) → opcode.
OPERATORS = {"+": ADD, "-": SUB, "*": MUL, "/": DIV, "max": MAX, "min": MIN, "<": LT, ">": GT,
             "square": SQUARE, "cube": CUBE, "sqrt": SQRT, "abs": ABS, "exp": EXP, "log": LOG,
             "sin": SIN, "cos": COS, "tanh": TANH}
DEFAULT_OPERATORS = ("+", "-", "*", "/", "square", "cube", "sqrt", "abs", "exp", "log", "sin",
                     "cos", "tanh", "<", ">")
BINARY = frozenset({ADD, SUB, MUL, DIV, MAX, MIN, LT, GT})
_COMMUTATIVE = frozenset({ADD, MUL, MAX, MIN})
# The complexity an operator adds, matching ``formula.OPERATOR_WEIGHTS`` on the printed form.
_WEIGHT = {FEATURE: 1, CONST: 1, ADD: 1, SUB: 1, MUL: 1, DIV: 1, MAX: 1, MIN: 1, LT: 1, GT: 1,
           SQUARE: 2, CUBE: 2, SQRT: 2, ABS: 1, EXP: 2, LOG: 2, SIN: 2, COS: 2, TANH: 2}

_BLOCK = 128  # rows per work item: long enough to amortise dispatch, short enough for cache
MAX_DEPTH_LIMIT = 12


# exp, log, sin, cos and tanh run on a block's rows a vector at a time where the kernels use
# glibc's vector functions (each width divides ``_BLOCK``), as libm otherwise.
_exp_block, _EXP_WIDTH = vecmath.block_math("exp")
_log_block, _LOG_WIDTH = vecmath.block_math("log")
_sin_block, _SIN_WIDTH = vecmath.block_math("sin")
_cos_block, _COS_WIDTH = vecmath.block_math("cos")
_tanh_block, _TANH_WIDTH = vecmath.block_math("tanh")


@numba.njit(parallel=True, cache=True, error_model="numpy")
def _run_nodes(codes: np.ndarray, values: np.ndarray, left: np.ndarray, right: np.ndarray,
               slot: np.ndarray, n_slots: int, write_start: np.ndarray, written: np.ndarray,
               features: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - numba
    """Every node of the shared graph (``_shared``) on one block of rows per work item, in
    order, each into its scratch slot; a node that is a term's root is copied out."""
    n_rows = features.shape[1]
    n_blocks = (n_rows + _BLOCK - 1) // _BLOCK
    for block in numba.prange(n_blocks):
        lo = block * _BLOCK
        m = min(n_rows, lo + _BLOCK) - lo
        scratch = np.empty((n_slots, _BLOCK))
        for k in range(codes.shape[0]):
            op = codes[k]
            a = scratch[slot[k]]
            if op == 0:
                column = int(values[k])
                for i in range(m):
                    a[i] = features[column, lo + i]
            elif op == 1:
                constant = values[k]
                for i in range(m):
                    a[i] = constant
            elif op < 10:
                x = scratch[slot[left[k]]]
                y = scratch[slot[right[k]]]
                if op == 2:
                    for i in range(m):
                        a[i] = x[i] + y[i]
                elif op == 3:
                    for i in range(m):
                        a[i] = x[i] - y[i]
                elif op == 4:
                    for i in range(m):
                        a[i] = x[i] * y[i]
                elif op == 5:
                    for i in range(m):
                        a[i] = x[i] / y[i]
                elif op == 6:
                    for i in range(m):
                        a[i] = max(x[i], y[i]) if x[i] == x[i] and y[i] == y[i] else np.nan
                elif op == 7:
                    for i in range(m):
                        a[i] = min(x[i], y[i]) if x[i] == x[i] and y[i] == y[i] else np.nan
                elif op == 8:
                    for i in range(m):
                        a[i] = (1.0 if x[i] < y[i] else 0.0) if x[i] == x[i] and y[i] == y[i] \
                            else np.nan
                else:
                    for i in range(m):
                        a[i] = (1.0 if x[i] > y[i] else 0.0) if x[i] == x[i] and y[i] == y[i] \
                            else np.nan
            else:
                x = scratch[slot[left[k]]]
                if op == 10:
                    for i in range(m):
                        a[i] = x[i] * x[i]
                elif op == 11:
                    for i in range(m):
                        a[i] = x[i] * x[i] * x[i]
                elif op == 12:
                    for i in range(m):
                        a[i] = np.sqrt(x[i])
                elif op == 13:
                    for i in range(m):
                        a[i] = abs(x[i])
                else:
                    # The block functions work in place, on whole vectors of the block.
                    for i in range(_BLOCK):
                        a[i] = x[i] if i < m else 0.0
                    if op == 14:
                        for start in range(0, m, _EXP_WIDTH):
                            _exp_block(a, start)
                    elif op == 15:
                        for start in range(0, m, _LOG_WIDTH):
                            _log_block(a, start)
                    elif op == 16:
                        for start in range(0, m, _SIN_WIDTH):
                            _sin_block(a, start)
                    elif op == 17:
                        for start in range(0, m, _COS_WIDTH):
                            _cos_block(a, start)
                    else:
                        for start in range(0, m, _TANH_WIDTH):
                            _tanh_block(a, start)
            for w in range(write_start[k], write_start[k + 1]):
                term = written[w]
                for i in range(m):
                    out[term, lo + i] = a[i]


# -- trees ---------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1 << 16)
def size(node: Node) -> int:
    return 1 + sum(size(c) for c in node[2:])


@functools.lru_cache(maxsize=1 << 16)
def depth(node: Node) -> int:
    return 1 + max((depth(c) for c in node[2:]), default=0)


@functools.lru_cache(maxsize=1 << 16)
def complexity(node: Node) -> int:
    """Weighted node count, the same scale as ``formula.complexity`` of the printed term."""
    return _WEIGHT[node[0]] + sum(complexity(c) for c in node[2:])


def set_complexity(terms: Sequence[Node]) -> int:
    """Complexity of ``w1*t1 + ... + wk*tk``: each weight adds a leaf and a product, each sum
    an addition, as ``formula.complexity`` counts them."""
    if not terms:
        return 0
    return sum(complexity(t) for t in terms) + 3 * len(terms) - 1


def paths(node: Node, prefix: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    found = [prefix]
    for k, child in enumerate(node[2:]):
        found.extend(paths(child, (*prefix, k)))
    return found


def subtree(node: Node, path: tuple[int, ...]) -> Node:
    for k in path:
        node = node[2 + k]
    return node


def with_subtree(node: Node, path: tuple[int, ...], new: Node) -> Node:
    if not path:
        return new
    children = list(node[2:])
    children[path[0]] = with_subtree(children[path[0]], path[1:], new)
    return (node[0], node[1], *children)


@functools.lru_cache(maxsize=1 << 18)
def canonical(node: Node) -> Node:
    """Children of commutative operators in a fixed order (tuples compare operator, value,
    then children), constant subtrees folded, so that equal terms share one cache entry. A
    constant subtree with no finite value (``-2.5/0``) folds to NaN, which makes its whole term
    invalid: sympy would fold it differently."""
    children = [canonical(c) for c in node[2:]]
    op = node[0]
    if children and all(c[0] == CONST for c in children):
        folded = _fold(op, [c[1] for c in children])
        return (CONST, folded if math.isfinite(folded) else math.nan)
    if op in _COMMUTATIVE:
        children.sort()
    if op == SQUARE and children[0][0] == ABS:
        # |x|**2 == x**2 (and |x**2| below), so these meet their simpler form in the cache
        return (SQUARE, 0.0, children[0][2])
    if op == ABS and children[0][0] == SQUARE:
        return children[0]
    if op in (FEATURE, CONST):
        return (op, float(node[1]))
    return (op, 0.0, *children)


def set_key(terms: Sequence[Node]) -> tuple:
    """One key for a set of terms, whatever their order."""
    return tuple(sorted(terms))


def _fold(op: int, args: list[float]) -> float:
    with np.errstate(all="ignore"):
        value = evaluate_terms([(op, 0.0, *[(CONST, a) for a in args])], np.zeros((1, 1)))
    return float(value[0, 0])


def _shared(terms: Sequence[Node]) -> tuple[np.ndarray, ...]:
    """The terms as one graph in which equal subtrees are one node (a population shares
    many): per node its opcode, value, children and scratch slot, in an order where children
    come first, and which terms each node is the root of. A node's slot is reused once its
    last parent is computed, so the scratch holds only the nodes still needed."""
    codes: list[int] = []
    values: list[float] = []
    children: list[tuple[int, ...]] = []
    index: dict[tuple, int] = {}

    def visit(node: Node) -> int:
        # A leaf's key is its value (hex() tells 0.0 from -0.0, which equal keys would merge),
        # an operator's its children's nodes.
        op = node[0]
        if len(node) == 2:
            kids: tuple[int, ...] = ()
            key: tuple = (op, float(node[1]).hex() if op == CONST else node[1])
        elif len(node) == 3:
            kids = (visit(node[2]),)
            key = (op, kids[0])
        else:
            kids = (visit(node[2]), visit(node[3]))
            key = (op, *kids)
        k = index.get(key)
        if k is None:
            k = index[key] = len(codes)
            codes.append(op)
            values.append(float(node[1]))
            children.append(kids)
        return k

    roots = np.asarray([visit(term) for term in terms], dtype=np.int64)
    last_use = list(range(len(codes)))
    for k, kids in enumerate(children):
        for child in kids:
            last_use[child] = k
    slot = np.empty(len(codes), dtype=np.int64)
    free: list[int] = []
    n_slots = 0
    for k, kids in enumerate(children):
        if free:
            slot[k] = free.pop()
        else:
            slot[k], n_slots = n_slots, n_slots + 1
        for child in set(kids):
            if last_use[child] == k:
                free.append(int(slot[child]))
        if last_use[k] == k:
            free.append(int(slot[k]))
    left = np.asarray([kids[0] if kids else -1 for kids in children], dtype=np.int64)
    right = np.asarray([kids[1] if len(kids) > 1 else -1 for kids in children], dtype=np.int64)
    written = np.argsort(roots, kind="stable")
    write_start = np.searchsorted(roots[written], np.arange(len(codes) + 1))
    return (np.asarray(codes, dtype=np.int8), np.asarray(values, dtype=np.float64), left, right,
            slot, np.int64(n_slots), write_start.astype(np.int64), written.astype(np.int64))


def evaluate_terms(terms: Sequence[Node], features: np.ndarray) -> np.ndarray:
    """Values of ``terms`` on the (F, N) feature array, as a (len(terms), N) array."""
    features = np.ascontiguousarray(features, dtype=np.float64)
    out = np.empty((len(terms), features.shape[1]))
    if terms:
        _run_nodes(*_shared(terms), features, out)
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
    return [p for p in paths(node) if subtree(node, p)[0] == CONST]


def skeleton(node: Node) -> Node:
    """``node`` with every constant set to 0: its structure alone."""
    if node[0] == CONST:
        return (CONST, 0.0)
    return (node[0], node[1], *[skeleton(c) for c in node[2:]])


def smooth_constants(node: Node) -> list[tuple[int, ...]]:
    """Paths of the constants in ``node`` with no comparison above them."""
    return [p for p in constants(node)
            if not any(subtree(node, p[:i])[0] in (LT, GT) for i in range(len(p)))]
