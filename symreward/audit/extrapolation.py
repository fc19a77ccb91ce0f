"""Terms that grow without bound or extrapolate steeply (``flag_terms``): the shapes through which
a policy optimising a learned reward can leave the data and find reward nobody meant.

Each flag names a term, a feature and the reason in words. Two kinds of evidence:

* **Shape** (read from the formula): a power of degree 3 or more of something unbounded (a cube
  grows ever faster), ``exp`` of something unbounded above, a division by something that is 0
  at a state of the domain, ``log`` of something that reaches 0 in the domain. These hold
  whatever the data.
* **Behaviour** (measured on the domain): the term's steepest slope along a feature outside the
  range recorded in the data is more than ``EXTRAPOLATION_FACTOR`` times its steepest inside
  it (or the term is flat inside and moves outside: a correlate that was constant in the data),
  or the domain leaves the feature unbounded and the term keeps growing along it. Slopes are
  finite differences on a grid along the feature, the other features at seeded random points
  inside their recorded ranges (so the same artifact gives the same flags).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import sympy

from symreward import formula
from symreward.invariants.enclosures import BoxFunction

#: How many times steeper outside the recorded range than inside a term must be to be flagged.
EXTRAPOLATION_FACTOR = 10.0
_REFERENCES = 16  # points of the other features at which a slope is measured
_GRID = 65  # grid points along the feature, inside the recorded range and on each side of it
_REACH = 3.0  # how far outside the recorded range slopes are measured, in recorded widths
_GROWTH = 1e3  # along an unbounded side, growth beyond this factor counts as unbounded


@dataclass
class TermFlag:
    """A term that can reward states far from the data, and why."""

    term: str
    feature: str
    reason: str
    expr: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"term": self.term, "feature": self.feature, "reason": self.reason,
                "expr": self.expr}


class _Along:
    """A term's values along one feature, the others at seeded random points inside their
    recorded ranges (within the domain)."""

    def __init__(self, expr: sympy.Expr, feature: str, names: Sequence[str],
                 domain: Mapping[str, tuple[float, float]],
                 recorded: Mapping[str, tuple[float, float]], rng: np.random.Generator):
        self.feature, self.names = feature, list(names)
        self.function = sympy.lambdify([formula.symbol(n) for n in self.names], expr,
                                       modules=[formula.NUMPY_FUNCTIONS, "numpy"])
        self.others = {}
        for n in self.names:
            lo, hi = recorded.get(n, domain[n])
            lo, hi = _finite(max(lo, domain[n][0]), min(hi, domain[n][1]))
            self.others[n] = (rng.uniform(lo, hi, size=_REFERENCES) if hi > lo
                              else np.full(_REFERENCES, lo))

    def __call__(self, grid: np.ndarray) -> np.ndarray:
        """(references, len(grid)) values."""
        args = [grid[None, :] if n == self.feature else self.others[n][:, None]
                for n in self.names]
        with np.errstate(all="ignore"):
            return np.broadcast_to(self.function(*args),
                                   (_REFERENCES, len(grid))).astype(float)

    def grows(self, start: float, sign: float) -> float:
        """+1 (-1) where the term rises (falls) without bound from ``start`` out to 1e6 away
        (its size grows by more than ``_GROWTH``), else 0."""
        values = self(start + sign * np.array([0.0, 1.0, 1e6]))
        sizes = np.where(np.isnan(values), 0.0, np.abs(values))
        far = int(np.argmax(sizes[:, 2]))
        if sizes[far, 2] > _GROWTH * (1 + np.max(sizes[:, :2])):
            return float(np.sign(values[far, 2]))
        return 0.0


def _finite(lo: float, hi: float) -> tuple[float, float]:
    """[lo, hi] with an infinite end moved to -1 or 1 (or to the other end)."""
    lo2 = min(-1.0, hi) if math.isinf(lo) else lo
    hi2 = max(1.0, lo2) if math.isinf(hi) else hi
    return lo2, hi2


def _unbounded_in(expr: sympy.Expr, domain: Mapping[str, tuple[float, float]]) -> bool:
    """Whether interval arithmetic cannot bound ``expr`` over the domain box (it may be
    infinite or undefined there)."""
    names = sorted(s.name for s in expr.free_symbols)
    lo = np.array([[domain[n][0] for n in names]])
    hi = np.array([[domain[n][1] for n in names]])
    out = BoxFunction(expr, names)(lo, hi)
    return bool(out.partial[0] or not (np.isfinite(out.lo[0]) and np.isfinite(out.hi[0])))


def _reaches_zero(expr: sympy.Expr, domain: Mapping[str, tuple[float, float]]) -> bool:
    """Whether ``expr`` may be 0 (or undefined) somewhere in the domain box."""
    names = sorted(s.name for s in expr.free_symbols)
    lo = np.array([[domain[n][0] for n in names]])
    hi = np.array([[domain[n][1] for n in names]])
    out = BoxFunction(expr, names)(lo, hi)
    return bool(out.partial[0] or np.isnan(out.lo[0]) or out.lo[0] <= 0 <= out.hi[0])


def _degree_word(n: int) -> str:
    return {3: "a cube", 4: "a fourth power", 5: "a fifth power"}.get(n, f"a power of degree {n}")


def _shape_reasons(expr: sympy.Expr, feature: str, along: _Along,
                   domain: Mapping[str, tuple[float, float]]) -> list[str]:
    """Reasons read from the formula: a power of degree >= 3 or an ``exp`` through which the
    term keeps growing along ``feature`` (both ways from 0 are tried), a division by or a
    ``log`` of something that reaches 0 in the domain, where the term is unbounded."""
    reasons = []
    grows = along.grows(0.0, 1.0) or along.grows(0.0, -1.0)
    unbounded = _unbounded_in(expr, domain)
    symbol = formula.symbol(feature)
    for node in sympy.preorder_traversal(expr):
        if isinstance(node, sympy.Pow | sympy.exp | sympy.log) and not node.has(symbol):
            continue
        if isinstance(node, sympy.Pow) and node.exp.is_Number:
            base, e = node.base, float(node.exp)
            shown = formula.to_text(base)
            if e >= 3 and e == int(e) and grows:
                reasons.append(f"{feature} enters {_degree_word(int(e))} ({shown})**{int(e)}, "
                               f"which grows ever faster as {feature} moves away from 0")
            elif e < 0 and unbounded and _reaches_zero(base, domain):
                reasons.append(f"it divides by {shown}, which is 0 at states of the domain: "
                               "the term is unbounded near them")
        elif isinstance(node, sympy.exp) and grows:
            reasons.append(f"it takes exp of {formula.to_text(node.args[0])}, which grows "
                           f"exponentially as {feature} moves one way")
        elif isinstance(node, sympy.log) and unbounded and _reaches_zero(node.args[0], domain):
            reasons.append(f"it takes log of {formula.to_text(node.args[0])}, which reaches 0 "
                           "in the domain: the term falls without bound near it")
    return reasons


def _steepest(values: np.ndarray, grid: np.ndarray) -> tuple[float, float]:
    """The largest |finite difference| along ``grid`` over all reference rows, and where."""
    with np.errstate(all="ignore"):
        slopes = np.abs(np.diff(values, axis=1)) / np.diff(grid)
    slopes = np.where(np.isfinite(slopes), slopes, -1.0)
    if slopes.size == 0 or slopes.max() < 0:
        return 0.0, math.nan
    row, k = np.unravel_index(int(np.argmax(slopes)), slopes.shape)
    return float(slopes[row, k]), float((grid[k] + grid[k + 1]) / 2)


def _behaviour_reasons(along: _Along, domain: Mapping[str, tuple[float, float]],
                       recorded: Mapping[str, tuple[float, float]]) -> list[str]:
    """Reasons measured along the feature: steeper outside its recorded range than inside, or
    growing without bound along an unbounded side of the domain."""
    feature = along.feature
    reasons = []
    lo, hi = domain[feature]
    if feature in recorded:
        a, b = recorded[feature]
        width = b - a if b > a else 1.0
        grid = np.linspace(a, b, _GRID)
        inside, where_inside = _steepest(along(grid), grid)
        outside, where = 0.0, math.nan
        for start, stop in ((max(lo, a - _REACH * width), a), (b, min(hi, b + _REACH * width))):
            if stop > start:
                grid = np.linspace(start, stop, _GRID)
                slope, at = _steepest(along(grid), grid)
                if slope > outside:
                    outside, where = slope, at
        if outside > 0 and outside > EXTRAPOLATION_FACTOR * inside:
            if inside == 0:
                reasons.append(f"it does not change with {feature} inside the recorded range "
                               f"[{a:.4g}, {b:.4g}] but does outside it (slope {outside:.3g} "
                               f"at {feature} = {where:.4g}): the data cannot have tested it")
            else:
                reasons.append(f"its steepest slope in {feature} outside the recorded range "
                               f"[{a:.4g}, {b:.4g}] is {outside / inside:.3g} times its "
                               f"steepest inside it ({outside:.3g} at {feature} = {where:.4g}, "
                               f"against {inside:.3g} at {feature} = {where_inside:.4g})")
    centre = float(np.clip(0.0, *_finite(lo, hi)))
    for end, sign in ((hi, 1.0), (lo, -1.0)):
        if math.isinf(end):
            way = along.grows(centre, sign)
            if way:
                reasons.append(f"the domain does not bound {feature} "
                               f"{'above' if sign > 0 else 'below'}, and the term "
                               f"{'rises' if way > 0 else 'falls'} without bound as {feature} "
                               f"goes to {'+' if sign > 0 else '-'}inf")
    return reasons


def flag_terms(term_names: Sequence[str], terms: Sequence[sympy.Expr], names: Sequence[str],
               domain: Mapping[str, tuple[float, float]],
               recorded: Mapping[str, tuple[float, float]], *, seed: int = 0
               ) -> list[TermFlag]:
    """The terms that grow without bound or extrapolate steeply, one flag per term and feature
    with every reason found. ``domain`` bounds every feature the terms use (infinite ends
    allowed); ``recorded`` holds the ranges seen in the data (a feature without one is not
    checked for extrapolation)."""
    rng = np.random.default_rng(seed)
    flags = []
    for name, expr in zip(term_names, terms, strict=True):
        used = [n for n in names if formula.symbol(n) in expr.free_symbols]
        for feature in used:
            along = _Along(expr, feature, used, domain, recorded, rng)
            reasons = (_shape_reasons(expr, feature, along, domain)
                       + _behaviour_reasons(along, domain, recorded))
            if reasons:
                flags.append(TermFlag(name, feature, "; ".join(dict.fromkeys(reasons)),
                                      formula.to_text(expr)))
    return flags
