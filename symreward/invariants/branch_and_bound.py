"""Proofs over the domain box: branch-and-bound with interval bounds (``maximise``), and sympy's
sign assumptions for formulas defined everywhere (``symbolic_nonpositive``)."""

from __future__ import annotations

import heapq
import itertools
import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import mpmath
import sympy
from mpmath import iv

from symreward.invariants.intervals import Undefined, Unsupported, interval_function, lower, upper
from symreward.invariants.points import TOLERANCE, point_function

_LARGEST = sys.float_info.max


@dataclass
class Outcome:
    """What branch-and-bound reached, with a counterexample when violated."""

    status: str  # proved | vacuous | violated | unknown
    point: dict[str, float] | None = None
    boxes: int = 0


def _split_point(lo: float, hi: float) -> float:
    """A finite float in ``[lo, hi]``: where a side is split, and where a box is tried. Strictly
    inside whenever one is (``_splittable``): an unbounded side splits at a step of at least 1
    from its finite end, doubling its distance from 0, and stops at the largest float."""
    if math.isinf(lo) and math.isinf(hi):
        return 0.0
    if math.isinf(hi):
        point = min(lo + max(1.0, abs(lo)), _LARGEST)
    elif math.isinf(lo):
        point = max(hi - max(1.0, abs(hi)), -_LARGEST)
    elif math.isinf(hi - lo):  # [-1e308, 1e308]: the width overflows
        point = lo / 2 + hi / 2
    else:
        point = lo + (hi - lo) / 2
    return min(max(point, lo), hi)


def _split_order(lo: float, hi: float) -> tuple[int, float]:
    """Which side of a box to split first (the largest): an unbounded side before a bounded
    one, the widest bounded one first, and of unbounded sides the one whose finite end is
    nearest 0, so that they take turns doubling rather than one running to the largest float
    while the others wait."""
    if math.isinf(lo) and math.isinf(hi):
        return (2, 0.0)
    if math.isinf(lo) or math.isinf(hi):
        return (1, -abs(hi if math.isinf(lo) else lo))
    return (0, hi - lo)


def _splittable(lo: float, hi: float) -> bool:
    """Whether the side has a float strictly inside to split at, and is wider than the
    resolution of a proof."""
    if not lo < _split_point(lo, hi) < hi:
        return False
    if math.isinf(lo) or math.isinf(hi):
        return True
    return hi - lo > 1e-9 * (1 + abs(lo) + abs(hi))


def maximise(g: sympy.Expr, cond: sympy.Expr | None, domain: Mapping[str, tuple[float, float]],
             threshold: float, strict: bool, deadline: float, names: Sequence[str], *,
             max_boxes: int | None = None) -> Outcome:
    """Decide ``g <= threshold`` (``<`` when strict) wherever ``cond`` may hold in ``domain``.

    Branch-and-bound over boxes: a box is discarded when the interval of ``cond`` is exactly 0,
    accepted when the interval of ``g`` meets the threshold; otherwise its midpoint is tried as a
    counterexample (``cond`` true there and ``g`` beyond the threshold or NaN) and it is split
    along its widest relevant side. ``proved`` only when every box was discarded or accepted,
    and ``vacuous`` when every box was discarded. ``max_boxes`` bounds the work by a count
    instead of (or beside) the clock, so that the outcome does not depend on the machine's
    speed: ``unknown`` once that many boxes were examined without a decision.
    """
    try:
        g_iv = interval_function(g)
        c_iv = interval_function(cond) if cond is not None else None
    except Unsupported:
        return Outcome("unknown")
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
        if time.monotonic() > deadline or (max_boxes is not None and boxes >= max_boxes):
            return Outcome("unknown", boxes=boxes)
        _, _, box = heapq.heappop(heap)
        boxes += 1
        ivbox = {n: iv.mpf([lo, hi]) for n, (lo, hi) in box.items()}
        if c_iv is not None:
            try:
                c = c_iv(ivbox)
                if lower(c) == 0 and upper(c) == 0:
                    continue
            except Undefined:
                pass
        try:
            top = upper(g_iv(ivbox))
            if top < threshold_mp or (not strict and top == threshold_mp):
                accepted += 1
                continue
        except Undefined:
            top = mpmath.inf
        point = dict(fixed) | {n: _split_point(lo, hi) for n, (lo, hi) in box.items()}
        values = [point[n] for n in names]
        if c_pt is None or c_pt(*values) != 0:
            value = g_pt(*values)
            slack = 0.0 if strict else TOLERANCE * (1 + abs(threshold))
            if value != value or value > threshold + slack or (strict and value == threshold):
                return Outcome("violated", point=point, boxes=boxes)
        splittable = [n for n in relevant if _splittable(*box[n])]
        if not splittable:
            unresolved = True
            continue
        side = max(splittable, key=lambda n: _split_order(*box[n]))
        lo, hi = box[side]
        middle = _split_point(lo, hi)
        priority = -float(top) if mpmath.isfinite(top) else -math.inf
        for part in ((lo, middle), (middle, hi)):
            heapq.heappush(heap, (priority, next(counter), box | {side: part}))
    if unresolved:
        return Outcome("unknown", boxes=boxes)
    return Outcome("proved" if accepted else "vacuous", boxes=boxes)


def symbolic_nonpositive(expr: sympy.Expr) -> bool:
    """sympy's assumptions say ``expr <= 0`` for every real value of its symbols. Used only for
    formulas that are defined everywhere (no division, roots, logarithms or odd functions)."""
    for node in sympy.preorder_traversal(expr):
        if isinstance(node, sympy.Pow) and not (node.exp.is_Integer and node.exp >= 0):
            return False
        if isinstance(node, sympy.log | sympy.atan2):
            return False
    return expr.is_nonpositive is True
