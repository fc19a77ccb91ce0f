"""The certified maximum of a sum of formulas over a box of features (``certified_maximum``).

Best-first interval branch-and-bound keeps two numbers: a *lower* bound, the best value proved
at a point (the lower end of the enclosure at a box's centre, or at the end of a local search
by L-BFGS-B from the best point so far), and an *upper* bound, the largest upper end over the
boxes still open. Boxes whose upper end cannot beat the lower bound by more than the tolerance
are dropped; the rest are split, best first, until ``upper - lower <= tolerance`` (certified)
or the time runs out (then the gap reached is reported, uncertified).

What makes the bounds tight enough for 1e-6, each sound on its own:

* **Separability.** The sum's terms are grouped into connected components of the graph "two
  terms share a feature"; the maximum of the sum is exactly the sum of the components' maxima
  over their own features, and the gaps add up. (A joint search over 10 features does not
  reach 1e-6 in minutes; the groups of a learned reward are small.)
* **The sum's mean-value form** (``sum_bounds``): its excess over the true range shrinks with
  the square of a box's width, where the natural enclosure's shrinks only with the width.
* **Thresholds.** A box across the threshold ``c`` of a comparison ``x > c`` is cut at ``c``,
  and each piece holds the comparison at one value: no jump left inside.
* **Monotonicity.** Where the sum's slope in a feature has one sign over a box, its supremum on
  the box is on the face at that end (or, at an open end, in the one-ulp slice next to it), so
  the box shrinks to it.

The bounds are about the formula over the real numbers, at the points where it is defined; the
float64 kernels may differ from it by rounding. Infinite sides are allowed: a box reaching to
infinity is cut further out at each step (1, 2, 6, 42, 1806, ...), and a supremum that no
finite bound holds stays uncertified with an infinite upper bound.
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
from symreward.invariants.enclosures import BoxFunction
from symreward.invariants.sum_bounds import Bounds, Boxes, SumBounds, split_points

_BATCH = (16, 256)  # boxes split per step: a quarter of the open boxes, within these
_LOCAL_EVERY = 16  # steps between local searches (when the best point has moved)
_HUGE = 1e300  # a value proved above this ends the search: the supremum is taken as infinite
_MIN_WIDTH = 1e-13  # a side narrower than this times (1 + |end|) is not split further
_SNAP = 1e-3  # a local search tries the kinks within this share of the domain's width


@dataclass
class Optimum:
    """A certified maximum: ``value <= sup <= bound`` over the box, ``point`` where ``value``
    is proved (``None`` when no point was: ``bound`` is -inf when the formula is undefined
    everywhere). ``unbounded``: a value above 1e300 was proved, so the supremum is taken as
    infinite."""

    value: float
    bound: float
    point: dict[str, float] | None
    certified: bool
    boxes: int
    seconds: float
    components: int
    unbounded: bool = False

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


class _Component:
    """Branch-and-bound over the features of one connected group of terms."""

    def __init__(self, terms: Sequence[sympy.Expr], names: Sequence[str], lo: np.ndarray,
                 hi: np.ndarray, tolerance: float, relative_tolerance: float):
        self.names = list(names)
        self.bounds = SumBounds(terms, self.names)
        self._point_value = sympy.lambdify([[formula.symbol(n) for n in self.names]],
                                           sympy.Add(*terms),
                                           modules=[formula.NUMPY_FUNCTIONS, "numpy"])
        self.domain = Boxes.closed(lo[None, :].copy(), hi[None, :].copy())
        width = hi - lo
        self.scale = np.where(np.isfinite(width) & (width > 0), width, 1.0)
        self.tolerance, self.relative_tolerance = tolerance, relative_tolerance
        self.lower, self.best = -math.inf, None
        self.boxes = self.steps = 0
        self.searched_at = -math.inf  # the lower bound when the last local search ran
        self.pruned = -math.inf  # the largest upper end of a box dropped or left unsplit
        self.store = Boxes.closed(np.empty((0, len(self.names))), np.empty((0, len(names))))
        self.store_side = np.empty(0, np.intp)
        self.heap: list[tuple[float, int, int]] = []
        self.counter = itertools.count()

    # -- bounds of boxes -----------------------------------------------------------------

    def _collapse(self, boxes: Boxes, bounds: Bounds) -> np.ndarray:
        """Shrink each regular box to its face where the sum is monotone in a feature (its
        supremum is there; at an open end, in the one-ulp slice next to it); which changed."""
        changed = np.zeros(len(boxes), bool)
        lo, hi = boxes.lo, boxes.hi
        for j, (s_lo, s_hi) in bounds.slopes.items():
            sliver = (boxes.open_lo[:, j] | boxes.open_hi[:, j]) & (
                hi[:, j] <= np.nextafter(lo[:, j], np.inf))
            wide = (hi[:, j] > lo[:, j]) & ~sliver & ~bounds.irregular[:, j]
            rising = wide & (s_lo >= 0) & np.isfinite(hi[:, j])
            falling = wide & ~rising & (s_hi <= 0) & np.isfinite(lo[:, j])
            lo[rising, j] = np.where(boxes.open_hi[rising, j],
                                     np.nextafter(hi[rising, j], -np.inf), hi[rising, j])
            boxes.open_lo[rising, j] = False
            hi[falling, j] = np.where(boxes.open_lo[falling, j],
                                      np.nextafter(lo[falling, j], np.inf), lo[falling, j])
            boxes.open_hi[falling, j] = False
            changed |= rising | falling
        return changed

    def _evaluate(self, boxes: Boxes) -> Bounds:
        bounds = self.bounds(boxes)
        self.boxes += len(boxes)
        changed = np.flatnonzero(self._collapse(boxes, bounds))
        if len(changed):
            bounds.assign(changed, self.bounds(boxes.take(changed)))
            self.boxes += len(changed)
        self._improve(bounds.proved, bounds.centre)
        return bounds

    def _improve(self, proved: np.ndarray, points: np.ndarray) -> bool:
        """Take the best of ``points`` (``proved`` there) if it beats the lower bound."""
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

    def _push(self, boxes: Boxes, bounds: Bounds) -> None:
        """Keep the boxes that may still beat the lower bound; a box with no side left to
        split keeps its upper end in the bound."""
        side, splittable = self._sides(boxes, bounds)
        upper = bounds.hi
        known = ~np.isnan(upper)  # NaN: the sum is undefined throughout the box
        keep = known & (upper > self.lower + self._slack())
        dropped = upper[known & ~(keep & splittable)]
        if len(dropped):
            self.pruned = max(self.pruned, float(dropped.max()))
        keep &= splittable
        first = len(self.store)
        self.store = self.store.stack(boxes.take(keep))
        self.store_side = np.concatenate([self.store_side, side[keep]])
        for i, u in enumerate(upper[keep].tolist()):
            heapq.heappush(self.heap, (-u, next(self.counter), first + i))

    def upper(self) -> float:
        top = -self.heap[0][0] if self.heap else -math.inf
        return max(top, self.pruned, self.lower)

    def done(self) -> bool:
        return self.upper() - self.lower <= self._slack() or self.lower >= _HUGE

    def run(self, deadline: float) -> None:
        """Search until certified or ``deadline`` (``time.monotonic``); a later call goes on
        where this one stopped."""
        if not self.boxes:
            root = self.domain.take(np.array([0]))
            self._push(root, self._evaluate(root))
            self._local_search()
            self.searched_at = self.lower
        while self.heap and not self.done() and time.monotonic() < deadline:
            rows = self._pop()
            if not len(rows):
                continue
            self._split(self.store.take(rows), self.store_side[rows])
            self.steps += 1
            if self.steps % _LOCAL_EVERY == 0 and self.lower > self.searched_at:
                self._local_search()
                self.searched_at = self.lower
        if self.lower > self.searched_at:  # polish the point reported
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

    def _split(self, boxes: Boxes, side: np.ndarray) -> None:
        """Split each box in two along its chosen side: at a threshold of a comparison of that
        feature inside it (the one nearest the middle), the threshold going to the piece where
        the comparison keeps its value there; else in the middle. Keep the pieces worth it."""
        rows = np.arange(len(boxes))
        lo, hi = boxes.lo[rows, side], boxes.hi[rows, side]
        cut = split_points(lo, hi)
        upper_opens = np.ones(len(boxes), bool)
        for j, (values, below) in self.bounds.thresholds.items():
            chosen = np.flatnonzero(side == j)
            if len(chosen):
                at, inside = _nearest_inside(values, lo[chosen], hi[chosen], cut[chosen])
                cut[chosen] = np.where(inside, values[at], cut[chosen])
                upper_opens[chosen] = np.where(inside, below[at], True)
        left, right = boxes.take(rows), boxes.take(rows)
        left.hi[rows, side] = cut
        left.open_hi[rows, side] = ~upper_opens
        right.lo[rows, side] = cut
        right.open_lo[rows, side] = upper_opens
        children = left.stack(right)
        self._push(children, self._evaluate(children))

    def _sides(self, boxes: Boxes, bounds: Bounds) -> tuple[np.ndarray, np.ndarray]:
        """The side to split, and whether any is left. First a side along which the sum jumps
        at a threshold inside the box (one cut there removes the jump); then a side along which
        the slopes do not hold (a term may be undefined), the widest relative to the domain;
        then the largest |slope| x width, a jump's infinite slope counting only through the
        terms smooth along it (cutting across a jump at its middle again and again leaves a
        box that still holds it)."""
        lo, hi = boxes.lo, boxes.hi
        with np.errstate(invalid="ignore", over="ignore"):
            width = hi - lo
            cut = split_points(lo, hi)
            wide = np.isinf(width) | (width > _MIN_WIDTH * (1 + np.maximum(np.abs(lo),
                                                                          np.abs(hi))))
            can = wide & (cut > lo) & (cut < hi)
            relative = np.where(can, width / self.scale, -1.0)
            score = np.zeros_like(width)
            for j, (s_lo, s_hi) in bounds.smooth.items():
                score[:, j] = np.maximum(np.abs(s_lo), np.abs(s_hi)) * width[:, j]
            score = np.where(can, np.nan_to_num(score, nan=np.inf), -1.0)
        by_slope = np.argmax(score, axis=1)
        flat = score[np.arange(len(lo)), by_slope] <= 0
        side = np.where(flat, np.argmax(relative, axis=1), by_slope)
        wild = bounds.irregular & can
        side = np.where(wild.any(axis=1), np.argmax(np.where(wild, relative, -1.0), axis=1),
                        side)
        jumping = np.zeros(lo.shape, bool)
        for j, (values, _) in self.bounds.thresholds.items():
            if j in bounds.slopes:
                s_lo, s_hi = bounds.slopes[j]
                _, inside = _nearest_inside(values, lo[:, j], hi[:, j], cut[:, j])
                jumping[:, j] = inside & ~(np.isfinite(s_lo) & np.isfinite(s_hi))
        side = np.where(jumping.any(axis=1), np.argmax(jumping, axis=1), side)
        return side, can.any(axis=1) | jumping.any(axis=1)

    def _local_search(self) -> None:
        """L-BFGS-B from the best point; then its coordinates moved to nearby kinks and
        thresholds one at a time, and L-BFGS-B again with the moved ones held. Each point, if
        better, is proved with an enclosure."""
        if self.best is None:
            return
        self._polish(())
        moved = []
        lo, hi = self.domain.lo[0], self.domain.hi[0]
        for j, breaks in self.bounds.breaks.items():
            near = breaks[np.abs(breaks - self.best[j]) <= _SNAP * self.scale[j]]
            tries = np.concatenate([near, np.nextafter(near, -np.inf), np.nextafter(near, np.inf)])
            tries = tries[(tries >= lo[j]) & (tries <= hi[j])]
            if len(tries):
                points = np.repeat(self.best[None, :], len(tries), axis=0)
                points[:, j] = tries
                if self._improve(self.bounds.at_points(points), points):
                    moved.append(j)
        if moved:
            self._polish(moved)

    def _polish(self, held: Sequence[int]) -> None:
        """L-BFGS-B from the best point within the domain, the coordinates ``held`` fixed."""
        lo, hi = self.domain.lo[0].copy(), self.domain.hi[0].copy()
        lo[list(held)] = hi[list(held)] = self.best[list(held)]
        bounds = [(None if math.isinf(a) else a, None if math.isinf(b) else b)
                  for a, b in zip(lo, hi, strict=True)]

        def negative(x: np.ndarray) -> float:
            with np.errstate(all="ignore"):
                value = float(self._point_value(x))
            return -value if math.isfinite(value) else _HUGE

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = minimize(negative, self.best, method="L-BFGS-B", bounds=bounds,
                              options={"maxiter": 200, "ftol": 1e-15, "gtol": 1e-12})
        x = np.clip(result.x, lo, hi)[None, :]
        self._improve(self.bounds.at_points(x), x)


def _nearest_inside(values: np.ndarray, lo: np.ndarray, hi: np.ndarray, middle: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """For each interval, the index of the value nearest ``middle`` among ``values`` (sorted)
    strictly inside (lo, hi), and whether there is one."""
    right = np.clip(np.searchsorted(values, middle), 0, len(values) - 1)
    left = np.clip(right - 1, 0, len(values) - 1)
    distances = []
    for at in (left, right):
        v = values[at]
        distances.append(np.where((v > lo) & (v < hi), np.abs(v - middle), np.inf))
    at = np.where(distances[1] < distances[0], right, left)
    return at, np.isfinite(np.minimum(distances[0], distances[1]))


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
    for name, (lo, hi) in domain.items():
        if not (lo <= hi and lo < math.inf and hi > -math.inf):
            raise OptionError(f"domain[{name!r}]", (lo, hi), "the range is empty: needs "
                                                             "lo <= hi, lo < inf, hi > -inf")
    unknown = sorted({s.name for t in terms for s in t.free_symbols} - set(names))
    if unknown:
        raise OptionError("domain", dict(domain), f"no range for {', '.join(unknown)}")
    groups = components(terms, names)
    if not separable and groups:
        groups = [([n for n in names if any(n in g[0] for g in groups)],
                   sorted(i for g in groups for i in g[1]))]
    constants = [t for t in terms if not t.free_symbols]
    empty = np.zeros((1, 0))
    with np.errstate(all="ignore"):
        parts = [BoxFunction(t, [])(empty, empty) for t in constants]
    value = bound = 0.0
    for p in parts:
        value, bound = _down(value + float(p.lo[0])), _up(bound + float(p.hi[0]))
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
    unbounded = any(s.lower >= _HUGE for s in searches)
    if any(s.upper() == -math.inf for s in searches):  # a group is undefined everywhere,
        value = bound = -math.inf  # and so is the sum (not inf - inf)
        unbounded = False
    return Optimum(value=value, bound=bound, point=point, certified=bool(certified),
                   boxes=sum(s.boxes for s in searches), seconds=time.monotonic() - start,
                   components=len(groups), unbounded=unbounded)
