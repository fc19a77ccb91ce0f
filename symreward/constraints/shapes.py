"""What invariants say about the sign of each term's weight (shape constraints, as in
Kronberger et al. 2022, "Shape-constrained symbolic regression"), decided soundly by the
invariants' interval proofs over the domain box, never by sampling.

For a reward ``sum_k w_k t_k``, an invariant holds when every weighted term keeps it on its
own; ``ShapeRules.bounds(t)`` gives the bounds on ``t``'s weight that make it so, where the
term's shape is proved:

* ``decreasing`` / ``increasing`` (``of`` of feature ``f``, ``where``): ``of``'s branches are
  found along ``f`` (pieces of the domain where ``d of/d f`` has a proved strict sign; the
  points where it turns are left out, as the rule compares only states on a segment where
  ``of`` is strictly monotone). A term proved monotone in ``f`` on each branch (where ``where``
  may hold), in the direction that makes it rise with ``of`` on every branch, gets a weight
  ``<= 0`` for ``decreasing``, ``>= 0`` for ``increasing``; falling with ``of``, the reverse.
  So ``theta**2`` under ``decreasing of = "abs(theta)"`` gets ``w <= 0``, and so does
  ``(theta > 0.5)``. Monotone in ``f``: by the proved sign of ``d t/d f`` where the term is
  continuous in ``f``, else by its structure (``_monotone``).
* ``bounded`` with ``hi <= 0``, and ``sign`` nonpositive / negative (where ``when`` may hold):
  a term proved ``>= 0`` there gets ``w <= 0``, one proved ``<= 0`` gets ``w >= 0``; with
  ``lo >= 0`` (nonnegative / positive) the reverse. Then every weighted term is ``<= 0`` (``>=
  0``), whatever the others do. An intercept, where the objective reports one, is bounded by
  ``hi`` (``lo``). A bound with room on both sides (``hi > 0``) gives no sign.
* ``independent`` (``of`` = ``f``): a term that reads ``f`` gets ``w = 0``.
* ``prefers``: no sign (a preference between regions is not a property of one term).

A term whose shape is not proved within ``SHAPE_BOXES`` boxes gets no bound from that
invariant; the learned reward is checked
afterwards (``symreward harden``). The bounds are sufficient conditions: a reward can meet an
invariant with terms that break them (one term's rise paid back by another's fall).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import sympy
from mpmath import iv

from symreward import formula
from symreward.invariants.branch_and_bound import maximise
from symreward.invariants.intervals import Undefined, Unsupported, interval_function, lower, upper
from symreward.invariants.monotone import discontinuous_in
from symreward.invariants.spec import Invariant

# Boxes branch-and-bound may examine for one decision: a count, not a time, so that the
# constraints, and the learned reward, do not depend on the machine's speed.
SHAPE_BOXES = 200
# The most pieces the branches of ``of`` are cut into, and the width (relative) below which a
# piece where ``d of/d f`` has no proved sign is a turning point and left out.
MAX_PIECES = 64
_POINT = 1e-9

Bounds = tuple[float, float]


class ShapeRules:
    """The sign bounds ``invariants`` put on the weights of terms over the features
    ``names``; each term is decided once (``bounds`` caches by expression)."""

    def __init__(self, invariants: Sequence[Invariant], names: Sequence[str]):
        self.invariants = list(invariants)
        self.names = list(names)
        self.branches = {inv.index: _branches(inv) for inv in self.invariants
                         if inv.rule in ("decreasing", "increasing")}
        self._cache: dict[sympy.Expr, Bounds] = {}

    def bounds(self, term: sympy.Expr) -> Bounds:
        """``(lower, upper)`` of the term's weight: each ``0`` or infinite."""
        if term not in self._cache:
            low, high = -math.inf, math.inf
            for invariant in self.invariants:
                direction = self._direction(term, invariant)
                if direction > 0:
                    low = 0.0
                elif direction < 0:
                    high = 0.0
                elif direction == 0 and invariant.rule == "independent":
                    low = high = 0.0
            self._cache[term] = (low, high)
        return self._cache[term]

    def intercept_bounds(self) -> Bounds:
        """The bounds on a reported intercept: ``bounded`` and ``sign`` rules that leave no
        room on one side bound it by their ``hi`` (``lo``)."""
        low, high = -math.inf, math.inf
        for invariant in self.invariants:
            side = _bound_side(invariant)
            if side is None:
                continue
            limit = side[1]
            if side[0] < 0:
                high = min(high, limit)
            else:
                low = max(low, limit)
        return low, high

    def _direction(self, term: sympy.Expr, invariant: Invariant) -> float:
        """+1: the weight must be >= 0; -1: <= 0; 0 with ``independent``: must be 0; else
        nothing (``math.nan``)."""
        if invariant.rule == "independent":
            return 0.0 if term.has(formula.symbol(invariant.feature)) else math.nan
        if invariant.rule in ("decreasing", "increasing"):
            rises = self._rises(term, invariant)
            sense = -1 if invariant.rule == "decreasing" else 1
            return math.nan if rises == 0 else float(sense * rises)
        side = _bound_side(invariant)
        if side is None:
            return math.nan
        sign = self._sign(term, invariant)
        # upper side (reward <= 0): a nonnegative term needs w <= 0, a nonpositive one w >= 0
        return math.nan if sign == 0 else float(side[0] * sign)

    def _sign(self, term: sympy.Expr, invariant: Invariant) -> int:
        """+1 / -1 where the term is proved >= 0 / <= 0 wherever the invariant's condition
        may hold on its domain (not both), else 0."""
        condition = invariant.condition
        at_least = _proved(-term, condition, invariant.domain, self.names)
        at_most = _proved(term, condition, invariant.domain, self.names)
        if at_least == at_most:
            return 0
        return 1 if at_least else -1

    def _rises(self, term: sympy.Expr, invariant: Invariant) -> int:
        """+1 / -1 where the term is proved to rise / fall with ``of`` on every branch, else
        0 (flat, undecided, or a term that does not read the feature)."""
        feature = invariant.feature
        assert feature is not None
        found = set()
        for lo, hi, turn in self.branches[invariant.index]:
            box = {**invariant.domain, feature: (lo, hi)}
            along = _monotone(term, feature, invariant.condition, box, self.names)
            if along is None:
                return 0
            found.add(turn * along)
        found.discard(0)
        return found.pop() if len(found) == 1 else 0


def _monotone(expr: sympy.Expr, feature: str, condition: sympy.Expr | None,
              box: Mapping[str, tuple[float, float]], names: Sequence[str]) -> int | None:
    """+1 / -1 where ``expr`` is proved not to fall / not to rise as ``feature`` grows, on the
    segments inside ``box`` where ``condition`` may hold; 0 where it does not depend on the
    feature; None where neither is proved. Continuous in the feature: by the sign of its
    derivative. Otherwise by its structure: a comparison moves with the difference it
    compares, sums, minima and maxima with their parts when these agree, a product with its
    one factor that reads the feature times the proved sign of the others, and increasing
    functions (exp, log, tanh, odd powers, roots) with their argument."""
    symbol = formula.symbol(feature)
    if not expr.has(symbol) or _constant_on(expr, box):
        return 0
    if not discontinuous_in(expr, feature):
        slope = sympy.diff(expr, symbol)
        up, down = (_proved(-slope, condition, box, names),
                    _proved(slope, condition, box, names))
        return 0 if up and down else 1 if up else -1 if down else None

    def inner(part: sympy.Expr) -> int | None:
        return _monotone(part, feature, condition, box, names)

    if isinstance(expr, formula.Comparison):
        lhs, rhs = expr.args
        rising = isinstance(expr, formula.Greater | formula.GreaterEqual)
        return inner(lhs - rhs if rising else rhs - lhs)
    if isinstance(expr, sympy.Add | sympy.Max | sympy.Min):
        return _agree([inner(part) for part in expr.args])
    if isinstance(expr, sympy.Mul):
        reading = [a for a in expr.args if a.has(symbol)]
        factor = sympy.Mul(*(a for a in expr.args if not a.has(symbol)))
        if len(reading) != 1:
            return None
        sign = (1 if _proved(-factor, condition, box, names) else
                -1 if _proved(factor, condition, box, names) else 0)
        along = inner(reading[0])
        return None if sign == 0 or along is None else sign * along
    if isinstance(expr, sympy.exp | sympy.log | sympy.tanh | sympy.atan):
        return inner(expr.args[0])
    if isinstance(expr, sympy.Pow) and expr.exp.is_Number and expr.exp > 0 and (
            not expr.exp.is_Integer or int(expr.exp) % 2 == 1):
        return inner(expr.base)
    if isinstance(expr, formula.Where) and not expr.args[0].has(symbol):
        return _agree([inner(expr.args[1]), inner(expr.args[2])])
    return None


def _constant_on(expr: sympy.Expr, box: Mapping[str, tuple[float, float]]) -> bool:
    """Whether the interval enclosure of ``expr`` over ``box`` is one number (a comparison
    that holds, or fails, on the whole box)."""
    try:
        value = interval_function(expr)({n: iv.mpf(list(side)) for n, side in box.items()})
    except (Undefined, Unsupported):
        return False
    return bool(lower(value) == upper(value))


def _agree(directions: Sequence[int | None]) -> int | None:
    """The one direction all the parts move in (0 where none moves), or None."""
    if any(d is None for d in directions):
        return None
    moving = {d for d in directions if d}
    return None if len(moving) > 1 else moving.pop() if moving else 0


def _bound_side(invariant: Invariant) -> tuple[int, float] | None:
    """(-1, hi) where the invariant bounds the reward above by ``hi <= 0``, (+1, lo) below by
    ``lo >= 0``, else None (bounds with room on both sides give no sign)."""
    spec = invariant.spec
    if invariant.rule == "sign":
        return (-1, 0.0) if spec["is"] in ("negative", "nonpositive") else (1, 0.0)
    if invariant.rule != "bounded":
        return None
    if "hi" in spec and spec["hi"] <= 0:
        return -1, float(spec["hi"])
    if "lo" in spec and spec["lo"] >= 0:
        return 1, float(spec["lo"])
    return None


def _proved(g: sympy.Expr, condition: sympy.Expr | None,
            domain: Mapping[str, tuple[float, float]], names: Sequence[str]) -> bool:
    """``g <= 0`` wherever ``condition`` may hold on ``domain``, proved (or the condition
    never holds) within ``SHAPE_BOXES`` boxes."""
    outcome = maximise(g, condition, domain, 0.0, False, math.inf, names,
                       max_boxes=SHAPE_BOXES)
    return outcome.status in ("proved", "vacuous")


def _branches(invariant: Invariant) -> list[tuple[float, float, int]]:
    """Pieces ``(lo, hi, turn)`` of the domain along the invariant's feature where
    ``d of/d f`` is proved ``> 0`` (``turn = 1``) or ``< 0`` (``-1``), adjacent pieces of one
    sign merged; turning points (pieces narrower than ``_POINT`` without a sign, or where
    ``of`` is flat) left out. Empty when the pieces would exceed ``MAX_PIECES``."""
    feature = invariant.feature
    assert feature is not None and invariant.of is not None
    try:
        slope = interval_function(sympy.diff(invariant.of, formula.symbol(feature)))
    except Unsupported:
        return []
    start, stop = invariant.domain[feature]
    pending = [(start, stop)]
    pieces: list[tuple[float, float, int]] = []
    evaluations = 0
    while pending:
        lo, hi = pending.pop()
        evaluations += 1
        if evaluations > 16 * MAX_PIECES:
            return []
        try:
            value = slope({feature: iv.mpf([lo, hi])})
            if lower(value) > 0 or upper(value) < 0:
                pieces.append((lo, hi, 1 if lower(value) > 0 else -1))
                continue
            if lower(value) == 0 and upper(value) == 0:
                continue
        except Undefined:
            pass
        if math.isfinite(lo) and math.isfinite(hi) and hi - lo <= _POINT * (1 + abs(lo) + abs(hi)):
            continue
        middle = _middle(lo, hi)
        pending += [(middle, hi), (lo, middle)]
    pieces.sort()
    merged: list[tuple[float, float, int]] = []
    for lo, hi, turn in pieces:
        if merged and merged[-1][1] == lo and merged[-1][2] == turn:
            merged[-1] = (merged[-1][0], hi, turn)
        else:
            merged.append((lo, hi, turn))
    return merged if len(merged) <= MAX_PIECES else []


def _middle(lo: float, hi: float) -> float:
    if math.isinf(lo) and math.isinf(hi):
        return 0.0
    if math.isinf(hi):
        return lo + max(1.0, abs(lo))
    if math.isinf(lo):
        return hi - max(1.0, abs(hi))
    return lo + (hi - lo) / 2
