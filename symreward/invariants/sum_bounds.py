"""Bounds of a sum of formulas over a batch of boxes, for the branch-and-bound of ``optimum``.

A box is a product of intervals, each closed or open at either end (``Boxes``): branch-and-bound
cuts a box at a feature's threshold ``c`` so that ``c`` belongs to the side where the comparison
keeps its value, and each piece then holds the comparison at one value (``x > c`` on
``(c, hi]``), with no jump inside.

``SumBounds`` encloses the sum over each box three ways and keeps the intersection, each sound:

* each term's natural enclosure (``enclosures``);
* each term's mean-value form ``f(m) + sum_j grad_j (x_j - m_j)`` around the box's centre ``m``,
  valid where its slopes are finite;
* the sum's own mean-value form, the slopes of the terms added before the product, so that
  slopes that cancel (``tanh(x) - x**2`` near its top) cancel: its excess over the true range
  shrinks with the square of the box's width, where the terms' own forms shrink only with the
  width. A term that jumps along a side (a slope that is infinite there) enters with its values
  over the box with its other sides at the centre, and its slopes along those; moving along a
  side with a finite slope never crosses its jump.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import sympy

from symreward import formula
from symreward.invariants.enclosures import (
    BoxFunction,
    Enclosure,
    Pair,
    add,
    intersect,
    mul,
    threshold_of,
)

_FAR = 1e307  # the largest step out along an infinite side (so a cut stays finite)


@dataclass
class Boxes:
    """A batch of boxes: ends (n, d) and which ends are left out (``open_lo``: x > lo)."""

    lo: np.ndarray
    hi: np.ndarray
    open_lo: np.ndarray
    open_hi: np.ndarray

    @classmethod
    def closed(cls, lo: np.ndarray, hi: np.ndarray) -> Boxes:
        return cls(lo, hi, np.zeros(lo.shape, bool), np.zeros(lo.shape, bool))

    def __len__(self) -> int:
        return len(self.lo)

    def take(self, rows: np.ndarray) -> Boxes:
        return Boxes(self.lo[rows], self.hi[rows], self.open_lo[rows], self.open_hi[rows])

    def stack(self, other: Boxes) -> Boxes:
        return Boxes(*(np.concatenate([a, b]) for a, b in zip(
            (self.lo, self.hi, self.open_lo, self.open_hi),
            (other.lo, other.hi, other.open_lo, other.open_hi), strict=True)))


def split_points(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The middle of each side, or, along a side that reaches to infinity, a point further out
    by ``max(1, end**2)`` (1, 2, 6, 42, 1806, ...): a search walks out along it in a few
    steps, whether the reward peaks at 50 or grows past 1e300."""
    with np.errstate(invalid="ignore", over="ignore"):
        middle = lo / 2 + hi / 2  # not lo + (hi - lo) / 2, which overflows on huge sides
        step_up = np.minimum(np.maximum(1.0, lo * lo), _FAR)
        step_down = np.minimum(np.maximum(1.0, hi * hi), _FAR)
        up, down = lo + step_up, hi - step_down
    low, high = np.isinf(lo), np.isinf(hi)
    return np.where(low & high, 0.0, np.where(high, up, np.where(low, down, middle)))


def centres(boxes: Boxes) -> tuple[np.ndarray, np.ndarray]:
    """A point of each box (its middle; the closed end of a one-ulp side open at the other),
    and whether it lies in the box (not where a one-ulp side is open at both ends)."""
    c = split_points(boxes.lo, boxes.hi)
    c = np.where(boxes.open_lo & (c == boxes.lo), boxes.hi, c)
    c = np.where(boxes.open_hi & (c == boxes.hi), boxes.lo, c)
    outside = boxes.open_lo & (c == boxes.lo) | boxes.open_hi & (c == boxes.hi)
    return c, ~outside.any(axis=1)


def _sum_pairs(pairs: Sequence[Pair], n: int) -> Pair:
    total = (np.zeros(n), np.zeros(n))
    for pair in pairs:
        total = add(total, pair)
    return total


def _offsets(lo: np.ndarray, hi: np.ndarray, centre: np.ndarray) -> Pair:
    """x - m for x in [lo, hi], rounded outward; exactly 0 on a side of zero width (so an
    infinite slope along it contributes nothing)."""
    below, above = lo - centre, hi - centre
    return (np.where(below == 0, 0.0, np.nextafter(below, -np.inf)),
            np.where(above == 0, 0.0, np.nextafter(above, np.inf)))


def _mean_value(base: Pair, slopes: Mapping[int, Pair], offsets: Mapping[int, Pair]) -> Pair:
    """base + sum_j slope_j x offset_j."""
    form = base
    for j, g in slopes.items():
        form = add(form, mul(g, offsets[j]))
    return form


def _tightened(natural: Pair, form: Pair, usable: np.ndarray) -> Pair:
    """natural ∩ form where the form holds (a NaN form, from a centre where the formula is
    undefined, says nothing)."""
    usable = usable & ~np.isnan(form[0]) & ~np.isnan(form[1])
    tight = intersect(natural, form)
    return np.where(usable, tight[0], natural[0]), np.where(usable, tight[1], natural[1])


def _finite_part(g: Pair) -> Pair:
    return np.where(np.isfinite(g[0]), g[0], 0.0), np.where(np.isfinite(g[1]), g[1], 0.0)


def _jumps(g: Pair) -> np.ndarray:
    return ~(np.isfinite(g[0]) & np.isfinite(g[1]))


@dataclass
class Bounds:
    """The sum over a batch of boxes: ``lo <= sum <= hi`` on each box (NaN: undefined
    throughout it), the value proved at a point of it (``centre``, ``proved``: the lower end of
    the sum's enclosure there), the sum's slopes and their finite parts, and the sides along
    which the slopes do not hold (``irregular``, (n, d): a term that may be undefined somewhere
    in the box reads that feature)."""

    lo: np.ndarray
    hi: np.ndarray
    centre: np.ndarray
    proved: np.ndarray
    slopes: dict[int, Pair]
    smooth: dict[int, Pair]
    irregular: np.ndarray

    def assign(self, rows: np.ndarray, other: Bounds) -> None:
        """Replace the bounds of ``rows`` by ``other``'s (in order)."""
        for key in ("lo", "hi", "centre", "proved", "irregular"):
            getattr(self, key)[rows] = getattr(other, key)
        zero = np.zeros(len(other.lo))
        for mine, theirs in ((self.slopes, other.slopes), (self.smooth, other.smooth)):
            for j in sorted(mine.keys() | theirs.keys()):
                if j not in mine:
                    mine[j] = (np.zeros(len(self.lo)), np.zeros(len(self.lo)))
                mine[j] = tuple(np.array(e) for e in mine[j])
                new = theirs.get(j, (zero, zero))
                mine[j][0][rows], mine[j][1][rows] = new


class SumBounds:
    """``sum(terms)`` over ``names``, compiled to bound it over batches of ``Boxes``."""

    def __init__(self, terms: Sequence[sympy.Expr], names: Sequence[str]):
        self.names = list(names)
        self.functions = [BoxFunction(t, self.names) for t in terms]
        columns = {n: j for j, n in enumerate(self.names)}
        found: dict[int, dict[float, bool]] = {}
        breaks: dict[int, set[float]] = {}
        for term in terms:
            for node in sympy.preorder_traversal(term):
                if isinstance(node, formula.Comparison):
                    threshold = threshold_of(node, columns)
                    if threshold is not None:
                        kind, j, c = threshold
                        found.setdefault(j, {})[c] = kind in ("Greater", "LessEqual")
                for j, at in _breaks(node, columns):
                    breaks.setdefault(j, set()).add(at)
        #: per column: sorted thresholds, and for each whether its value at c is the one below
        #: c (so c belongs to the lower piece, and the upper piece is open at c)
        self.thresholds = {j: (np.array(sorted(cs)), np.array([cs[c] for c in sorted(cs)]))
                           for j, cs in found.items()}
        #: per column: where a term changes piece along it (a kink or a jump), for a local
        #: search to try: a maximum at a kink is where smooth local searches never land
        self.breaks = {j: np.array(sorted(at)) for j, at in breaks.items()}

    def __call__(self, boxes: Boxes) -> Bounds:
        with np.errstate(all="ignore"):  # infinite sides and undefined values are values here
            return self._bounds(boxes)

    def _bounds(self, boxes: Boxes) -> Bounds:
        n = len(boxes)
        lo, hi = boxes.lo, boxes.hi
        centre, inside = centres(boxes)
        rows_lo, rows_hi = np.vstack([lo, centre]), np.vstack([hi, centre])
        no = np.zeros(lo.shape, bool)
        open_lo, open_hi = np.vstack([boxes.open_lo, no]), np.vstack([boxes.open_hi, no])
        offsets = {j: _offsets(lo[:, j], hi[:, j], centre[:, j]) for j in range(lo.shape[1])}
        terms, points, grads, wild, slopes, smooth = [], [], [], [], {}, {}
        irregular = np.repeat(~inside[:, None], lo.shape[1], axis=1)
        for f in self.functions:
            out = f(rows_lo, rows_hi, slopes=True, open_lo=open_lo, open_hi=open_hi)
            box = _rows(out, slice(0, n))
            at_centre = (out.lo[n:], out.hi[n:])
            own = box.irregular | ~inside  # its slopes or its centre say nothing
            terms.append(_tightened((box.lo, box.hi), _mean_value(at_centre, box.grad, offsets),
                                    ~own))
            points.append(at_centre)
            grads.append(box.grad)
            wild.append(own)
            for j, g in box.grad.items():
                slopes[j] = add(slopes[j], g) if j in slopes else g
                smooth[j] = add(smooth[j], _finite_part(g)) if j in smooth else _finite_part(g)
                irregular[:, j] |= box.irregular
        total = _tightened(_sum_pairs(terms, n),
                           self._sum_form(boxes, centre, terms, points, grads, wild, offsets),
                           inside)
        proved = _sum_pairs(points, n)[0]
        return Bounds(total[0], total[1], centre, proved, slopes, smooth, irregular)

    def _sum_form(self, boxes: Boxes, centre: np.ndarray, terms: list[Pair],
                  points: list[Pair], grads: list[dict[int, Pair]], wild: list[np.ndarray],
                  offsets: dict[int, Pair]) -> Pair:
        """The sum's mean-value form, with the jumping terms held over their jumps' sides, and
        the terms whose slopes say nothing (``wild``: may be undefined in the box) by their own
        enclosures."""
        lo, hi = boxes.lo, boxes.hi
        n, d = lo.shape
        wide = hi > lo
        jumpy = []  # per term: a jump along a side of nonzero width (and not wild)
        for grad, own in zip(grads, wild, strict=True):
            infinite = np.zeros(n, bool)
            for j, g in grad.items():
                infinite |= _jumps(g) & wide[:, j]
            jumpy.append(infinite & ~own)
        across = np.zeros((n, d), bool)  # the sides along which some term jumps
        for jump, grad in zip(jumpy, grads, strict=True):
            for j, g in grad.items():
                across[:, j] |= jump & _jumps(g) & wide[:, j]
        # a jumping term's slopes along those sides are in its values over them
        zero = np.zeros(n)
        slopes: dict[int, Pair] = {}
        for jump, grad, own in zip(jumpy, grads, wild, strict=True):
            for j, g in grad.items():
                held = jump & across[:, j] | own
                slopes[j] = add(slopes.get(j, (zero, zero)),
                                (np.where(held, 0.0, g[0]), np.where(held, 0.0, g[1])))
        base = _sum_pairs([(np.where(own, t[0], np.where(jump, 0.0, p[0])),
                            np.where(own, t[1], np.where(jump, 0.0, p[1])))
                           for jump, own, p, t in zip(jumpy, wild, points, terms, strict=True)],
                          n)
        rows = np.flatnonzero(np.logical_or.reduce(jumpy)) if jumpy else np.array([], int)
        if len(rows):
            held = across[rows]
            part_lo = np.where(held, lo[rows], centre[rows])
            part_hi = np.where(held, hi[rows], centre[rows])
            parts = []
            for f, jump in zip(self.functions, jumpy, strict=True):
                if np.any(jump[rows]):
                    out = f(part_lo, part_hi, open_lo=boxes.open_lo[rows] & held,
                            open_hi=boxes.open_hi[rows] & held)
                    parts.append((np.where(jump[rows], out.lo, 0.0),
                                  np.where(jump[rows], out.hi, 0.0)))
            base = (base[0].copy(), base[1].copy())
            base[0][rows], base[1][rows] = add((base[0][rows], base[1][rows]),
                                               _sum_pairs(parts, len(rows)))
        return _mean_value(base, slopes, offsets)

    def at_points(self, points: np.ndarray) -> np.ndarray:
        """The value proved at each point (the lower end of the sum's enclosure there)."""
        with np.errstate(all="ignore"):
            return _sum_pairs([(o.lo, o.hi) for o in (f(points, points)
                                                      for f in self.functions)],
                              len(points))[0]


def _breaks(node: sympy.Basic, columns: Mapping[str, int]) -> list[tuple[int, float]]:
    """Where ``node`` changes piece along one feature, when it does so at a point: the root
    of the argument of ``abs``, of the difference of two arguments of ``min``/``max`` or of
    the sides of a comparison, where that is linear in one feature."""
    if isinstance(node, sympy.Abs):
        differences = [node.args[0]]
    elif isinstance(node, sympy.Min | sympy.Max | formula.Comparison):
        differences = [a - b for k, a in enumerate(node.args) for b in node.args[k + 1:]]
    else:
        return []
    found = []
    for difference in differences:
        symbols = difference.free_symbols
        if len(symbols) != 1 or next(iter(symbols)).name not in columns:
            continue
        symbol = next(iter(symbols))
        poly = difference.as_poly(symbol)
        if poly is not None and poly.degree() == 1:
            slope, offset = (float(c) for c in poly.all_coeffs())
            if slope != 0 and np.isfinite(-offset / slope):
                found.append((columns[symbol.name], -offset / slope))
    return found


def _rows(out: Enclosure, rows: slice) -> Enclosure:
    return Enclosure(out.lo[rows], out.hi[rows], out.partial[rows], out.irregular[rows],
                     {j: (s[0][rows], s[1][rows]) for j, s in out.grad.items()})
