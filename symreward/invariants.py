"""Invariants of a reward artifact: validation, sound interval proofs, property tests.

An artifact lists ``[[invariants]]`` tables; ``check`` decides each one and reports the strongest
result it reached:

* **proved** — symbolically (sympy's sign assumptions, only for formulas without division, roots
  or logarithms) or by interval arithmetic (``mpmath.iv``, outward-rounded) with branch-and-bound
  over the domain box, within ``time_budget`` seconds per invariant;
* **held** — hypothesis searched the domain (and points near the data, when given) and found no
  counterexample in the reported number of examples;
* **violated** — a concrete counterexample: the feature values (shrunk by hypothesis when it found
  them), the reward and each term's contribution;
* **vacuous** — the invariant's condition (``where``, ``when``, ``better``, ``worse``) is proved
  never to hold on the domain;
* **unknown** — neither a proof nor a test could run (e.g. a condition never met by any sample).

Semantics (all over the *domain*: the box of feature ranges recorded in provenance as
``feature_ranges``, overridden per invariant by ``domain = {feature = [lo, hi]}``; a feature with
no known range is unbounded). Features are treated as independent coordinates of that box, so the
domain may hold feature combinations no raw observation produces: proofs are conservative for
it, and a counterexample may be such a combination. Proofs are about the formula over the real
numbers; the float64 kernels may differ by rounding, so a tested value counts against a
non-strict bound only when it passes it by more than 1e-9 relative.

* ``bounded`` (``lo``, ``hi``, either optional): ``lo <= reward <= hi`` at every state of the
  domain. A state where the reward is undefined (NaN: log of a negative number, 0/0, ...)
  violates it.
* ``sign`` (``is`` = negative | positive | nonpositive | nonnegative, ``when`` optional):
  the reward has that sign wherever ``when`` holds (undefined rewards violate it).
* ``prefers`` (``better``, ``worse``): every state meeting ``better`` has a reward strictly above
  every state meeting ``worse``: ``min reward over better > max reward over worse``.
* ``decreasing`` / ``increasing`` (``of``, ``where`` optional): ``of`` must be a continuous
  formula of exactly one feature ``f`` (no comparisons, ``where`` or ``atan2``). Decreasing
  means: for any two states that differ only in ``f``, such that every state on the segment
  between them lies in the domain and meets ``where``, and ``of`` is strictly monotone along the
  segment, the state with the larger ``of`` has a reward no larger (increasing: no smaller).
  This is the "moving f so that of increases never increases the reward" reading: it is local to
  each branch of ``of`` (for ``of = abs(theta)`` the two sides of 0 are compared separately).
  Proof: when the reward is continuous in ``f`` (no comparison, ``where`` condition or ``atan2``
  involving ``f``), it is piecewise analytic along ``f``, so the claim is equivalent to
  ``d reward/df * d of/df <= 0`` (``>= 0``) wherever ``where`` may hold, and the interval proof
  bounds that product. Otherwise only property tests run. Pairs with an undefined reward are
  skipped.
* ``independent`` (``of`` = a feature name): changing that feature alone never changes the reward.
  Proved when the formula does not mention the feature; otherwise tested (exact equality up to
  1e-9 relative).

Conditions are formulas, true where non-zero (NaN counts as true, as in the kernels).

Limits of the proofs: interval bounds overestimate when a feature appears several times (the
dependency problem), so a bound that is tight along a curve (``x**2 - 2*x*y + y**2 >= 0``) runs
out of budget and is tested instead; so does a strict sign that becomes tight at an open
boundary (``x > 0`` where ``x > 0``). Counterexamples found by branch-and-bound are simplified
(features moved to 0, integers or fewer decimals while still violating) rather than shrunk by
hypothesis.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import mpmath
import numpy as np
import sympy
from mpmath import iv

from symreward import formula
from symreward.errors import SymrewardError
from symreward.evaluate import feature_columns

if TYPE_CHECKING:
    from symreward.artifact import RewardArtifact

__all__ = ["InvariantError", "InvariantResult", "check", "format_result", "parse_invariants"]

STATUSES = ("proved", "held", "violated", "vacuous", "unknown")
SIGNS = ("negative", "positive", "nonpositive", "nonnegative")
WIDE = 1e6  # property tests sample an unbounded side of a feature up to this magnitude
_COMMON = ("rule", "domain", "note")
_KEYS = {
    "bounded": ((), ("lo", "hi")),
    "decreasing": (("of",), ("where",)),
    "increasing": (("of",), ("where",)),
    "prefers": (("better", "worse"), ()),
    "independent": (("of",), ()),
    "sign": (("is",), ("when",)),
}
_TOLERANCE = 1e-9


class InvariantError(SymrewardError):
    """An invariant that cannot be checked: names the artifact, the invariant and the field."""


# -- parsed invariants ---------------------------------------------------------------------


@dataclass
class Invariant:
    """One validated invariant: its parsed formulas and its domain box."""

    index: int
    rule: str
    spec: dict[str, Any]
    domain: dict[str, tuple[float, float]]
    condition: sympy.Expr | None = None  # where / when
    better: sympy.Expr | None = None
    worse: sympy.Expr | None = None
    of: sympy.Expr | None = None
    feature: str | None = None  # the one feature `of` uses (monotone, independent)
    # interval functions of the condition and of d of/d feature, for the segment tests
    condition_iv: _IV | None = field(default=None, repr=False)
    slope_iv: _IV | None = field(default=None, repr=False)

    @property
    def description(self) -> str:
        shown = ", ".join(f"{k} = {v!r}" for k, v in self.spec.items()
                          if k not in ("rule", "note"))
        return f"{self.rule}" + (f" ({shown})" if shown else "")


def _recorded_ranges(artifact: RewardArtifact) -> dict[str, tuple[float, float]]:
    ranges = artifact.provenance.get("feature_ranges") or {}
    if not isinstance(ranges, Mapping):
        raise InvariantError(f"{artifact.source}: provenance.feature_ranges must be a table of "
                             "feature = [lo, hi]")
    box = {}
    for name in artifact.features.names:
        box[name] = (-math.inf, math.inf)
        if name in ranges:
            box[name] = _pair(ranges[name], f"{artifact.source}: provenance.feature_ranges.{name}")
    return box


def _pair(value: Any, where: str) -> tuple[float, float]:
    if (not isinstance(value, list | tuple) or len(value) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)):
        raise InvariantError(f"{where}: must be [lo, hi] with two numbers, not {value!r}")
    lo, hi = float(value[0]), float(value[1])
    if math.isnan(lo) or math.isnan(hi) or lo > hi:
        raise InvariantError(f"{where}: [lo, hi] needs lo <= hi, got {value!r}")
    return lo, hi


def parse_invariants(artifact: RewardArtifact) -> list[Invariant]:
    """Validate every invariant of ``artifact``; raises ``InvariantError`` listing all problems."""
    names = artifact.features.names
    base = _recorded_ranges(artifact)
    parsed, problems = [], []
    for index, spec in enumerate(artifact.invariants):
        where = f"{artifact.source}: invariants[{index}]"
        try:
            parsed.append(_parse_one(index, dict(spec), names, base, where))
        except InvariantError as exc:
            problems.append(str(exc))
    if problems:
        raise InvariantError("; ".join(problems) if len(problems) == 1 else
                             f"{len(problems)} problems:\n  " + "\n  ".join(problems))
    return parsed


def _parse_one(index: int, spec: dict[str, Any], names: Sequence[str],
               base: Mapping[str, tuple[float, float]], where: str) -> Invariant:
    rule = spec.get("rule")
    if rule not in _KEYS:
        raise InvariantError(f"{where}.rule: {rule!r} is not one of {', '.join(_KEYS)}")
    required, optional = _KEYS[rule]
    allowed = (*_COMMON, *required, *optional)
    for key in spec:
        if key not in allowed:
            raise InvariantError(f"{where}: unknown key '{key}' for rule '{rule}' (expected "
                                 f"{', '.join(allowed)})")
    for key in required:
        if key not in spec:
            raise InvariantError(f"{where}: rule '{rule}' needs '{key}'")
    domain = dict(base)
    if "domain" in spec:
        table = spec["domain"]
        if not isinstance(table, Mapping):
            raise InvariantError(f"{where}.domain: must be a table of feature = [lo, hi]")
        for name, value in table.items():
            if name not in names:
                raise InvariantError(f"{where}.domain: unknown feature '{name}' (known: "
                                     f"{', '.join(names)})")
            domain[name] = _pair(value, f"{where}.domain.{name}")
    invariant = Invariant(index=index, rule=rule, spec=spec, domain=domain)

    def expr(key: str) -> sympy.Expr:
        text = spec[key]
        if not isinstance(text, str):
            raise InvariantError(f"{where}.{key}: must be a formula string, not "
                                 f"{type(text).__name__}")
        try:
            return formula.parse(text, names)
        except SymrewardError as exc:
            raise InvariantError(f"{where}.{key}: {exc}") from None

    if rule == "bounded":
        if "lo" not in spec and "hi" not in spec:
            raise InvariantError(f"{where}: rule 'bounded' needs 'lo', 'hi' or both")
        for key in ("lo", "hi"):
            value = spec.get(key, 0.0)
            if not isinstance(value, int | float) or isinstance(value, bool) or value != value:
                raise InvariantError(f"{where}.{key}: must be a number, not {value!r}")
        if "lo" in spec and "hi" in spec and spec["lo"] > spec["hi"]:
            raise InvariantError(f"{where}: lo = {spec['lo']} is above hi = {spec['hi']}")
    elif rule == "sign":
        if spec["is"] not in SIGNS:
            raise InvariantError(f"{where}.is: {spec['is']!r} is not one of {', '.join(SIGNS)}")
        invariant.condition = expr("when") if "when" in spec else None
    elif rule == "prefers":
        invariant.better, invariant.worse = expr("better"), expr("worse")
    elif rule == "independent":
        if spec["of"] not in names:
            raise InvariantError(f"{where}.of: must name a feature (one of {', '.join(names)}), "
                                 f"not {spec['of']!r}")
        invariant.feature = spec["of"]
    else:
        invariant.of = expr("of")
        used = sorted(s.name for s in invariant.of.free_symbols)
        if len(used) != 1:
            raise InvariantError(f"{where}.of: must use exactly one feature, uses "
                                 f"{', '.join(used) or 'none'} (only monotonicity along one "
                                 "feature is supported)")
        if _discontinuous_in(invariant.of, used[0]):
            raise InvariantError(f"{where}.of: must be continuous in {used[0]} (no comparison, "
                                 "where or atan2)")
        invariant.feature = used[0]
        invariant.condition = expr("where") if "where" in spec else None
    return invariant


def _discontinuous_in(expr: sympy.Expr, name: str) -> bool:
    """Whether ``expr`` may jump as feature ``name`` moves: it has a comparison, a where
    condition or an atan2 that involves the feature."""
    sym = formula.symbol(name)
    for node in sympy.preorder_traversal(expr):
        if isinstance(node, formula.Comparison | sympy.atan2) and node.has(sym):
            return True
        if isinstance(node, formula.Where) and node.args[0].has(sym):
            return True
    return False


# -- interval arithmetic ------------------------------------------------------------------


class _Undefined(Exception):
    """The expression may be undefined (NaN or infinite) somewhere in the box."""


_IV = Callable[[Mapping[str, Any]], Any]


def _lo(x: Any) -> mpmath.mpf:
    return mpmath.mpf(x._mpi_[0])


def _hi(x: Any) -> mpmath.mpf:
    return mpmath.mpf(x._mpi_[1])


def _hull(*xs: Any) -> Any:
    return iv.mpf([min(_lo(x) for x in xs), max(_hi(x) for x in xs)])


def _monotone(point: Callable[[Any], Any], x: Any) -> Any:
    """An increasing function over an interval: the hull of its (interval) values at the ends."""
    return _hull(point(iv.mpf(_lo(x))), point(iv.mpf(_hi(x))))


def _tanh_point(x: Any) -> Any:
    if _hi(x) > 0:
        return 1 - 2 / (iv.exp(2 * x) + 1)
    return 2 / (1 + iv.exp(-2 * x)) - 1


def _sign(x: Any) -> Any:
    lo, hi = _lo(x), _hi(x)
    if lo > 0:
        return iv.mpf(1)
    if hi < 0:
        return iv.mpf(-1)
    return iv.mpf([-1 if lo < 0 else 0, 1 if hi > 0 else 0])


def _compare(kind: str, a: Any, b: Any) -> Any:
    d = a - b  # the comparison is a ? b, i.e. d ? 0
    lo, hi = _lo(d), _hi(d)
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
    raise _Unsupported(f"constant {expr}")


class _Unsupported(Exception):
    """The interval evaluator has no rule for this node."""


def interval_function(expr: sympy.Expr) -> _IV:
    """Compile ``expr`` into ``f(box) -> mpmath interval`` that encloses its value over the box
    (``box`` maps symbol names to ``iv.mpf``). Raises ``_Undefined`` where the expression may be
    undefined in the box and ``_Unsupported`` (at compile time) for nodes it has no rule for."""
    if expr.is_Symbol:
        name = expr.name
        return lambda box: box[name]
    if expr.is_Number or expr in (sympy.pi, sympy.E):
        value = _constant(expr)
        return lambda box: value
    args = [interval_function(a) for a in expr.args]
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
        return _power(expr, *args)
    if isinstance(expr, formula.Comparison):
        kind = type(expr).__name__
        return lambda box: _compare(kind, args[0](box), args[1](box))
    if isinstance(expr, formula.Where):
        def where(box: Mapping[str, Any]) -> Any:
            try:
                c = args[0](box)
            except _Undefined:
                return _hull(args[1](box), args[2](box))
            if _lo(c) > 0 or _hi(c) < 0:
                return args[1](box)
            if _lo(c) == 0 and _hi(c) == 0:
                return args[2](box)
            return _hull(args[1](box), args[2](box))
        return where
    if isinstance(expr, sympy.Min | sympy.Max):
        pick = min if isinstance(expr, sympy.Min) else max

        def extreme(box: Mapping[str, Any]) -> Any:
            values = [f(box) for f in args]
            return iv.mpf([pick(_lo(v) for v in values), pick(_hi(v) for v in values)])
        return extreme
    unary = {sympy.Abs: _abs, sympy.exp: iv.exp, sympy.sin: iv.sin, sympy.cos: iv.cos,
             sympy.sign: _sign, sympy.log: _log, sympy.tanh: lambda x: _monotone(_tanh_point, x),
             sympy.Heaviside: _heaviside}
    for kind, function in unary.items():
        if isinstance(expr, kind) and len(args) >= 1:
            f = args[0]
            return lambda box: function(f(box))
    if isinstance(expr, sympy.atan2):
        return lambda box: _atan2(args[0](box), args[1](box))
    if isinstance(expr, sympy.atan):  # sympy folds atan2(y, c > 0) to atan(y / c)
        return lambda box: _widen(iv.atan2(args[0](box), iv.mpf(1)))
    raise _Unsupported(type(expr).__name__)


def _mul(a: Any, b: Any) -> Any:
    """a * b, enclosing products of finite reals: an infinite end times a zero end is 0 (the
    infinite end is a limit no value reaches), where mpmath would widen to [-inf, inf]."""
    ends_a, ends_b = (_lo(a), _hi(a)), (_lo(b), _hi(b))
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
            lows.append(_lo(p))
            highs.append(_hi(p))
    return iv.mpf([min(lows), max(highs)])


def _abs(x: Any) -> Any:
    lo, hi = _lo(x), _hi(x)
    if lo >= 0:
        return x
    if hi <= 0:
        return -x
    return iv.mpf([0, max(-lo, hi)])


def _heaviside(x: Any) -> Any:
    lo, hi = _lo(x), _hi(x)
    if lo > 0:
        return iv.mpf(1)
    if hi < 0:
        return iv.mpf(0)
    return iv.mpf([0, 1])


def _log(x: Any) -> Any:
    if _lo(x) <= 0:
        raise _Undefined
    return iv.log(x)


def _widen(x: Any) -> Any:
    """``x`` widened by a few units in the last place each side: mpmath's interval atan2 is
    not outward-rounded at every endpoint (found by the soundness test)."""
    lo, hi = _lo(x), _hi(x)
    eps = mpmath.mpf(2) ** -48
    return iv.mpf([lo - abs(lo) * eps - mpmath.mpf(2) ** -1000,
                   hi + abs(hi) * eps + mpmath.mpf(2) ** -1000])


def _atan2(y: Any, x: Any) -> Any:
    if _lo(x) == 0 and _hi(x) == 0 and _lo(y) == 0 and _hi(y) == 0:
        return iv.mpf(0)
    if _lo(x) <= 0 <= _hi(x) and _lo(y) <= 0 <= _hi(y):
        return _widen(_hull(iv.atan2(y, x), iv.mpf(0)))
    return _widen(iv.atan2(y, x))


def _power(expr: sympy.Pow, base: _IV, exponent: _IV) -> _IV:
    e = expr.exp
    if e.is_Integer:
        n = int(e)

        def integer_power(box: Mapping[str, Any]) -> Any:
            b = base(box)
            if n < 0 and _lo(b) <= 0 <= _hi(b):
                raise _Undefined
            if n % 2 == 0 and n > 0:
                return _abs(b) ** n
            return b ** n
        return integer_power
    if e.is_Number:
        value = _constant(e)
        negative = bool(e < 0)

        def real_power(box: Mapping[str, Any]) -> Any:
            b = base(box)
            if _lo(b) < 0 or (negative and _lo(b) <= 0):
                raise _Undefined
            if _hi(b) == 0:
                return iv.mpf(0)
            return b ** value
        return real_power

    def general_power(box: Mapping[str, Any]) -> Any:
        b = base(box)
        if _lo(b) <= 0:
            raise _Undefined
        return iv.exp(exponent(box) * iv.log(b))
    return general_power


# -- point evaluation ---------------------------------------------------------------------


def point_function(expr: sympy.Expr, names: Sequence[str]) -> Callable[..., float]:
    """``f(*feature_values) -> float`` with the kernels' semantics (NaN compares false, ...)."""
    symbols = [formula.symbol(n) for n in names]
    function = sympy.lambdify(symbols, expr, modules=[formula.NUMPY_FUNCTIONS, "numpy"])

    def call(*values: float) -> float:
        # numpy scalars, so 0.0 ** -1 is inf as in the kernels (Python floats would raise)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(function(*(np.float64(v) for v in values)))
    return call


class _Reward:
    """The reward of an artifact as point and interval functions over its features."""

    def __init__(self, artifact: RewardArtifact):
        self.names = list(artifact.features.names)
        self.term_names = artifact.term_names
        self.terms = artifact.term_exprs()
        self.expr = sympy.Add(*self.terms)
        self.total = point_function(self.expr, self.names)
        self.parts = [point_function(t, self.names) for t in self.terms]

    def at(self, state: Mapping[str, float]) -> float:
        return self.total(*(state[n] for n in self.names))

    def contributions(self, state: Mapping[str, float]) -> dict[str, float]:
        values = [state[n] for n in self.names]
        return {name: part(*values) for name, part in zip(self.term_names, self.parts,
                                                          strict=True)}


# -- branch and bound ---------------------------------------------------------------------


@dataclass
class _Outcome:
    status: str  # proved | vacuous | violated | unknown
    point: dict[str, float] | None = None
    boxes: int = 0


def _split_point(lo: float, hi: float) -> float:
    if math.isinf(lo) and math.isinf(hi):
        return 0.0
    if math.isinf(hi):
        return lo + max(1.0, abs(lo))
    if math.isinf(lo):
        return hi - max(1.0, abs(hi))
    return lo + (hi - lo) / 2


def _width(lo: float, hi: float) -> float:
    return math.inf if math.isinf(lo) or math.isinf(hi) else hi - lo


def _splittable(lo: float, hi: float) -> bool:
    if math.isinf(lo) or math.isinf(hi):
        return True
    return hi - lo > 1e-9 * (1 + abs(lo) + abs(hi))


def _maximise(g: sympy.Expr, cond: sympy.Expr | None, domain: Mapping[str, tuple[float, float]],
              threshold: float, strict: bool, deadline: float,
              names: Sequence[str]) -> _Outcome:
    """Decide ``g <= threshold`` (``<`` when strict) wherever ``cond`` may hold in ``domain``.

    Branch-and-bound over boxes: a box is discarded when the interval of ``cond`` is exactly 0,
    accepted when the interval of ``g`` meets the threshold; otherwise its midpoint is tried as a
    counterexample (``cond`` true there and ``g`` beyond the threshold or NaN) and it is split
    along its widest relevant side. ``proved`` only when every box was discarded or accepted,
    and ``vacuous`` when every box was discarded.
    """
    try:
        g_iv = interval_function(g)
        c_iv = interval_function(cond) if cond is not None else None
    except _Unsupported:
        return _Outcome("unknown")
    g_pt = point_function(g, names)
    c_pt = point_function(cond, names) if cond is not None else None
    relevant = sorted({s.name for s in g.free_symbols}
                      | ({s.name for s in cond.free_symbols} if cond is not None else set()))
    fixed = {n: _split_point(*domain[n]) for n in names}
    threshold_mp = mpmath.mpf(threshold)
    counter = itertools.count()
    heap: list[tuple[float, int, dict[str, tuple[float, float]]]] = [
        (0.0, next(counter), {n: domain[n] for n in relevant})]
    boxes, accepted, unresolved = 0, 0, False
    while heap:
        if time.monotonic() > deadline:
            return _Outcome("unknown", boxes=boxes)
        _, _, box = heapq.heappop(heap)
        boxes += 1
        ivbox = {n: iv.mpf([lo, hi]) for n, (lo, hi) in box.items()}
        if c_iv is not None:
            try:
                c = c_iv(ivbox)
                if _lo(c) == 0 and _hi(c) == 0:
                    continue
            except _Undefined:
                pass
        try:
            upper = _hi(g_iv(ivbox))
            if upper < threshold_mp or (not strict and upper == threshold_mp):
                accepted += 1
                continue
        except _Undefined:
            upper = mpmath.inf
        point = dict(fixed) | {n: _split_point(lo, hi) for n, (lo, hi) in box.items()}
        values = [point[n] for n in names]
        if c_pt is None or c_pt(*values) != 0:
            value = g_pt(*values)
            slack = 0.0 if strict else _TOLERANCE * (1 + abs(threshold))
            if value != value or value > threshold + slack or (strict and value == threshold):
                return _Outcome("violated", point=point, boxes=boxes)
        splittable = [n for n in relevant if _splittable(*box[n])]
        if not splittable:
            unresolved = True
            continue
        side = max(splittable, key=lambda n: _width(*box[n]))
        lo, hi = box[side]
        middle = _split_point(lo, hi)
        priority = -float(upper) if mpmath.isfinite(upper) else -math.inf
        for part in ((lo, middle), (middle, hi)):
            heapq.heappush(heap, (priority, next(counter), box | {side: part}))
    if unresolved:
        return _Outcome("unknown", boxes=boxes)
    return _Outcome("proved" if accepted else "vacuous", boxes=boxes)


def _symbolic_nonpositive(expr: sympy.Expr) -> bool:
    """sympy's assumptions say ``expr <= 0`` for every real value of its symbols. Used only for
    formulas that are defined everywhere (no division, roots, logarithms or odd functions)."""
    for node in sympy.preorder_traversal(expr):
        if isinstance(node, sympy.Pow) and not (node.exp.is_Integer and node.exp >= 0):
            return False
        if isinstance(node, sympy.log | sympy.atan2):
            return False
    return expr.is_nonpositive is True


# -- property tests -----------------------------------------------------------------------


def _float_range(lo: float, hi: float) -> tuple[float, float]:
    lo = -WIDE if math.isinf(lo) else lo
    hi = WIDE if math.isinf(hi) else hi
    return (lo, max(lo, hi))


def state_strategy(names: Sequence[str], domain: Mapping[str, tuple[float, float]],
                   near: np.ndarray | None = None) -> Any:
    """Hypothesis strategy of ``{feature: float}`` inside the domain box; with ``near`` (rows of
    feature values), also those rows and small perturbations of them, clipped into the box."""
    from hypothesis import strategies as st

    ranges = {n: _float_range(*domain[n]) for n in names}
    uniform = st.fixed_dictionaries({
        n: st.floats(lo, hi, allow_nan=False, allow_infinity=False)
        for n, (lo, hi) in ranges.items()})
    if near is None or len(near) == 0:
        return uniform
    rows = [tuple(float(v) for v in row) for row in near[:10_000]]
    scale = np.nanstd(near, axis=0) if len(near) > 1 else np.ones(len(names))

    def perturb(row: tuple[float, ...], noise: list[float]) -> dict[str, float]:
        state = {}
        for i, n in enumerate(names):
            lo, hi = ranges[n]
            value = row[i] + noise[i] * float(scale[i] if np.isfinite(scale[i]) else 0.0)
            state[n] = float(min(max(value, lo), hi)) if np.isfinite(value) else lo
        return state

    noise = st.lists(st.sampled_from([0.0, 0.0, 0.01, -0.01, 0.1, -0.1]), min_size=len(names),
                     max_size=len(names))
    return st.one_of(uniform, st.builds(perturb, st.sampled_from(rows), noise))


class _Found(Exception):
    pass


def _search(strategy: Any, problem: Callable[[Any], Any], examples: int
            ) -> tuple[Any, Any, int]:
    """Run hypothesis: ``problem(value)`` returns None or a description of a violation.
    Returns (minimal failing value, its description, examples run before the first failure)."""
    from hypothesis import HealthCheck, Phase, given, settings

    found: list[tuple[Any, Any]] = []
    count = [0]

    @settings(max_examples=max(1, examples), database=None, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck), report_multiple_bugs=False,
              phases=[Phase.generate, Phase.shrink], print_blob=False)
    @given(strategy)
    def run(value: Any) -> None:
        if not found:
            count[0] += 1
        outcome = problem(value)
        if outcome is not None:
            found.append((value, outcome))
            raise _Found

    try:
        run()
    except _Found:
        return found[-1][0], found[-1][1], count[0]
    return None, None, count[0]


# -- results ------------------------------------------------------------------------------


@dataclass
class InvariantResult:
    """The decision on one invariant."""

    index: int
    rule: str
    description: str
    status: str
    method: str
    examples: int = 0
    counterexample: dict[str, float] | None = None
    reward: float | None = None
    contributions: dict[str, float] | None = None
    other: dict[str, Any] | None = None  # the compared state of a pairwise rule
    detail: str = ""
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def format_result(result: InvariantResult) -> str:
    """One line per invariant, plus the counterexample block of a violation."""
    shown = f"N={result.examples}" if result.examples else ""
    line = (f"[{result.index}] {result.status:<8}  {result.description}  — {result.method}"
            f"{'  ' + shown if shown else ''}  ({result.seconds:.2f} s)")
    lines = [line]
    if result.detail:
        lines.append(f"    {result.detail}")
    if result.counterexample is not None:
        lines += _state_block("counterexample", result.counterexample, result.reward,
                              result.contributions)
    if result.other is not None:
        lines += _state_block("compared with", result.other["state"], result.other["reward"],
                              result.other["contributions"])
    return "\n".join(lines)


def _state_block(title: str, state: Mapping[str, float], reward: float | None,
                 contributions: Mapping[str, float] | None) -> list[str]:
    lines = [f"    {title}: " + ", ".join(f"{k} = {v:.6g}" for k, v in state.items())]
    if reward is not None:
        lines.append(f"      reward = {reward:.6g}")
    for name, value in (contributions or {}).items():
        lines.append(f"        {name:<16} {value:+.6g}")
    return lines


# -- deciding each rule -------------------------------------------------------------------


class _Checker:
    def __init__(self, artifact: RewardArtifact, near: np.ndarray | None, time_budget: float,
                 examples: int):
        self.reward = _Reward(artifact)
        self.names = self.reward.names
        self.near = near
        self.time_budget = time_budget
        self.examples = examples

    def run(self, invariant: Invariant) -> InvariantResult:
        start = time.monotonic()
        decide = {"bounded": self.bounded, "sign": self.sign, "prefers": self.prefers,
                  "decreasing": self.monotone, "increasing": self.monotone,
                  "independent": self.independent}[invariant.rule]
        result = decide(invariant, start + self.time_budget)
        result.seconds = time.monotonic() - start
        return result

    # helpers
    def _result(self, invariant: Invariant, status: str, method: str, **kwargs: Any
                ) -> InvariantResult:
        return InvariantResult(index=invariant.index, rule=invariant.rule,
                               description=invariant.description, status=status, method=method,
                               **kwargs)

    def _violation(self, invariant: Invariant, method: str, state: Mapping[str, float],
                   examples: int = 0, other: Mapping[str, float] | None = None,
                   detail: str = "") -> InvariantResult:
        state = {n: float(state[n]) for n in self.names}
        compared = None
        if other is not None:
            other = {n: float(other[n]) for n in self.names}
            compared = {"state": other, "reward": self.reward.at(other),
                        "contributions": self.reward.contributions(other)}
        return self._result(invariant, "violated", method, examples=examples,
                            counterexample=state, reward=self.reward.at(state),
                            contributions=self.reward.contributions(state), other=compared,
                            detail=detail)

    def _shrink(self, invariant: Invariant, state: Mapping[str, float],
                violates: Callable[[dict[str, float]], bool], keep: Iterable[str] = ()
                ) -> dict[str, float]:
        """Simplify a counterexample found by branch-and-bound, as hypothesis would: move each
        feature to 0, an integer or fewer decimals while the invariant stays violated."""
        state = {n: float(state[n]) for n in self.names}
        for name in self.names:
            if name in keep:
                continue
            lo, hi = invariant.domain[name]
            value = state[name]
            for candidate in (0.0, float(round(value)), *(round(value, d) for d in (1, 2, 3, 4))):
                if candidate == value or not lo <= candidate <= hi:
                    continue
                trial = state | {name: candidate}
                if violates(trial):
                    state = trial
                    break
        return state

    def _data_states(self, invariant: Invariant) -> list[dict[str, float]]:
        """The data's own states inside the invariant's domain, each tried exactly: a random
        search may well miss the one state that matters."""
        if self.near is None or not len(self.near):
            return []
        inside = np.ones(len(self.near), dtype=bool)
        for i, name in enumerate(self.names):
            lo, hi = invariant.domain[name]
            inside &= (self.near[:, i] >= lo) & (self.near[:, i] <= hi)
        return [dict(zip(self.names, map(float, row), strict=True))
                for row in self.near[inside][:50_000]]

    def _states(self, invariant: Invariant) -> Any:
        return state_strategy(self.names, invariant.domain, self.near)

    def _condition_check(self, invariant: Invariant, cond: sympy.Expr | None, what: str,
                         deadline: float) -> InvariantResult | dict[str, float] | None:
        """A vacuous result when ``cond`` is proved never to hold on the domain, else a state
        where it holds (when one was found) or None."""
        if cond is None:
            return None
        budget = time.monotonic() + (deadline - time.monotonic()) / 4
        outcome = _maximise(sympy.Integer(0), cond, invariant.domain, -1.0, False, budget,
                            self.names)
        if outcome.status == "vacuous":
            return self._result(invariant, "vacuous", f"interval proof ({outcome.boxes} boxes)",
                                detail=f"'{what}' never holds on the domain")
        return outcome.point

    def _bound_rule(self, invariant: Invariant, deadline: float,
                    goals: list[tuple[sympy.Expr, float, bool]], cond: sympy.Expr | None,
                    holds: Callable[[float], bool]) -> InvariantResult:
        """Rules of the form: wherever ``cond`` holds, ``g <= t`` for each goal (g, t, strict)."""
        total = 0
        proved_all, method = True, "symbolic"
        for g, threshold, strict in goals:
            if cond is None and not strict and _symbolic_nonpositive(g - threshold):
                continue
            outcome = _maximise(g, cond, invariant.domain, threshold, strict, deadline,
                                self.names)
            total += outcome.boxes
            if outcome.status == "violated":
                c_fn = point_function(cond, self.names) if cond is not None else None

                def violates(state: dict[str, float], c_fn: Any = c_fn) -> bool:
                    values = [state[n] for n in self.names]
                    met = c_fn is None or c_fn(*values) != 0
                    return met and not holds(self.reward.at(state))

                point = outcome.point
                if violates(point):
                    point = self._shrink(invariant, point, violates)
                return self._violation(invariant, f"branch-and-bound search ({total} boxes), "
                                       "shrunk", point)
            if outcome.status != "proved":
                proved_all = False
            else:
                method = "interval proof"
        if proved_all:
            return self._result(invariant, "proved", method + (f" ({total} boxes)" if total
                                                               else ""))
        c_pt = point_function(cond, self.names) if cond is not None else None
        met = [0]

        def problem(state: dict[str, float]) -> Any:
            values = [state[n] for n in self.names]
            if c_pt is not None and c_pt(*values) == 0:
                return None
            met[0] += 1
            return None if holds(self.reward.at(state)) else "out of bounds"

        for checked, row in enumerate(self._data_states(invariant), start=1):
            if problem(row) is not None:
                return self._violation(invariant, "data point", row, checked)
        met[0] = 0
        state, _, tried = _search(self._states(invariant), problem, self.examples)
        if state is not None:
            return self._violation(invariant, "property test (hypothesis)", state, tried)
        if met[0] == 0:
            return self._result(invariant, "unknown", "property test (hypothesis)",
                                examples=tried, detail="the condition was never met")
        return self._result(invariant, "held", "property test (hypothesis)", examples=tried,
                            detail="" if met[0] == tried else f"condition met in {met[0]}")

    def bounded(self, invariant: Invariant, deadline: float) -> InvariantResult:
        lo, hi = invariant.spec.get("lo"), invariant.spec.get("hi")
        goals = []
        if hi is not None:
            goals.append((self.reward.expr, float(hi), False))
        if lo is not None:
            goals.append((-self.reward.expr, -float(lo), False))

        def holds(r: float) -> bool:
            return (r == r and (lo is None or r >= lo - _TOLERANCE * (1 + abs(lo)))
                    and (hi is None or r <= hi + _TOLERANCE * (1 + abs(hi))))
        return self._bound_rule(invariant, deadline, goals, None, holds)

    def sign(self, invariant: Invariant, deadline: float) -> InvariantResult:
        vacuous = self._condition_check(invariant, invariant.condition, "when", deadline)
        if isinstance(vacuous, InvariantResult):
            return vacuous
        kind = invariant.spec["is"]
        r = self.reward.expr
        goal = {"negative": (r, 0.0, True), "nonpositive": (r, 0.0, False),
                "positive": (-r, 0.0, True), "nonnegative": (-r, 0.0, False)}[kind]
        holds = {"negative": lambda v: v < 0, "nonpositive": lambda v: v <= _TOLERANCE,
                 "positive": lambda v: v > 0, "nonnegative": lambda v: v >= -_TOLERANCE}[kind]
        return self._bound_rule(invariant, deadline, [goal], invariant.condition, holds)

    def prefers(self, invariant: Invariant, deadline: float) -> InvariantResult:
        witnesses = []
        for cond, what in ((invariant.better, "better"), (invariant.worse, "worse")):
            found = self._condition_check(invariant, cond, what, deadline)
            if isinstance(found, InvariantResult):
                return found
            witnesses.append(found)
        r = self.reward.expr
        best = self._sample_extreme(invariant, invariant.better, True, witnesses[0])
        worst = self._sample_extreme(invariant, invariant.worse, False, witnesses[1])
        detail = ("the compared state meets 'better' but does not score above the "
                  "counterexample, which meets 'worse'")
        boxes = 0
        # Proved when max(reward over worse) < t <= min(reward over better) for a threshold t
        # between the extremes seen so far; a box midpoint beyond t improves them and t moves.
        while best is not None and worst is not None and time.monotonic() < deadline:
            if not best[0] > worst[0]:
                good, bad = self._shrink_preference(invariant, best[1], worst[1])
                return self._violation(invariant, "branch-and-bound search, shrunk", bad,
                                       other=good, detail=detail)
            t = best[0] / 2 + worst[0] / 2
            upper = _maximise(r, invariant.worse, invariant.domain, t, True, deadline,
                              self.names)
            boxes += upper.boxes
            if upper.status == "violated":
                worst = (self.reward.at(upper.point), upper.point)
                if worst[0] != worst[0]:
                    break
                continue
            lower = _maximise(-r, invariant.better, invariant.domain, -t, False, deadline,
                              self.names)
            boxes += lower.boxes
            if lower.status == "violated":
                best = (self.reward.at(lower.point), lower.point)
                if best[0] != best[0]:
                    break
                continue
            if upper.status == "proved" and lower.status == "proved":
                return self._result(invariant, "proved", f"interval proof ({boxes} boxes)")
            break
        b_pt = point_function(invariant.better, self.names)
        w_pt = point_function(invariant.worse, self.names)
        met = [0]

        def problem(pair: tuple[dict[str, float], dict[str, float]]) -> Any:
            good, bad = pair
            if b_pt(*(good[n] for n in self.names)) == 0:
                return None
            if w_pt(*(bad[n] for n in self.names)) == 0:
                return None
            met[0] += 1
            rg, rb = self.reward.at(good), self.reward.at(bad)
            return None if rg > rb else "not preferred"

        from hypothesis import strategies as st

        states = self._states(invariant)
        pair, _, tried = _search(st.tuples(states, states), problem, self.examples)
        if pair is not None:
            return self._violation(invariant, "property test (hypothesis)", pair[1], tried,
                                   other=pair[0],
                                   detail="the compared state meets 'better' but does not score "
                                          "above the counterexample, which meets 'worse'")
        if met[0] == 0 and (best is None or worst is None):
            return self._result(invariant, "unknown", "property test (hypothesis)",
                                examples=tried, detail="no sampled pair met both conditions")
        return self._result(invariant, "held", "property test (hypothesis)", examples=tried)

    def _shrink_preference(self, invariant: Invariant, good: Mapping[str, float],
                           bad: Mapping[str, float]) -> tuple[dict, dict]:
        """Simplify a pair (meets better, meets worse) whose rewards are in the wrong order."""
        b_pt = point_function(invariant.better, self.names)
        w_pt = point_function(invariant.worse, self.names)
        good, bad = dict(good), dict(bad)
        if not self.reward.at(good) > self.reward.at(bad):  # not NaN: shrinking keeps order
            r_good = self.reward.at(good)
            bad = self._shrink(invariant, bad, lambda s: w_pt(*(s[n] for n in self.names)) != 0
                               and not r_good > self.reward.at(s))
            r_bad = self.reward.at(bad)
            good = self._shrink(invariant, good,
                                lambda s: b_pt(*(s[n] for n in self.names)) != 0
                                and not self.reward.at(s) > r_bad)
        return good, bad

    def _sample_extreme(self, invariant: Invariant, cond: sympy.Expr, lowest: bool,
                        witness: Mapping[str, float] | None
                        ) -> tuple[float, dict[str, float]] | None:
        """The lowest (highest) reward among a deterministic sample of states meeting cond."""
        rng = np.random.default_rng(0)
        c_pt = point_function(cond, self.names)
        ranges = [_float_range(*invariant.domain[n]) for n in self.names]
        candidates = [rng.uniform([lo for lo, _ in ranges], [hi for _, hi in ranges])
                      for _ in range(max(200, self.examples))]
        if self.near is not None and len(self.near):
            candidates += list(self.near[:2000])
        if witness is not None:
            candidates.append([witness[n] for n in self.names])
        best = None
        for values in candidates:
            values = [float(min(max(v, lo), hi)) for v, (lo, hi) in zip(values, ranges,
                                                                          strict=True)]
            if c_pt(*values) == 0:
                continue
            state = dict(zip(self.names, values, strict=True))
            r = self.reward.at(state)
            if r != r:
                return (math.nan, state)
            if best is None or (r < best[0] if lowest else r > best[0]):
                best = (r, state)
        return best

    def monotone(self, invariant: Invariant, deadline: float) -> InvariantResult:
        vacuous = self._condition_check(invariant, invariant.condition, "where", deadline)
        if isinstance(vacuous, InvariantResult):
            return vacuous
        f = invariant.feature
        sym = formula.symbol(f)
        sense = -1 if invariant.rule == "decreasing" else 1
        r = sympy.Add(*[t for t in self.reward.terms if t.has(sym)])
        d_of = sympy.diff(invariant.of, sym)
        detail = ""
        if r == 0:
            return self._result(invariant, "proved", "symbolic",
                                detail=f"the reward does not depend on {f}")
        if _discontinuous_in(r, f):
            detail = f"no proof: the reward may jump as {f} changes"
        else:
            product = sympy.diff(r, sym) * d_of * (-sense)
            outcome = _maximise(product, invariant.condition, invariant.domain, 0.0, False,
                                deadline, self.names)
            if outcome.status == "vacuous":
                return self._result(invariant, "vacuous", f"interval proof ({outcome.boxes} "
                                    "boxes)", detail="'where' never holds on the domain")
            if outcome.status == "proved":
                return self._result(invariant, "proved",
                                    f"interval proof of d reward/d {f} × d of/d {f} "
                                    f"{'<=' if sense < 0 else '>='} 0 ({outcome.boxes} boxes)")
            if outcome.status == "violated":
                found = self._local_pair(invariant, outcome.point, sense, d_of)
                if found is not None:
                    return self._violation(invariant, "branch-and-bound search, shrunk",
                                           found[1], other=found[0],
                                           detail=self._pair_detail(invariant))
        return self._monotone_search(invariant, sense, d_of, detail)

    def _pair_detail(self, invariant: Invariant) -> str:
        word = "lower" if invariant.rule == "decreasing" else "higher"
        return (f"moving {invariant.feature} from the compared state to the counterexample "
                f"raises of = {invariant.spec['of']!r} but the reward is not {word} or equal")

    def _segment_ok(self, invariant: Invariant, state: Mapping[str, float], a: float, b: float,
                    d_of: Any) -> int:
        """+1 / -1 when ``of`` strictly increases / decreases from f=a to f=b and ``where``
        holds on the whole segment (interval-checked), else 0."""
        f = invariant.feature
        box = {n: iv.mpf(state[n]) for n in self.names}
        box[f] = iv.mpf([min(a, b), max(a, b)])
        try:
            if invariant.condition is not None:
                c = invariant.condition_iv(box)
                if _lo(c) <= 0 <= _hi(c):
                    return 0
            slope = invariant.slope_iv(box)
        except (_Undefined, _Unsupported):
            return 0
        direction = 1 if b > a else -1
        if _lo(slope) > 0:
            return direction
        if _hi(slope) < 0:
            return -direction
        return 0

    def _pair_problem(self, invariant: Invariant, sense: int, d_of: sympy.Expr,
                      met: list[int] | None = None
                      ) -> Callable[[dict[str, float], float, float], Any]:
        invariant.condition_iv = (interval_function(invariant.condition)
                                  if invariant.condition is not None else None)
        invariant.slope_iv = interval_function(d_of)
        f = invariant.feature

        def problem(state: dict[str, float], a: float, b: float) -> Any:
            if a == b:
                return None
            up = self._segment_ok(invariant, state, a, b, d_of)
            if up == 0:
                return None
            if met is not None:
                met[0] += 1
            start, end = state | {f: a}, state | {f: b}
            r0, r1 = self.reward.at(start), self.reward.at(end)
            if r0 != r0 or r1 != r1:
                return None
            change = (r1 - r0) * up  # reward change per unit rise of `of`
            tolerance = _TOLERANCE * (1 + abs(r0) + abs(r1))
            if change * sense < -tolerance:
                return (start, end) if up > 0 else (end, start)
            return None
        return problem

    def _local_pair(self, invariant: Invariant, point: Mapping[str, float], sense: int,
                    d_of: sympy.Expr) -> tuple[dict, dict] | None:
        try:
            problem = self._pair_problem(invariant, sense, d_of)
        except _Unsupported:
            return None
        f = invariant.feature
        lo, hi = invariant.domain[f]
        x = point[f]
        for step in (1e-2, 1e-3, 1e-4, 1e-6):
            h = step * max(1.0, abs(x))
            for a, b in ((x, x + h), (x - h, x)):
                if a >= lo and b <= hi and problem(dict(point), a, b) is not None:
                    return self._shrink_pair(invariant, dict(point), a, b, problem)
        return None

    def _shrink_pair(self, invariant: Invariant, state: dict[str, float], a: float, b: float,
                     problem: Callable[[dict[str, float], float, float], Any]
                     ) -> tuple[dict, dict]:
        f = invariant.feature
        state = self._shrink(invariant, state, lambda s: problem(s, a, b) is not None, keep=[f])
        for digits in (1, 2, 3, 4, 6):
            ra, rb = round(a, digits), round(b, digits)
            if ra != rb and (ra, rb) != (a, b) and problem(state, ra, rb) is not None:
                a, b = ra, rb
                break
        return problem(state, a, b)

    def _monotone_search(self, invariant: Invariant, sense: int, d_of: sympy.Expr,
                         detail: str) -> InvariantResult:
        from hypothesis import strategies as st

        met = [0]
        try:
            problem = self._pair_problem(invariant, sense, d_of, met)
        except _Unsupported as exc:
            return self._result(invariant, "unknown", "none",
                                detail=f"cannot test: no interval rule for {exc}")
        f = invariant.feature
        lo, hi = _float_range(*invariant.domain[f])
        values = st.floats(lo, hi, allow_nan=False)
        # the second end: anywhere, or a step of up to 5% of the range from the first
        steps = st.floats(-0.05, 0.05, allow_nan=False).map(lambda s: s * max(1.0, hi - lo))

        def wrapped(case: tuple[dict[str, float], float, Any]) -> Any:
            state, a, b = case
            b = float(min(max(b if isinstance(b, float) else a + b[0], lo), hi))
            return problem(state, a, b)

        strategy = st.tuples(self._states(invariant), values,
                             st.one_of(values, st.tuples(steps)))
        case, pair, tried = _search(strategy, wrapped, self.examples)
        if case is not None:
            earlier, later = pair
            return self._violation(invariant, "property test (hypothesis)", later, tried,
                                   other=earlier, detail=self._pair_detail(invariant))
        if met[0] == 0:
            return self._result(invariant, "unknown", "property test (hypothesis)",
                                examples=tried, detail="no sampled segment met the conditions")
        counted = f"{met[0]} sampled segments met the conditions"
        return self._result(invariant, "held", "property test (hypothesis)", examples=tried,
                            detail=f"{detail}; {counted}" if detail else counted)

    def independent(self, invariant: Invariant, deadline: float) -> InvariantResult:
        from hypothesis import strategies as st

        f = invariant.feature
        if not self.reward.expr.has(formula.symbol(f)):
            return self._result(invariant, "proved", "symbolic",
                                detail=f"the formula does not mention {f}")
        lo, hi = _float_range(*invariant.domain[f])

        def problem(case: tuple[dict[str, float], float]) -> Any:
            state, b = case
            other = state | {f: b}
            r0, r1 = self.reward.at(state), self.reward.at(other)
            if r0 != r0 and r1 != r1:
                return None
            if not abs(r1 - r0) <= _TOLERANCE * (1 + abs(r0) + abs(r1)):
                return (state, other)
            return None

        case, pair, tried = _search(st.tuples(self._states(invariant),
                                              st.floats(lo, hi, allow_nan=False)),
                                    problem, self.examples)
        if case is not None:
            return self._violation(invariant, "property test (hypothesis)", pair[1], tried,
                                   other=pair[0],
                                   detail=f"only {f} differs, but the reward changes")
        return self._result(invariant, "held", "property test (hypothesis)", examples=tried)


def data_features(artifact: RewardArtifact, dataset: Any) -> np.ndarray:
    """Every feature's value on each transition of ``dataset``, columns in
    ``artifact.features.names`` order."""
    return feature_columns(dataset, artifact.features)


def check(artifact: RewardArtifact, data: Any = None, *, time_budget: float = 2.0,
          examples: int = 200, indices: Iterable[int] | None = None) -> list[InvariantResult]:
    """Decide the invariants of ``artifact`` (all, or those at ``indices``).

    ``data`` is an optional ``Dataset`` (property tests then also try its states and
    perturbations of them) or an (N, n_features) array of feature values. ``time_budget`` is
    the seconds each proof may take; ``examples`` the hypothesis examples per invariant.
    """
    if time_budget < 0 or examples < 1:
        raise InvariantError("time_budget must be >= 0 and examples >= 1")
    invariants = parse_invariants(artifact)
    near = None
    if data is not None:
        near = (np.asarray(data, dtype=np.float64) if isinstance(data, np.ndarray)
                else data_features(artifact, data))
        near = near[np.all(np.isfinite(near), axis=1)]
    checker = _Checker(artifact, near, time_budget, examples)
    chosen = set(indices) if indices is not None else None
    return [checker.run(inv) for inv in invariants if chosen is None or inv.index in chosen]
