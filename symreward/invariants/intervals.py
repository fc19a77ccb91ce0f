"""Interval arithmetic over sympy formulas: enclosures of a formula's values over a box of
features, outward-rounded (``mpmath.iv``), for the proofs of ``branch_and_bound`` and, enclosing
only where a formula is defined, for the features' natural ranges (``domain``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import mpmath
import sympy
from mpmath import iv

from symreward import formula

IV = Callable[[Mapping[str, Any]], Any]  # box (feature name -> iv.mpf) -> iv.mpf


class Undefined(Exception):
    """The expression may be undefined (NaN or infinite) somewhere in the box."""


class Unsupported(Exception):
    """The interval evaluator has no rule for this node."""


def lower(x: Any) -> mpmath.mpf:
    """The lower end of an interval."""
    return mpmath.mpf(x._mpi_[0])


def upper(x: Any) -> mpmath.mpf:
    """The upper end of an interval."""
    return mpmath.mpf(x._mpi_[1])


def _hull(*xs: Any) -> Any:
    return iv.mpf([min(lower(x) for x in xs), max(upper(x) for x in xs)])


def _monotone(point: Callable[[Any], Any], x: Any) -> Any:
    """An increasing function over an interval: the hull of its (interval) values at the ends."""
    return _hull(point(iv.mpf(lower(x))), point(iv.mpf(upper(x))))


def _tanh_point(x: Any) -> Any:
    if upper(x) > 0:
        return 1 - 2 / (iv.exp(2 * x) + 1)
    return 2 / (1 + iv.exp(-2 * x)) - 1


def _sign(x: Any) -> Any:
    lo, hi = lower(x), upper(x)
    if lo > 0:
        return iv.mpf(1)
    if hi < 0:
        return iv.mpf(-1)
    return iv.mpf([-1 if lo < 0 else 0, 1 if hi > 0 else 0])


def _compare(kind: str, a: Any, b: Any) -> Any:
    d = a - b  # the comparison is a ? b, i.e. d ? 0
    lo, hi = lower(d), upper(d)
    true, false = {
        "Less": (hi < 0, lo >= 0), "LessEqual": (hi <= 0, lo > 0),
        "Greater": (lo > 0, hi <= 0), "GreaterEqual": (lo >= 0, hi < 0),
    }[kind]
    return iv.mpf(1) if true else iv.mpf(0) if false else iv.mpf([0, 1])


def _constant(expr: sympy.Expr) -> Any:
    if expr is sympy.pi:
        return iv.pi
    if expr is sympy.E:
        return iv.e
    if expr.is_Integer:
        return iv.mpf(int(expr))
    if expr.is_Rational:
        return iv.mpf(int(expr.p)) / iv.mpf(int(expr.q))
    if expr.is_Float:
        return iv.mpf(float(expr))
    raise Unsupported(f"constant {expr}")


def interval_function(expr: sympy.Expr, *, defined_only: bool = False) -> IV:
    """Compile ``expr`` into ``f(box) -> mpmath interval`` that encloses its value over the box
    (``box`` maps symbol names to ``iv.mpf``). Raises ``Undefined`` where the expression may be
    undefined in the box and ``Unsupported`` (at compile time) for nodes it has no rule for.

    With ``defined_only``, the interval encloses the expression's values at the points of the
    box where it is defined (real and finite), which is what a feature takes where it is not
    NaN: a root, a logarithm or a division reads only the part of its argument where it is
    defined, and ``Undefined`` means *nowhere* defined in the box. Comparisons and ``where``
    conditions turn an undefined argument into a defined value (NaN compares false and counts
    as true), so they read their arguments without that restriction.
    """
    return _compile(expr, defined_only)


def _compile(expr: sympy.Expr, defined_only: bool) -> IV:
    if expr.is_Symbol:
        name = expr.name
        return lambda box: box[name]
    if expr.is_Number or expr in (sympy.pi, sympy.E):
        value = _constant(expr)
        return lambda box: value
    if isinstance(expr, formula.Comparison):
        kind = type(expr).__name__
        left, right = (_compile(a, False) for a in expr.args)

        def compare(box: Mapping[str, Any]) -> Any:
            try:
                return _compare(kind, left(box), right(box))
            except Undefined:
                if defined_only:  # NaN compares false: the value is still 0 or 1
                    return iv.mpf([0, 1])
                raise
        return compare
    if isinstance(expr, formula.Where):
        condition = _compile(expr.args[0], False)
        if_true, if_false = (_compile(a, defined_only) for a in expr.args[1:])

        def where(box: Mapping[str, Any]) -> Any:
            try:
                c = condition(box)
            except Undefined:  # NaN counts as true; either branch may be taken
                return _hull_of((if_true, if_false), box, defined_only)
            if lower(c) > 0 or upper(c) < 0:
                return if_true(box)
            if lower(c) == 0 and upper(c) == 0:
                return if_false(box)
            return _hull_of((if_true, if_false), box, defined_only)
        return where
    args = [_compile(a, defined_only) for a in expr.args]
    if isinstance(expr, sympy.Add):
        def add(box: Mapping[str, Any]) -> Any:
            total = args[0](box)
            for f in args[1:]:
                total = total + f(box)
            return total
        return add
    if isinstance(expr, sympy.Mul):
        def mul(box: Mapping[str, Any]) -> Any:
            total = args[0](box)
            for f in args[1:]:
                total = _mul(total, f(box))
            return total
        return mul
    if isinstance(expr, sympy.Pow):
        return _power(expr, *args, defined_only=defined_only)
    if isinstance(expr, sympy.Min | sympy.Max):
        pick = min if isinstance(expr, sympy.Min) else max

        def extreme(box: Mapping[str, Any]) -> Any:
            values = [f(box) for f in args]  # NaN in any argument gives NaN, as in the kernels
            return iv.mpf([pick(lower(v) for v in values), pick(upper(v) for v in values)])
        return extreme
    log = _log_defined if defined_only else _log
    unary = {sympy.Abs: _abs, sympy.exp: iv.exp, sympy.sin: iv.sin, sympy.cos: iv.cos,
             sympy.sign: _sign, sympy.log: log, sympy.tanh: lambda x: _monotone(_tanh_point, x),
             sympy.Heaviside: _heaviside}
    for kind, function in unary.items():
        if isinstance(expr, kind) and len(args) >= 1:
            f = args[0]
            return lambda box, function=function: function(f(box))
    if isinstance(expr, sympy.atan2):
        return lambda box: _atan2(args[0](box), args[1](box), signed_zeros=defined_only)
    if isinstance(expr, sympy.atan):  # sympy folds atan2(y, c > 0) to atan(y / c)
        return lambda box: _widen(iv.atan2(args[0](box), iv.mpf(1)))
    raise Unsupported(type(expr).__name__)


def _hull_of(branches: tuple[IV, ...], box: Mapping[str, Any], defined_only: bool) -> Any:
    """The hull of the branches' intervals; with ``defined_only``, of those defined somewhere
    (a branch undefined everywhere adds no value)."""
    values = []
    for branch in branches:
        try:
            values.append(branch(box))
        except Undefined:
            if not defined_only:
                raise
    if not values:
        raise Undefined
    return _hull(*values)


def _mul(a: Any, b: Any) -> Any:
    """a * b, enclosing products of finite reals: an infinite end times a zero end is 0 (the
    infinite end is a limit no value reaches), where mpmath would widen to [-inf, inf]."""
    ends_a, ends_b = (lower(a), upper(a)), (lower(b), upper(b))
    if all(mpmath.isfinite(v) for v in (*ends_a, *ends_b)):
        return a * b
    lows, highs = [], []
    for u in ends_a:
        for v in ends_b:
            if u == 0 or v == 0:
                lows.append(mpmath.mpf(0))
                highs.append(mpmath.mpf(0))
                continue
            p = iv.mpf(u) * iv.mpf(v)
            lows.append(lower(p))
            highs.append(upper(p))
    return iv.mpf([min(lows), max(highs)])


def _abs(x: Any) -> Any:
    lo, hi = lower(x), upper(x)
    if lo >= 0:
        return x
    if hi <= 0:
        return -x
    return iv.mpf([0, max(-lo, hi)])


def _heaviside(x: Any) -> Any:
    lo, hi = lower(x), upper(x)
    if lo > 0:
        return iv.mpf(1)
    if hi < 0:
        return iv.mpf(0)
    return iv.mpf([0, 1])


def _log(x: Any) -> Any:
    if lower(x) <= 0:
        raise Undefined
    return iv.log(x)


def _log_defined(x: Any) -> Any:
    """log over the positive part of ``x``."""
    if upper(x) <= 0:
        raise Undefined
    return iv.log(iv.mpf([max(lower(x), mpmath.mpf(0)), upper(x)]))


def _widen(x: Any) -> Any:
    """``x`` widened by a few units in the last place each side: mpmath's interval atan2 is
    not outward-rounded at every endpoint (found by the soundness test)."""
    lo, hi = lower(x), upper(x)
    eps = mpmath.mpf(2) ** -48
    return iv.mpf([lo - abs(lo) * eps - mpmath.mpf(2) ** -1000,
                   hi + abs(hi) * eps + mpmath.mpf(2) ** -1000])


def _atan2(y: Any, x: Any, *, signed_zeros: bool = False) -> Any:
    """atan2 over intervals. Across the branch cut (``y`` crossing 0 where ``x`` < 0) it jumps
    between -pi and pi, and mpmath's interval atan2 returns reversed ends there: the enclosure
    is then [-pi, pi]. With ``signed_zeros``, also the values float atan2 gives at zeros the
    real one does not: a zero may be -0.0 (``sqrt(-0.0)`` is -0.0), and ``atan2(-0.0, x < 0)``
    is -pi, ``atan2(±0.0, -0.0)`` is ±pi."""
    x_negative = lower(x) < 0 or (signed_zeros and lower(x) <= 0 <= upper(x))
    y_crosses = lower(y) < 0 <= upper(y) or (signed_zeros and lower(y) <= 0 <= upper(y))
    if x_negative and y_crosses:
        return _widen(_hull(iv.pi, -iv.pi))
    if lower(x) == 0 and upper(x) == 0 and lower(y) == 0 and upper(y) == 0:
        return iv.mpf(0)
    if lower(x) <= 0 <= upper(x) and lower(y) <= 0 <= upper(y):
        return _widen(_hull(iv.atan2(y, x), iv.mpf(0)))
    return _widen(iv.atan2(y, x))


def _power(expr: sympy.Pow, base: IV, exponent: IV, *, defined_only: bool) -> IV:
    e = expr.exp
    if e.is_Integer or (defined_only and e.is_Float and float(e).is_integer()):
        # numpy.power(-2.0, 3.0) is -8: an integral float exponent acts as an integer one
        n = int(e)

        def integer_power(box: Mapping[str, Any]) -> Any:
            b = base(box)
            if n < 0 and lower(b) <= 0 <= upper(b):
                if not defined_only:
                    raise Undefined
                return _negative_power_across_zero(b, n)
            if n % 2 == 0 and n > 0:
                return _abs(b) ** n
            return b ** n
        return integer_power
    if e.is_Number:
        value = _constant(e)
        negative = bool(e < 0)

        def real_power(box: Mapping[str, Any]) -> Any:
            b = base(box)
            if defined_only:  # a fractional power of a negative number is NaN
                if upper(b) < 0 or (negative and upper(b) == 0):
                    raise Undefined
                b = iv.mpf([max(lower(b), mpmath.mpf(0)), upper(b)])
                if negative and lower(b) == 0:  # x**-0.5 grows without bound as x -> 0+
                    return _hull(_end_power(upper(b), value), iv.mpf(mpmath.inf))
            elif lower(b) < 0 or (negative and lower(b) <= 0):
                raise Undefined
            if upper(b) == 0:
                return iv.mpf(0)
            return b ** value
        return real_power

    def general_power(box: Mapping[str, Any]) -> Any:
        b = base(box)
        if defined_only and lower(b) < 0:
            # numpy.power(-2.0, 3.0) is -8: a negative base with an integral exponent is defined
            return iv.mpf([-mpmath.inf, mpmath.inf])
        if lower(b) <= 0 and not defined_only:
            raise Undefined
        return iv.exp(_mul(exponent(box), iv.log(b)))
    return general_power


def _end_power(end: mpmath.mpf, exponent: Any) -> Any:
    """``end ** exponent`` for an end of an interval, with a negative exponent: its limit 0 at
    an infinite end."""
    if mpmath.isinf(end):
        return iv.mpf(0)
    return iv.mpf(end) ** exponent


def _negative_power_across_zero(b: Any, n: int) -> Any:
    """``b ** n`` for ``n < 0`` over the points of ``b`` other than 0, which it holds: each side
    of 0 grows without bound towards 0 (negative on the left for odd ``n``)."""
    lo, hi = lower(b), upper(b)
    pieces = []
    if lo < 0:
        toward_zero = mpmath.inf if n % 2 == 0 else -mpmath.inf
        pieces.append(_hull(_end_power(lo, n), iv.mpf(toward_zero)))
    if hi > 0:
        pieces.append(_hull(_end_power(hi, n), iv.mpf(mpmath.inf)))
    if not pieces:
        raise Undefined  # b is [0, 0]
    return _hull(*pieces)
