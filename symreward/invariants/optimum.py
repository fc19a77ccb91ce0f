"""The certified maximum of a sum of formulas over a box of features (``certified_maximum``).

Best-first interval branch-and-bound keeps two numbers: a *lower* bound, the best value proved
at a point (the lower end of the enclosure at a box's centre, or at the end of a local search
by L-BFGS-B from the best point so far), and an *upper* bound, the largest upper end over the
boxes still open. Boxes whose upper end cannot beat the lower bound by more than the tolerance
are dropped; the rest are split, best first, until ``upper - lower <= tolerance`` (certified)
or the time runs out (then the gap reached is reported, uncertified).

Three things make the bounds tight enough for 1e-6, each sound on its own:

* **Separability.** The sum's terms are grouped into connected components of the graph "two
  terms share a feature"; the maximum of the sum is exactly the sum of the components' maxima
  over their own features, and the gaps add up.
* **The mean-value form.** On a box where every slope is finite (``enclosures``), the values
  lie in ``f(m) + sum_j grad_j (x_j - m_j)`` around the centre ``m``, whose excess over the true
  range shrinks with the square of the box's width (the natural enclosure's only with the
  width). Each term's enclosure is the intersection of the two.
* **Monotonicity.** Where the sum's slope in a feature has one sign over a box, its supremum on
  the box is on the face at that end, so the box shrinks to the face.

The bounds are about the formula over the real numbers, at the points where it is defined (a
real number); the float64 kernels may differ from it by rounding. Infinite sides are allowed:
a box reaching to infinity is split at doubling distances, and a supremum that no finite
bound holds stays uncertified with an infinite upper bound.
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import sympy
from scipy.optimize import minimize

from symreward import formula
from symreward.errors import OptionError
from symreward.invariants.enclosures import BoxFunction, Enclosure, Pair, add, intersect, mul

_BATCH = (16, 256)  # boxes split per step: from a quarter of the open boxes, within these
_LOCAL_EVERY = 16  # steps between local searches (when the best point has moved)
_HUGE = 1e300  # a value proved above this ends the search: the supremum is taken as infinite
_MIN_WIDTH = 1e-13  # a side narrower than this times (1 + |end|) is not split further


@dataclass
class Optimum:
    """A certified maximum: ``value <= sup <= bound`` over the box, ``point`` where ``value``
    is proved (``None`` when the formula is undefined everywhere)."""

    value: float
    bound: float
    point: dict[str, float] | None
    certified: bool
    boxes: int
    seconds: float
    components: int

    @property
    def gap(self) -> float:
        return self.bound - self.value


def _down(x: float) -> float:
    return float(np.nextafter(x, -math.inf))


def _up(x: float) -> float:
    return float(np.nextafter(x, math.inf))


def _reference(lo: float, hi: float) -> float:
    """A finite point of [lo, hi]: 0 clipped into it."""
    return min(max(0.0, lo), hi)


def _centres(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Each box's centre, or for an infinite side the point where it is split."""
    with np.errstate(invalid="ignore"):
        middle = lo / 2 + hi / 2  # not lo + (hi - lo) / 2, which overflows on huge sides
        up = lo + np.maximum(1.0, np.abs(lo))
        down = hi - np.maximum(1.0, np.abs(hi))
    both = np.isinf(lo) & np.isinf(hi)
    return np.where(both, 0.0, np.where(np.isinf(hi), np.where(np.isinf(lo), 0.0, up),
                                         np.where(np.isinf(lo), down, middle)))


def _sum_pairs(pairs: Sequence[tuple[np.ndarray, np.ndarray]], n: int
               ) -> tuple[np.ndarray, np.ndarray]:
    total = (np.zeros(n), np.zeros(n))
    for pair in pairs:
        total = add(total, pair)
    return total


class _Component:
    """Branch-and-bound over the features of one connected group of terms."""

    def __init__(self, terms: Sequence[sympy.Expr], names: Sequence[str], lo: np.ndarray,
                 hi: np.ndarray, tolerance: float, relative_tolerance: float):
        self.names = list(names)
        self.functions = [BoxFunction(t, self.names) for t in terms]
        symbols = [formula.symbol(n) for n in self.names]
        total = sympy.lambdify([symbols], sympy.Add(*terms),
                               modules=[formula.NUMPY_FUNCTIONS, "numpy"])
        self._point_value = total
        self.domain_lo, self.domain_hi = lo, hi
        width = hi - lo
        self.scale = np.where(np.isfinite(width) & (width > 0), width, 1.0)
        self.tolerance, self.relative_tolerance = tolerance, relative_tolerance
        self.lower, self.best = -math.inf, None
        self.boxes = self.steps = 0
        self.searched_at = -math.inf  # the lower bound when the last local search ran
        self.pruned = -math.inf  # the largest upper end of a box dropped or too small to split
        d = len(self.names)
        self.store_lo, self.store_hi = np.empty((64, d)), np.empty((64, d))
        self.store_side = np.empty(64, np.intp)
        self.stored = 0
        self.heap: list[tuple[float, int, int]] = []
        self.counter = itertools.count()

    # -- enclosures ----------------------------------------------------------------------

    def _enclose(self, lo: np.ndarray, hi: np.ndarray) -> dict[str, np.ndarray]:
        """Upper/lower ends of the sum over each box, the proved value at each centre, the
        sum's slopes (and their finite parts, for choosing sides) and which boxes are
        irregular. Each term's enclosure is its natural one ∩ its mean-value form; the sum's
        is their sum ∩ the sum's own mean-value form (``_sum_form``), where the terms' slopes
        cancel."""
        n = len(lo)
        centre = _centres(lo, hi)
        rows_lo, rows_hi = np.vstack([lo, centre]), np.vstack([hi, centre])
        offsets = {j: _offsets(lo[:, j], hi[:, j], centre[:, j]) for j in range(lo.shape[1])}
        terms, points, grads, slopes, smooth = [], [], [], {}, {}
        irregular = np.zeros(n, bool)
        with np.errstate(all="ignore"):
            for f in self.functions:
                out = f(rows_lo, rows_hi, slopes=True)
                box = _rows(out, slice(0, n))
                at_centre = (out.lo[n:], out.hi[n:])
                terms.append(_tightened((box.lo, box.hi),
                                        _mean_value(at_centre, box.grad, offsets),
                                        ~box.irregular))
                points.append(at_centre)
                grads.append(box.grad)
                for j, g in box.grad.items():
                    slopes[j] = add(slopes[j], g) if j in slopes else g
                    finite = (np.where(np.isfinite(g[0]), g[0], 0.0),
                              np.where(np.isfinite(g[1]), g[1], 0.0))
                    smooth[j] = add(smooth[j], finite) if j in smooth else finite
                irregular |= box.irregular
            total = _tightened(_sum_pairs(terms, n), self._sum_form(
                lo, hi, centre, points, grads, offsets), ~irregular)
        return {"lo": total[0], "hi": total[1], "centre": centre,
                "proved": _sum_pairs(points, n)[0], "slopes": slopes, "smooth": smooth,
                "irregular": irregular}

    def _sum_form(self, lo: np.ndarray, hi: np.ndarray, centre: np.ndarray,
                  points: list[Pair], grads: list[dict[int, Pair]],
                  offsets: dict[int, Pair]) -> Pair:
        """The sum's mean-value form. Terms with finite slopes over the box enter with their
        value at the centre; terms where a jump makes a slope infinite enter with their values
        over the box with the finite-slope sides held at the centre (along those sides no jump
        is crossed). Then slope x offset along every side, the slopes added before the product,
        so that the terms' slopes cancel."""
        n, d = lo.shape
        wide = hi > lo
        jumpy = []  # per term: a jump along a side of nonzero width
        for grad in grads:
            infinite = np.zeros(n, bool)
            for j, (g_lo, g_hi) in grad.items():
                infinite |= ~(np.isfinite(g_lo) & np.isfinite(g_hi)) & wide[:, j]
            jumpy.append(infinite)
        zero = np.zeros(n)
        base = _sum_pairs([(np.where(jump, 0.0, p[0]), np.where(jump, 0.0, p[1]))
                           for jump, p in zip(jumpy, points, strict=True)], n)
        slopes: dict[int, Pair] = {}
        across = np.zeros((n, d), bool)  # sides along which some term jumps
        for jump, grad in zip(jumpy, grads, strict=True):
            for j, g in grad.items():
                across[:, j] |= jump & ~(np.isfinite(g[0]) & np.isfinite(g[1])) & wide[:, j]
                slopes[j] = add(slopes.get(j, (zero, zero)), g)
        slopes = {j: (np.where(across[:, j], 0.0, g[0]), np.where(across[:, j], 0.0, g[1]))
                  for j, g in slopes.items()}
        rows = np.flatnonzero(np.logical_or.reduce(jumpy)) if jumpy else np.array([], int)
        if len(rows):
            part_lo = np.where(across[rows], lo[rows], centre[rows])
            part_hi = np.where(across[rows], hi[rows], centre[rows])
            parts = []
            for f, jump in zip(self.functions, jumpy, strict=True):
                if np.any(jump[rows]):
                    out = f(part_lo, part_hi)
                    parts.append((np.where(jump[rows], out.lo, 0.0),
                                  np.where(jump[rows], out.hi, 0.0)))
            part = _sum_pairs(parts, len(rows))
            base = (base[0].copy(), base[1].copy())
            sums = add((base[0][rows], base[1][rows]), part)
            base[0][rows], base[1][rows] = sums
        return _mean_value(base, slopes, offsets)

    def _collapse(self, lo: np.ndarray, hi: np.ndarray, enc: dict[str, np.ndarray]) -> np.ndarray:
        """Shrink each regular box to its face where the sum is monotone in a feature (the
        supremum is on that face); which boxes changed."""
        changed = np.zeros(len(lo), bool)
        for j, (s_lo, s_hi) in enc["slopes"].items():
            wide = (hi[:, j] > lo[:, j]) & ~enc["irregular"]
            rising = wide & (s_lo >= 0) & np.isfinite(hi[:, j])
            falling = wide & ~rising & (s_hi <= 0) & np.isfinite(lo[:, j])
            lo[rising, j] = hi[rising, j]
            hi[falling, j] = lo[falling, j]
            changed |= rising | falling
        return changed

    def _evaluate(self, lo: np.ndarray, hi: np.ndarray) -> dict[str, np.ndarray]:
        enc = self._enclose(lo, hi)
        self.boxes += len(lo)
        changed = self._collapse(lo, hi, enc)
        if np.any(changed):
            again = self._enclose(lo[changed], hi[changed])
            self.boxes += int(np.count_nonzero(changed))
            for key in ("lo", "hi", "centre", "proved", "irregular"):
                enc[key][changed] = again[key]
            for key in ("slopes", "smooth"):
                for j in enc[key]:
                    s = again[key].get(j, (np.zeros(len(again["lo"])),) * 2)
                    for i in (0, 1):
                        enc[key][j][i][changed] = s[i]
        self._improve(enc["proved"], enc["centre"])
        enc["side"], enc["splittable"] = self._sides(lo, hi, enc)
        return enc

    def _improve(self, proved: np.ndarray, points: np.ndarray) -> bool:
        if not len(proved) or np.all(np.isnan(proved)):
            return False
        k = int(np.nanargmax(proved))
        if proved[k] > self.lower:
            self.lower, self.best = float(proved[k]), points[k].copy()
            return True
        return False

    # -- the search ----------------------------------------------------------------------

    def _slack(self) -> float:
        return max(self.tolerance, self.relative_tolerance * abs(self.lower)
                   if math.isfinite(self.lower) else 0.0)

    def _push(self, lo: np.ndarray, hi: np.ndarray, enc: dict[str, np.ndarray]) -> None:
        """Keep the boxes that may still beat the lower bound; a box with no side left to
        split keeps its upper end in the bound."""
        upper = enc["hi"]
        known = ~np.isnan(upper)  # NaN: the sum is undefined throughout the box
        keep = known & (upper > self.lower + self._slack())
        dropped = upper[known & ~(keep & enc["splittable"])]
        if len(dropped):
            self.pruned = max(self.pruned, float(dropped.max()))
        keep &= enc["splittable"]
        lo, hi, upper, side = lo[keep], hi[keep], upper[keep], enc["side"][keep]
        need = self.stored + len(lo)
        if need > len(self.store_lo):
            size = max(need, 2 * len(self.store_lo))
            self.store_lo = np.resize(self.store_lo, (size, self.store_lo.shape[1]))
            self.store_hi = np.resize(self.store_hi, (size, self.store_hi.shape[1]))
            self.store_side = np.resize(self.store_side, size)
        self.store_lo[self.stored:need], self.store_hi[self.stored:need] = lo, hi
        self.store_side[self.stored:need] = side
        for i, u in enumerate(upper.tolist()):
            heapq.heappush(self.heap, (-u, next(self.counter), self.stored + i))
        self.stored = need

    def upper(self) -> float:
        top = -self.heap[0][0] if self.heap else -math.inf
        return max(top, self.pruned, self.lower)

    def done(self) -> bool:
        return self.upper() - self.lower <= self._slack() or self.lower >= _HUGE

    def run(self, deadline: float) -> None:
        """Search until certified or ``deadline`` (``time.monotonic``); a later call goes on
        where this one stopped."""
        if not self.boxes:
            lo, hi = self.domain_lo[None, :].copy(), self.domain_hi[None, :].copy()
            self._push(lo, hi, self._evaluate(lo, hi))
            self._local_search()
            self.searched_at = self.lower
        while self.heap and not self.done() and time.monotonic() < deadline:
            rows = self._pop()
            if not len(rows):
                continue
            self._split(self.store_lo[rows], self.store_hi[rows], self.store_side[rows])
            self.steps += 1
            if self.steps % _LOCAL_EVERY == 0 and self.lower > self.searched_at:
                self._local_search()
                self.searched_at = self.lower

    def _pop(self) -> np.ndarray:
        size = min(max(len(self.heap) // 4, _BATCH[0]), _BATCH[1])
        bar = self.lower + self._slack()
        rows = []
        while self.heap and len(rows) < size:
            upper, _, row = heapq.heappop(self.heap)
            if -upper <= bar:
                self.pruned = max(self.pruned, -upper)
                continue
            rows.append(row)
        return np.array(rows, dtype=np.intp)

    def _split(self, lo: np.ndarray, hi: np.ndarray, side: np.ndarray) -> None:
        """Split each box in two along its chosen side, and keep the children worth it."""
        rows = np.arange(len(lo))
        cut = _centres(lo[rows, side], hi[rows, side])
        left_hi, right_lo = hi.copy(), lo.copy()
        left_hi[rows, side] = cut
        right_lo[rows, side] = cut
        children_lo, children_hi = np.vstack([lo, right_lo]), np.vstack([left_hi, hi])
        self._push(children_lo, children_hi, self._evaluate(children_lo, children_hi))

    def _sides(self, lo: np.ndarray, hi: np.ndarray, enc: dict[str, np.ndarray]
               ) -> tuple[np.ndarray, np.ndarray]:
        """The side to split, and whether any is left: the largest |slope| x width (infinite
        sides first), where a jump's infinite slope counts only through the terms that are
        smooth along it (splitting a box across a jump again and again leaves a box that still
        holds it); the widest relative to the domain where slopes do not hold."""
        width = hi - lo
        with np.errstate(invalid="ignore"):
            cut = _centres(lo, hi)
            wide = np.isinf(width) | (width > _MIN_WIDTH * (1 + np.maximum(np.abs(lo),
                                                                          np.abs(hi))))
            can = wide & (cut > lo) & (cut < hi)
            relative = np.where(can, width / self.scale, -1.0)
            score = np.zeros_like(width)
            for j, (s_lo, s_hi) in enc["smooth"].items():
                score[:, j] = np.maximum(np.abs(s_lo), np.abs(s_hi)) * width[:, j]
            score = np.where(can, np.nan_to_num(score, nan=np.inf), -1.0)
        by_slope = np.argmax(score, axis=1)
        flat = score[np.arange(len(lo)), by_slope] <= 0
        side = np.where(enc["irregular"] | flat, np.argmax(relative, axis=1), by_slope)
        return side, can.any(axis=1)

    def _local_search(self) -> None:
        """L-BFGS-B from the best point; its end, if better, is proved with an enclosure."""
        if self.best is None:
            return
        bounds = [(None if math.isinf(a) else a, None if math.isinf(b) else b)
                  for a, b in zip(self.domain_lo, self.domain_hi, strict=True)]

        def negative(x: np.ndarray) -> float:
            with np.errstate(all="ignore"):
                value = float(self._point_value(x))
            return -value if math.isfinite(value) else _HUGE

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = minimize(negative, self.best, method="L-BFGS-B", bounds=bounds,
                              options={"maxiter": 200})
        x = np.clip(result.x, self.domain_lo, self.domain_hi)[None, :]
        with np.errstate(all="ignore"):
            proved = _sum_pairs([(o.lo, o.hi) for o in (f(x, x) for f in self.functions)], 1)[0]
        self._improve(proved, x)


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


def _tightened(natural: Pair, form: Pair, regular: np.ndarray) -> Pair:
    """natural ∩ form where the box is regular and the form is known (a NaN form, from a
    centre where the formula is undefined, says nothing)."""
    usable = regular & ~np.isnan(form[0]) & ~np.isnan(form[1])
    tight = intersect(natural, form)
    return np.where(usable, tight[0], natural[0]), np.where(usable, tight[1], natural[1])


def _rows(out: Enclosure, rows: slice) -> Enclosure:
    return Enclosure(out.lo[rows], out.hi[rows], out.partial[rows], out.irregular[rows],
                     {j: (s[0][rows], s[1][rows]) for j, s in out.grad.items()})


def components(terms: Sequence[sympy.Expr], names: Sequence[str]) -> list[tuple[list[str],
                                                                                 list[int]]]:
    """The terms grouped into connected components of "two terms share a feature": each
    component's features (in ``names`` order) and terms (indices). Terms without features are
    left out."""
    parent = {n: n for n in names}

    def root(n: str) -> str:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    used = [sorted((s.name for s in t.free_symbols), key=names.index) for t in terms]
    for features in used:
        for other in features[1:]:
            parent[root(other)] = root(features[0])
    groups: dict[str, tuple[list[str], list[int]]] = {}
    for n in names:
        if any(n in features for features in used):
            groups.setdefault(root(n), ([], []))[0].append(n)
    for index, features in enumerate(used):
        if features:
            groups[root(features[0])][1].append(index)
    return list(groups.values())


def certified_maximum(terms: Sequence[sympy.Expr], domain: Mapping[str, tuple[float, float]],
                      *, tolerance: float = 1e-6, relative_tolerance: float = 1e-12,
                      time_limit: float = 10.0, separable: bool = True) -> Optimum:
    """The supremum of ``sum(terms)`` over the box ``domain`` (feature -> (lo, hi), infinite
    ends allowed), with a certificate: ``value <= sup <= bound``.

    ``certified`` when ``bound - value`` is within ``tolerance`` (split evenly among the
    separable components), or for large values within ``relative_tolerance`` times a
    component's value (float64 cannot resolve 1e-6 on a value of 1e12); otherwise the gap
    reached when ``time_limit`` seconds ran out. ``separable=False`` searches all features
    jointly (for comparison: the result holds either way). Raises ``Unsupported`` (a
    ``SymrewardError``) for a formula the interval rules do not cover.
    """
    start = time.monotonic()
    for name, option in (("tolerance", tolerance), ("relative_tolerance", relative_tolerance),
                         ("time_limit", time_limit)):
        if not (isinstance(option, int | float) and math.isfinite(option) and option >= 0):
            raise OptionError(name, option, "must be a finite number >= 0")
    names = list(domain)
    groups = components(terms, names)
    if not separable and groups:
        groups = [([n for n in names if any(n in g[0] for g in groups)],
                   sorted(i for g in groups for i in g[1]))]
    constants = [t for t in terms if not t.free_symbols]
    empty = np.zeros((1, 0))
    with np.errstate(all="ignore"):
        parts = [BoxFunction(t, [])(empty, empty) for t in constants]
    value, bound = _sum_pairs([(p.lo, p.hi) for p in parts], 1)
    value, bound = float(value[0]), float(bound[0])
    point = {n: _reference(*domain[n]) for n in names}
    searches = [_Component([terms[i] for i in indices], features,
                           np.array([domain[n][0] for n in features], dtype=np.float64),
                           np.array([domain[n][1] for n in features], dtype=np.float64),
                           tolerance / len(groups), relative_tolerance)
                for features, indices in groups]
    # each group in turn gets an even share of the time left; what the easy ones leave goes
    # to the others in the next round
    deadline = start + time_limit
    pending = list(searches)
    while pending:
        for k, search in enumerate(pending):
            search.run(time.monotonic() + (deadline - time.monotonic()) / (len(pending) - k))
        pending = [s for s in pending if s.heap and not s.done()]
        if time.monotonic() >= deadline:
            break
    certified = True
    for search, (features, _) in zip(searches, groups, strict=True):
        certified &= search.done() and search.best is not None and search.lower < _HUGE
        value, bound = _down(value + search.lower), _up(bound + search.upper())
        if search.best is None or point is None:
            point = None
        else:
            point.update(zip(features, search.best.tolist(), strict=True))
    return Optimum(value=value, bound=bound, point=point, certified=bool(certified),
                   boxes=sum(s.boxes for s in searches), seconds=time.monotonic() - start,
                   components=len(groups))
