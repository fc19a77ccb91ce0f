"""Enclosures of a formula over many boxes at once: float64 interval arithmetic with outward
rounding, vectorised over the boxes with numpy, with enclosures of the formula's partial
derivatives (forward mode), for the certified optimiser in ``optimum``.

``intervals`` (mpmath) evaluates one box per call at tens of microseconds per operation; this
module evaluates thousands of boxes per numpy call, so branch-and-bound can afford the boxes a
tight bound needs.

Soundness. Every end is rounded outward: ``+ - * /`` are correctly rounded in IEEE arithmetic,
so one ``nextafter`` away from the interval suffices; the library functions (``exp``, ``log``,
``tanh``, ``sin``, ``cos``, ``arctan``, ``arctan2``, ``power``) are widened by 2**-40 relative (and
a tiny absolute amount), far beyond their documented errors (glibc's and numpy's SIMD versions
err by at most a few units in the last place). An overflowing end becomes the largest float on
the inside and infinity on the outside, so an interval is never empty by accident.

Semantics. The enclosure covers the formula's values over the real numbers, at the points of
the box where it is defined: ``log`` of a number <= 0, a division by 0 and a negative base to a
fractional power are undefined, and so is anything computed from them (the kernels go on
through infinities, so ``sigmoid(log(0))`` is 0 to them; near such a point the defined values
approach it). A float64 overflow is not undefined: the real value is just large. ``partial``
marks boxes where the formula may be undefined somewhere; a box where it is undefined
everywhere is *empty* (both ends NaN). Comparisons of an undefined value are 0 and a ``where``
whose condition is undefined takes its first branch, as in numpy.

Derivatives. ``grad`` maps a feature's column to an enclosure of the partial derivative over the
box, a *generalised* one: a jump is an infinite slope with the jump's sign (``x > c`` has slope
``[0, inf]`` in ``x`` on a box that straddles ``c``), and a kink (``abs``, ``min``, ``max``)
the hull of the one-sided slopes (Clarke's gradient). So a box whose slope in ``x`` is ``>= 0``
holds a reward that never falls as ``x`` grows, and a box with finite slopes holds a Lipschitz
reward, for which the mean-value form ``f(m) + grad . (x - m)`` encloses the values. Neither
holds where the formula may be undefined: ``irregular`` marks those boxes (and a box that
crosses ``atan2``'s cut), whose slopes must not be used.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import sympy

from symreward import formula
from symreward.errors import SymrewardError

_REL = 2.0 ** -40  # widening of library functions, relative
_TINY = 2.0 ** -1000  # and absolute, for results near underflow
_TINY_PERIODIC = 2.0 ** -45  # sin, cos, atan2: absolute errors of the argument reduction
_PERIODIC_LIMIT = 1e6  # beyond |x| = 1e6, sin and cos are only known to lie in [-1, 1]
_INF = np.inf

Pair = tuple[np.ndarray, np.ndarray]


@dataclass
class Enclosure:
    """The values (and slopes) of a formula over a batch of boxes."""

    lo: np.ndarray
    hi: np.ndarray
    partial: np.ndarray  # may be undefined somewhere in the box
    irregular: np.ndarray  # the slopes below do not hold (undefined points, a cut)
    grad: dict[int, Pair] = field(default_factory=dict)  # column -> slope enclosure; absent: 0

    @property
    def empty(self) -> np.ndarray:
        return np.isnan(self.lo)


class Unsupported(SymrewardError):
    """A formula with a node the interval evaluator has no rule for."""


def _down(x: np.ndarray) -> np.ndarray:
    return np.nextafter(x, -_INF)


def _up(x: np.ndarray) -> np.ndarray:
    return np.nextafter(x, _INF)


def _widened(lo: np.ndarray, hi: np.ndarray, tiny: float = _TINY) -> Pair:
    """A library function's ends, widened beyond its error."""
    lo = np.where(np.isfinite(lo), lo - np.abs(lo) * _REL - tiny, lo)
    hi = np.where(np.isfinite(hi), hi + np.abs(hi) * _REL + tiny, hi)
    return _down(lo), _up(hi)


def _emptied(pair: Pair, empty: np.ndarray) -> Pair:
    if not np.any(empty):
        return pair
    lo, hi = (np.array(np.broadcast_to(x, empty.shape)) for x in pair)
    lo[empty] = np.nan
    hi[empty] = np.nan
    return lo, hi


# ------------------------------------------------------------------ arithmetic on pairs


def add(a: Pair, b: Pair) -> Pair:
    """a + b. A lower end is never +inf and an upper end never -inf, so no inf - inf."""
    return _down(a[0] + b[0]), _up(a[1] + b[1])


def neg(a: Pair) -> Pair:
    return -a[1], -a[0]


def mul(a: Pair, b: Pair) -> Pair:
    """a * b, where 0 times an infinite end is 0 (the infinite end is a limit, or an infinite
    slope along a side of zero width), and an empty factor gives an empty product."""
    (alo, ahi), (blo, bhi) = a, b
    products = [x * y for x in (alo, ahi) for y in (blo, bhi)]
    zeros = [(x == 0) | (y == 0) for x in (alo, ahi) for y in (blo, bhi)]
    products = [np.where(z, 0.0, p) for z, p in zip(zeros, products, strict=True)]
    lo = np.minimum(np.minimum(products[0], products[1]), np.minimum(products[2], products[3]))
    hi = np.maximum(np.maximum(products[0], products[1]), np.maximum(products[2], products[3]))
    return _emptied((_down(lo), _up(hi)), np.isnan(alo) | np.isnan(blo))


def hull(a: Pair, b: Pair) -> Pair:
    """The smallest interval holding both (an empty one adds nothing)."""
    return np.fmin(a[0], b[0]), np.fmax(a[1], b[1])


def intersect(a: Pair, b: Pair) -> Pair:
    return np.maximum(a[0], b[0]), np.minimum(a[1], b[1])


def _magnitude(a: Pair) -> Pair:
    """The enclosure of |x| for x in a."""
    lo, hi = a
    low = np.where(lo >= 0, lo, np.where(hi <= 0, -hi, 0.0))
    return _emptied((low, np.maximum(np.abs(lo), np.abs(hi))), np.isnan(lo))


def reciprocal(a: Pair) -> tuple[Pair, np.ndarray]:
    """1 / x over the nonzero x of a, and where a holds 0 (so the quotient is undefined)."""
    lo, hi = a
    inv_lo, inv_hi = 1.0 / lo, 1.0 / hi
    straddle = (lo < 0) & (hi > 0)
    low = np.where(lo == 0, _down(inv_hi), np.where(straddle | (hi == 0), -_INF, _down(inv_hi)))
    high = np.where(hi == 0, _up(inv_lo), np.where(straddle | (lo == 0), _INF, _up(inv_lo)))
    zero = (lo <= 0) & (hi >= 0)
    return _emptied((low, high), (lo == 0) & (hi == 0) | np.isnan(lo)), zero


def power(a: Pair, n: int) -> tuple[Pair, np.ndarray]:
    """x**n for an integer n, over the x of a where it is defined, and where it may not be."""
    if n == 0:
        return (np.ones_like(a[0]), np.ones_like(a[0])), np.zeros(np.shape(a[0]), bool)
    if n < 0:
        positive, _ = power(a, -n)
        return reciprocal(positive)
    none = np.zeros(np.shape(a[0]), bool)
    if n == 1:
        return a, none
    base = _magnitude(a) if n % 2 == 0 else a
    if n == 2:
        return (_down(base[0] * base[0]), _up(base[1] * base[1])), none
    return _widened(np.power(base[0], n), np.power(base[1], n)), none


def _real_power_ends(lo: np.ndarray, hi: np.ndarray, e: float) -> Pair:
    """x**e over the x >= 0 of [lo, hi], with 0**e = inf for e < 0 (a limit)."""
    at_lo, at_hi = np.power(np.maximum(lo, 0.0), e), np.power(np.maximum(hi, 0.0), e)
    low, high = _widened(at_lo, at_hi) if e > 0 else _widened(at_hi, at_lo)
    return np.maximum(low, 0.0), high


def real_power(a: Pair, e: float) -> tuple[Pair, np.ndarray]:
    """x**e for a constant non-integer e: defined for x >= 0 (x > 0 when e < 0)."""
    lo, hi = a
    pair = _real_power_ends(lo, hi, e)
    if e > 0:
        return _emptied(pair, (hi < 0) | np.isnan(lo)), lo < 0
    return _emptied(pair, (hi <= 0) | np.isnan(lo)), lo <= 0


def real_power_slope(a: Pair, e: float) -> Pair:
    """d/dx x**e = e x**(e - 1) over the x >= 0 of a: infinite at 0 when e < 1, where the
    value is defined and the slope is a limit."""
    ends = _emptied(_real_power_ends(a[0], a[1], e - 1), np.isnan(a[0]))
    return mul((np.float64(e),) * 2, ends)


def _contains_phase(lo: np.ndarray, hi: np.ndarray, phase: float) -> np.ndarray:
    """Whether ``phase + 2 k pi`` may lie in [lo, hi] for an integer k (a margin of 1e-9
    periods covers the rounding of the quotients for |x| <= 1e6)."""
    period = 2 * np.pi
    return np.floor((hi - phase) / period + 1e-9) >= np.ceil((lo - phase) / period - 1e-9)


def periodic(a: Pair, function: Callable[[np.ndarray], np.ndarray], peak: float) -> Pair:
    """sin (peak pi/2) or cos (peak 0) over a: the ends' values, and +-1 where the box holds a
    peak or a trough."""
    lo, hi = a
    wide = ~((hi - lo) < 2 * np.pi) | ~(np.maximum(np.abs(lo), np.abs(hi)) <= _PERIODIC_LIMIT)
    safe_lo, safe_hi = np.where(wide, 0.0, lo), np.where(wide, 0.0, hi)
    f_lo, f_hi = function(safe_lo), function(safe_hi)
    low, high = _widened(np.minimum(f_lo, f_hi), np.maximum(f_lo, f_hi), _TINY_PERIODIC)
    high = np.where(wide | _contains_phase(safe_lo, safe_hi, peak), 1.0, np.minimum(high, 1.0))
    low = np.where(wide | _contains_phase(safe_lo, safe_hi, peak + np.pi), -1.0,
                   np.maximum(low, -1.0))
    return _emptied((low, high), np.isnan(lo))


def monotone(a: Pair, function: Callable[[np.ndarray], np.ndarray], bounds: Pair | None = None,
             tiny: float = _TINY) -> Pair:
    """An increasing library function over a, clipped to its range ``bounds``."""
    low, high = _widened(function(a[0]), function(a[1]), tiny)
    if bounds is not None:
        low, high = np.maximum(low, bounds[0]), np.minimum(high, bounds[1])
    return _emptied((low, high), np.isnan(a[0]))


def log(a: Pair) -> tuple[Pair, np.ndarray]:
    """log x over the x > 0 of a, and where a holds x <= 0."""
    lo, hi = a
    pair = monotone((np.maximum(lo, 0.0), hi), np.log)
    return _emptied(pair, (hi <= 0) | np.isnan(lo)), lo <= 0


def atan2(y: Pair, x: Pair) -> tuple[Pair, np.ndarray]:
    """atan2(y, x), and where the box meets the cut along the negative x axis (a jump of 2 pi)
    or the origin. Off them atan2 is monotone in each argument on the box, so its extremes are
    at the corners."""
    (ylo, yhi), (xlo, xhi) = y, x
    cut = (xlo < 0) & (ylo <= 0) & (yhi >= 0)
    origin = (xlo <= 0) & (xhi >= 0) & (ylo <= 0) & (yhi >= 0)
    corners = [np.arctan2(b, c) for b in (ylo, yhi) for c in (xlo, xhi)]
    low = np.minimum(np.minimum(corners[0], corners[1]), np.minimum(corners[2], corners[3]))
    high = np.maximum(np.maximum(corners[0], corners[1]), np.maximum(corners[2], corners[3]))
    low, high = np.where(origin, np.minimum(low, 0.0), low), np.where(origin,
                                                                       np.maximum(high, 0.0), high)
    low, high = _widened(low, high, _TINY_PERIODIC)
    low, high = np.where(cut, -np.pi, low), np.where(cut, np.pi, high)
    low, high = _widened(np.maximum(low, -np.pi), np.minimum(high, np.pi), _TINY_PERIODIC)
    return _emptied((low, high), np.isnan(ylo) | np.isnan(xlo)), cut | origin


# -------------------------------------------------------------------- compiled formulas


class _Batch:
    """The boxes of one call: their ends, which ends are open, and whether slopes are
    wanted."""

    def __init__(self, lo: np.ndarray, hi: np.ndarray, slopes: bool,
                 open_lo: np.ndarray | None, open_hi: np.ndarray | None):
        self.lo, self.hi, self.slopes = lo, hi, slopes
        self.none = np.zeros(len(lo), bool)
        self.open_lo = np.zeros(lo.shape, bool) if open_lo is None else open_lo
        self.open_hi = np.zeros(lo.shape, bool) if open_hi is None else open_hi


Node = Callable[[_Batch], Enclosure]


def _constant_pair(expr: sympy.Expr) -> Pair:
    if expr is sympy.pi or expr is sympy.E:
        value = np.float64(np.pi if expr is sympy.pi else np.e)
        return _down(value), _up(value)
    if not (expr.is_Rational or expr.is_Float):
        raise Unsupported(f"no interval rule for the constant {expr}")
    value = np.float64(float(expr))
    if sympy.Float(value) == expr or sympy.Integer(int(value)) == expr:
        return value, value  # the number is a double
    return _down(_down(value)), _up(_up(value))


def _scaled_slopes(factor: Pair, slopes: dict[int, Pair]) -> dict[int, Pair]:
    return {k: mul(factor, s) for k, s in slopes.items()}


def _added_slopes(a: dict[int, Pair], b: dict[int, Pair]) -> dict[int, Pair]:
    out = dict(a)
    for k, s in b.items():
        out[k] = add(out[k], s) if k in out else s
    return out


def _hull_slopes(a: dict[int, Pair], b: dict[int, Pair]) -> dict[int, Pair]:
    zero = (np.float64(0.0), np.float64(0.0))
    return {k: hull(a.get(k, zero), b.get(k, zero)) for k in sorted(a.keys() | b.keys())}


def _result(pair: Pair, partial: np.ndarray, irregular: np.ndarray,
            grad: dict[int, Pair] | None = None) -> Enclosure:
    return Enclosure(pair[0], pair[1], partial, irregular | partial, grad or {})


def _unary(arg: Node, value: Callable[[Pair], tuple[Pair, np.ndarray]],
           slope: Callable[[Pair], Pair]) -> Node:
    """f(arg) from f's enclosure (with where it may be undefined) and its derivative's."""
    def node(batch: _Batch) -> Enclosure:
        a = arg(batch)
        pair, partial = value((a.lo, a.hi))
        grad = (_scaled_slopes(slope((a.lo, a.hi)), a.grad) if batch.slopes and a.grad
                else {})
        return _result(pair, a.partial | partial, a.irregular, grad)
    return node


def _defined(value: Callable[[Pair], Pair]) -> Callable[[Pair], tuple[Pair, np.ndarray]]:
    return lambda a: (value(a), np.zeros(np.shape(a[0]), bool))


def _tanh_slope(a: Pair) -> Pair:
    square, _ = power(monotone(a, np.tanh), 2)
    return np.maximum(_down(1.0 - square[1]), 0.0), np.minimum(_up(1.0 - square[0]), 1.0)


def _sign_interval(a: Pair) -> Pair:
    lo, hi = a
    return (np.where(lo > 0, 1.0, -1.0), np.where(hi < 0, -1.0, 1.0))


class _Compiler:
    def __init__(self, names: Sequence[str]):
        self.columns = {name: j for j, name in enumerate(names)}

    def compile(self, expr: sympy.Expr) -> Node:
        if expr.is_Symbol:
            return self._symbol(expr.name)
        if expr.is_Number or expr in (sympy.pi, sympy.E):
            pair = _constant_pair(expr)
            return lambda batch: _result(pair, batch.none, batch.none)
        args = [self.compile(a) for a in expr.args]
        if isinstance(expr, sympy.Add):
            return self._fold(args, _add_enclosures)
        if isinstance(expr, sympy.Mul):
            return self._fold(args, _mul_enclosures)
        if isinstance(expr, sympy.Pow):
            return self._power(expr, args[0], args[1])
        if isinstance(expr, formula.Comparison):
            threshold = threshold_of(expr, self.columns)
            if threshold is not None:
                return _threshold(*threshold)
            return _comparison(type(expr).__name__, args[0], args[1])
        if isinstance(expr, formula.Where):
            return _where(*args)
        if isinstance(expr, sympy.Min | sympy.Max):
            return _extreme(args, isinstance(expr, sympy.Min))
        if isinstance(expr, sympy.Abs):
            return _unary(args[0], _defined(_magnitude), _sign_interval)
        if isinstance(expr, sympy.exp):
            exp = _defined(lambda a: monotone(a, np.exp, (0.0, _INF)))
            return _unary(args[0], exp, lambda a: exp(a)[0])
        if isinstance(expr, sympy.log):
            return _unary(args[0], log, lambda a: reciprocal((np.maximum(a[0], 0.0), a[1]))[0])
        if isinstance(expr, sympy.tanh):
            return _unary(args[0], _defined(lambda a: monotone(a, np.tanh, (-1.0, 1.0))),
                          _tanh_slope)
        if isinstance(expr, sympy.sin | sympy.cos):
            sine = isinstance(expr, sympy.sin)
            value = _defined(lambda a: periodic(a, np.sin if sine else np.cos,
                                                np.pi / 2 if sine else 0.0))
            slope = ((lambda a: periodic(a, np.cos, 0.0)) if sine
                     else (lambda a: neg(periodic(a, np.sin, np.pi / 2))))
            return _unary(args[0], value, slope)
        if isinstance(expr, sympy.atan):  # sympy folds atan2(y, c > 0) to atan(y / c)
            half = np.pi / 2
            return _unary(args[0], _defined(lambda a: monotone(a, np.arctan, (-half, half))),
                          lambda a: reciprocal(add((np.float64(1.0),) * 2, power(a, 2)[0]))[0])
        if isinstance(expr, sympy.atan2):
            return _atan2(args[0], args[1])
        raise Unsupported(f"no interval rule for {type(expr).__name__} (in {expr})")

    def _symbol(self, name: str) -> Node:
        if name not in self.columns:
            raise Unsupported(f"the formula uses '{name}', which is not a feature of the box")
        j = self.columns[name]
        one = (np.float64(1.0), np.float64(1.0))
        return lambda batch: Enclosure(batch.lo[:, j], batch.hi[:, j], batch.none, batch.none,
                                       {j: one} if batch.slopes else {})

    @staticmethod
    def _fold(args: list[Node], combine: Callable[[Enclosure, Enclosure, bool], Enclosure]
              ) -> Node:
        def node(batch: _Batch) -> Enclosure:
            total = args[0](batch)
            for arg in args[1:]:
                total = combine(total, arg(batch), batch.slopes)
            return total
        return node

    def _power(self, expr: sympy.Pow, base: Node, exponent: Node) -> Node:
        e = expr.exp
        if e.is_Number and float(e) == int(float(e)):
            n = int(float(e))
            return _unary(base, lambda a: power(a, n),
                          lambda a: mul((np.float64(n),) * 2, power(a, n - 1)[0]))
        if e.is_Number:
            value = float(e)
            return _unary(base, lambda a: real_power(a, value),
                          lambda a: real_power_slope(a, value))
        # b ** e = exp(e log b), defined where b > 0; elsewhere (a negative base to an integer
        # power is defined in numpy) only the whole line is known to hold the values
        general = self.compile(sympy.exp(sympy.Mul(e, sympy.log(expr.base), evaluate=False),
                                         evaluate=False))

        def node(batch: _Batch) -> Enclosure:
            b = base(batch)
            out = general(batch)
            unknown = ~(b.lo > 0)
            lo = np.where(unknown, -_INF, out.lo)
            hi = np.where(unknown, _INF, out.hi)
            return _result((lo, hi), (out.partial & ~unknown) | unknown, out.irregular,
                           out.grad)
        return node


def _add_enclosures(a: Enclosure, b: Enclosure, slopes: bool) -> Enclosure:
    grad = _added_slopes(a.grad, b.grad) if slopes else {}
    return _result(add((a.lo, a.hi), (b.lo, b.hi)), a.partial | b.partial,
                   a.irregular | b.irregular, grad)


def _mul_enclosures(a: Enclosure, b: Enclosure, slopes: bool) -> Enclosure:
    grad = {}
    if slopes:
        grad = _added_slopes(_scaled_slopes((b.lo, b.hi), a.grad),
                             _scaled_slopes((a.lo, a.hi), b.grad))
    return _result(mul((a.lo, a.hi), (b.lo, b.hi)), a.partial | b.partial,
                   a.irregular | b.irregular, grad)


_DECIDED = {  # kind -> (certainly true, certainly false) from d = lhs - rhs
    "Greater": (lambda lo, hi: lo > 0, lambda lo, hi: hi <= 0),
    "GreaterEqual": (lambda lo, hi: lo >= 0, lambda lo, hi: hi < 0),
    "Less": (lambda lo, hi: hi < 0, lambda lo, hi: lo >= 0),
    "LessEqual": (lambda lo, hi: hi <= 0, lambda lo, hi: lo > 0),
}


def _comparison(kind: str, lhs: Node, rhs: Node) -> Node:
    true, false = _DECIDED[kind]
    rising = kind.startswith("Greater")

    def node(batch: _Batch) -> Enclosure:
        a, b = lhs(batch), rhs(batch)
        d = _add_enclosures(a, Enclosure(*neg((b.lo, b.hi)), b.partial, b.irregular,
                                         {k: neg(s) for k, s in b.grad.items()}), batch.slopes)
        empty = d.empty
        is_true, is_false = true(d.lo, d.hi) & ~empty, false(d.lo, d.hi) | empty
        lo = np.where(is_true & ~d.partial, 1.0, 0.0)
        hi = np.where(is_false, 0.0, 1.0)
        grad = {}
        if batch.slopes and d.grad:
            straddle = ~is_true & ~is_false
            zero = np.zeros(len(batch.lo))
            jump = ((zero, np.where(straddle, _INF, 0.0)) if rising
                    else (np.where(straddle, -_INF, 0.0), zero))
            grad = _scaled_slopes(jump, d.grad)
        return _result((lo, hi), batch.none, d.irregular | d.partial, grad)
    return node


_MIRROR = {"Greater": "Less", "GreaterEqual": "LessEqual", "Less": "Greater",
           "LessEqual": "GreaterEqual"}


def threshold_of(expr: formula.Comparison, columns: Mapping[str, int]
                 ) -> tuple[str, int, float] | None:
    """``(kind, column, c)`` when ``expr`` compares a feature of ``columns`` with a number
    that is exactly a double, as ``feature <kind> c`` (``c < x`` is ``x > c``); else None."""
    lhs, rhs = expr.args
    kind = type(expr).__name__
    if rhs.is_Symbol and lhs.is_Number:
        lhs, rhs, kind = rhs, lhs, _MIRROR[kind]
    if not (lhs.is_Symbol and lhs.name in columns and rhs.is_Number):
        return None
    c = float(rhs)
    if not (np.isfinite(c) and (sympy.Float(c) == rhs or sympy.Integer(int(c)) == rhs)):
        return None
    return kind, columns[lhs.name], c


def _threshold(kind: str, j: int, c: float) -> Node:
    """``x <kind> c`` for a feature x, decided exactly from the box's ends and which of them
    are open: (c, hi] holds ``x > c`` throughout. A box that straddles c jumps along x."""
    def node(batch: _Batch) -> Enclosure:
        lo, hi = batch.lo[:, j], batch.hi[:, j]
        open_lo, open_hi = batch.open_lo[:, j], batch.open_hi[:, j]
        above = (lo > c) | (lo == c) & open_lo  # every x > c
        at_least = lo >= c
        below = (hi < c) | (hi == c) & open_hi  # every x < c
        at_most = hi <= c
        true, false = {"Greater": (above, at_most), "GreaterEqual": (at_least, below),
                       "Less": (below, at_least), "LessEqual": (at_most, above)}[kind]
        grad = {}
        if batch.slopes:
            straddle = ~true & ~false
            zero = np.zeros(len(lo))
            grad = {j: (zero, np.where(straddle, _INF, 0.0)) if kind.startswith("Greater")
                    else (np.where(straddle, -_INF, 0.0), zero)}
        return _result((np.where(true, 1.0, 0.0), np.where(false, 0.0, 1.0)), batch.none,
                       batch.none, grad)
    return node


def _where(condition: Node, if_true: Node, if_false: Node) -> Node:
    def node(batch: _Batch) -> Enclosure:
        c, a, b = condition(batch), if_true(batch), if_false(batch)
        takes_true = (c.lo > 0) | (c.hi < 0) | c.empty  # NaN counts as true, as in numpy
        takes_false = (c.lo == 0) & (c.hi == 0) & ~c.partial
        either = ~takes_true & ~takes_false
        both = hull((a.lo, a.hi), (b.lo, b.hi))
        lo = np.where(takes_true, a.lo, np.where(takes_false, b.lo, both[0]))
        hi = np.where(takes_true, a.hi, np.where(takes_false, b.hi, both[1]))
        partial = np.where(takes_true, a.partial, np.where(
            takes_false, b.partial, a.partial | b.partial | a.empty | b.empty))
        grad = {}
        if batch.slopes:
            zero = (np.float64(0.0), np.float64(0.0))
            jump = (np.where(either, -_INF, 0.0), np.where(either, _INF, 0.0))
            joined = _added_slopes(_hull_slopes(a.grad, b.grad), _scaled_slopes(jump, c.grad))
            for k in sorted(a.grad.keys() | b.grad.keys() | joined.keys()):
                first, second, mixed = a.grad.get(k, zero), b.grad.get(k, zero), joined[k]
                grad[k] = tuple(np.where(takes_true, first[i], np.where(
                    takes_false, second[i], mixed[i])) for i in (0, 1))
        irregular = c.irregular | c.partial | a.irregular | b.irregular
        return _result((lo, hi), partial, irregular, grad)
    return node


def _extreme(args: list[Node], smallest: bool) -> Node:
    """min/max: the values' ends; the slopes' hull over the arguments that may be the extreme
    (Clarke's gradient at a kink). An undefined argument makes the result undefined."""
    def node(batch: _Batch) -> Enclosure:
        parts = [f(batch) for f in args]
        pick = np.minimum if smallest else np.maximum
        lo, hi = parts[0].lo, parts[0].hi
        for p in parts[1:]:
            lo, hi = pick(lo, p.lo), pick(hi, p.hi)
        partial = np.logical_or.reduce([p.partial for p in parts])
        irregular = np.logical_or.reduce([p.irregular for p in parts])
        grad = {}
        if batch.slopes:
            zero = (np.float64(0.0), np.float64(0.0))
            keys = sorted(set().union(*(p.grad.keys() for p in parts)))
            for k in keys:
                low, high = np.full(len(batch.lo), _INF), np.full(len(batch.lo), -_INF)
                for p in parts:
                    may = (p.lo <= hi) if smallest else (p.hi >= lo)
                    s = p.grad.get(k, zero)
                    low = np.where(may, np.fmin(low, s[0]), low)
                    high = np.where(may, np.fmax(high, s[1]), high)
                grad[k] = (low, high)
        return _result((lo, hi), partial, irregular, grad)
    return node


def _atan2(y_node: Node, x_node: Node) -> Node:
    def node(batch: _Batch) -> Enclosure:
        y, x = y_node(batch), x_node(batch)
        pair, cut = atan2((y.lo, y.hi), (x.lo, x.hi))
        grad = {}
        if batch.slopes and (y.grad or x.grad):
            radius, _ = reciprocal(add(power((y.lo, y.hi), 2)[0], power((x.lo, x.hi), 2)[0]))
            # d atan2(y, x) = (x dy - y dx) / (x**2 + y**2)
            grad = _added_slopes(_scaled_slopes(mul((x.lo, x.hi), radius), y.grad),
                                 _scaled_slopes(neg(mul((y.lo, y.hi), radius)), x.grad))
        return _result(pair, y.partial | x.partial, y.irregular | x.irregular | cut, grad)
    return node


class BoxFunction:
    """A formula compiled to enclose its values (and slopes) over a batch of boxes.

    ``f(lo, hi)`` with ``lo``, ``hi`` of shape ``(n, len(names))`` (the boxes' ends, in
    ``names`` order; infinite ends allowed) gives an ``Enclosure`` of ``n`` rows; with
    ``slopes=True`` its ``grad`` encloses the partial derivatives. ``open_lo``/``open_hi``
    (same shape, bool) mark ends the box leaves out: a comparison of a feature with a number
    reads them (``x > c`` holds on ``(c, hi]``), everything else encloses the closed box,
    which holds the half-open one. Raises ``Unsupported`` at
    compile time for a node it has no rule for, or a symbol not in ``names``.
    """

    def __init__(self, expr: sympy.Expr, names: Sequence[str]):
        self.expr = expr
        self.names = list(names)
        self._node = _Compiler(self.names).compile(expr)

    def __call__(self, lo: np.ndarray, hi: np.ndarray, *, slopes: bool = False,
                 open_lo: np.ndarray | None = None, open_hi: np.ndarray | None = None
                 ) -> Enclosure:
        lo, hi = np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64)
        n = len(lo)
        with np.errstate(all="ignore"):  # infinities and NaN are handled as values
            out = self._node(_Batch(lo, hi, slopes, open_lo, open_hi))

        def full(x: np.ndarray) -> np.ndarray:
            return np.array(np.broadcast_to(x, (n,)))

        grad = {k: (full(s[0]), full(s[1])) for k, s in out.grad.items()}
        return Enclosure(full(out.lo), full(out.hi), full(out.partial),
                         full(out.irregular | out.partial), grad)
