"""The feature domain: the box of values each feature may take, which the checker's proofs and
property tests, ``symreward.testing.feature_states`` and the audit's exploit search all search.

A feature's bounds are its *natural range* — the values its formula can take at all, derived by
interval arithmetic over unbounded raw inputs (``sqrt(...)`` and even powers are >= 0, ``tanh``
lies in [-1, 1], ...) — intersected with the range recorded in provenance (``feature_ranges``:
what the training data held) or, for one invariant, with its own ``domain``, which replaces the
recorded range. Each bound keeps its source, so a report can say where it came from: ``domain``
(an invariant's own, or the ``domain`` argument of ``feature_domain``), ``recorded`` or
``natural``; a feature's source joins those of its two ends (``recorded ∩ natural``), and is
``unbounded`` when neither end is bounded.

The box treats features as independent: two features of the same raw input (``x`` and
``x**2``) each stay in their own range, but not every combination of values in the box is one
a raw input produces. Natural ranges are sound enclosures, not always tight ones: a formula that
uses an input twice (``obs[0]**2 - 2*obs[0]``) may get a wider range, or none, than its image.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import mpmath
from mpmath import iv

from symreward.errors import InvariantError
from symreward.invariants.intervals import (
    Undefined,
    Unsupported,
    interval_function,
    lower,
    upper,
)

if TYPE_CHECKING:
    from symreward.artifact import RewardArtifact
    from symreward.features import FeatureSet

UNBOUNDED = (-math.inf, math.inf)
# Where a bound comes from, in the order a combined source names them: an explicit bound before
# the formula's own, which it wins a tie against.
SOURCES = ("domain", "recorded", "natural")


@dataclass(frozen=True)
class FeatureBounds:
    """One feature's bounds and where each comes from (``None``: that end is unbounded)."""

    lo: float
    hi: float
    lo_source: str | None
    hi_source: str | None

    @property
    def source(self) -> str:
        """The sources of the bounds, ``" ∩ "``-joined (``"recorded ∩ natural"``), or
        ``"unbounded"`` when neither end is bounded."""
        used = {self.lo_source, self.hi_source} - {None}
        return " ∩ ".join(s for s in SOURCES if s in used) or "unbounded"

    def as_dict(self) -> dict[str, Any]:
        return {"lo": self.lo if math.isfinite(self.lo) else None,
                "hi": self.hi if math.isfinite(self.hi) else None, "source": self.source}


class FeatureDomain(Mapping[str, tuple[float, float]]):
    """The domain box: maps each feature to ``(lo, hi)`` (infinite where unbounded), with
    ``bounds[name]`` telling where each end comes from and ``natural`` the natural ranges."""

    def __init__(self, bounds: Mapping[str, FeatureBounds],
                 natural: Mapping[str, tuple[float, float]]):
        self.bounds = dict(bounds)
        self.natural = dict(natural)

    @classmethod
    def from_ranges(cls, names: Sequence[str], ranges: Mapping[str, tuple[float, float]],
                    natural: Mapping[str, tuple[float, float]] | None = None, *,
                    where: str = "feature ranges") -> FeatureDomain:
        """The domain of the features ``names``: each one's range in ``ranges`` (the data's
        ranges, source ``recorded``) intersected with its range in ``natural`` (its natural
        range; none: unbounded), unbounded where neither bounds it. Raises ``InvariantError``
        naming ``where`` and the feature when a range lies entirely outside the natural one."""
        natural = {name: tuple((natural or {}).get(name, UNBOUNDED)) for name in names}
        bounds = {name: _intersect(name, tuple(ranges.get(name, UNBOUNDED)), "recorded",
                                   natural[name], f"{where}.{name}") for name in names}
        return cls(bounds, natural)

    def __getitem__(self, name: str) -> tuple[float, float]:
        bound = self.bounds[name]
        return bound.lo, bound.hi

    def __iter__(self) -> Iterator[str]:
        return iter(self.bounds)

    def __len__(self) -> int:
        return len(self.bounds)

    def __repr__(self) -> str:
        return f"FeatureDomain({self.describe()})"

    @property
    def sources(self) -> dict[str, str]:
        """Each feature's source (``FeatureBounds.source``)."""
        return {name: bound.source for name, bound in self.bounds.items()}

    def restricted(self, box: Any, where: str) -> FeatureDomain:
        """This domain with ``box`` (``{feature: [lo, hi]}``, an invariant's own domain) in
        place of the recorded range of each feature it names, still inside the natural range.
        Raises ``InvariantError`` naming ``where`` for a bad table, an unknown feature or a
        range entirely outside the feature's natural range."""
        if not isinstance(box, Mapping):
            raise InvariantError(f"{where}: must be a table of feature = [lo, hi]")
        bounds = dict(self.bounds)
        for name, value in box.items():
            if name not in bounds:
                raise InvariantError(f"{where}: unknown feature '{name}' (known: "
                                     f"{', '.join(bounds)})")
            given = bounds_pair(value, f"{where}.{name}")
            bounds[name] = _intersect(name, given, "domain", self.natural[name],
                                      f"{where}.{name}")
        return FeatureDomain(bounds, self.natural)

    def outside(self, state: Mapping[str, float]) -> list[str]:
        """The features of ``state`` whose value is not inside the domain (NaN is not)."""
        return [name for name, value in state.items()
                if name in self.bounds and not self[name][0] <= value <= self[name][1]]

    def as_dict(self) -> dict[str, dict[str, Any]]:
        """``{feature: {"lo": float | None, "hi": float | None, "source": str}}`` (None:
        unbounded), as the audit's and the check's JSON hold it."""
        return {name: bound.as_dict() for name, bound in self.bounds.items()}

    def describe(self) -> str:
        """One line: each bounded feature's range and source, then the unbounded ones."""
        return describe_domain(self.as_dict())


def describe_domain(domain: Mapping[str, Mapping[str, Any]]) -> str:
    """The line ``FeatureDomain.describe`` prints, from its ``as_dict()``: ``dist in [0, +inf)
    (natural); a0, a1 unbounded``."""
    parts, free = [], []
    for name, bound in domain.items():
        lo, hi = bound["lo"], bound["hi"]
        if lo is None and hi is None:
            free.append(name)
            continue
        left = "(-inf" if lo is None else f"[{lo:.6g}"
        right = "+inf)" if hi is None else f"{hi:.6g}]"
        parts.append(f"{name} in {left}, {right} ({bound['source']})")
    if free:
        parts.append(f"{', '.join(free)} unbounded")
    return "; ".join(parts)


def natural_ranges(features: FeatureSet) -> dict[str, tuple[float, float]]:
    """Each feature's natural range ``(lo, hi)``: an interval holding every finite value its
    formula takes, as a real number and as the kernels compute it (``atan2(0.0, -0.0)`` is
    pi), with every raw input (``obs[i]``, ``act[i]``, ``next_obs[i]``, ``info.<name>``) free
    in (-inf, inf) and a feature that uses another reading that one's natural range. Ends are
    outward-rounded floats; ``(-inf, inf)`` where the formula has no interval rule or is
    nowhere defined.

    Not covered: floats that divide by a zero whose sign the reals do not have (``1 /
    sqrt(-0.0)`` is -inf where the reals say +inf, and ``tanh`` of it is -1)."""
    return dict(_natural_ranges(tuple(features.to_dict().items()), features.source))


@functools.lru_cache(maxsize=256)
def _natural_ranges(texts: tuple[tuple[str, str], ...], source: str
                    ) -> tuple[tuple[str, tuple[float, float]], ...]:
    from symreward.features import FeatureSet

    features = FeatureSet(dict(texts), source=source)
    whole = iv.mpf([-mpmath.inf, mpmath.inf])
    box: dict[str, Any] = {}
    ranges: dict[str, tuple[float, float]] = {}
    for name in features.order:
        expr = features.exprs[name]
        try:
            value = interval_function(expr, defined_only=True)(
                {s.name: box.get(s.name, whole) for s in expr.free_symbols})
            ranges[name] = (_float_below(lower(value)), _float_above(upper(value)))
        except (Undefined, Unsupported):
            ranges[name] = UNBOUNDED
        box[name] = iv.mpf(list(ranges[name]))
    return tuple((name, ranges[name]) for name in features.names)


def recorded_ranges(artifact: RewardArtifact) -> dict[str, tuple[float, float]]:
    """The ranges recorded in provenance (``feature_ranges``), for the features that have one."""
    ranges = artifact.provenance.get("feature_ranges") or {}
    if not isinstance(ranges, Mapping):
        raise InvariantError(f"{artifact.source}: provenance.feature_ranges must be a table of "
                             "feature = [lo, hi]")
    return {name: bounds_pair(ranges[name], f"{artifact.source}: provenance.feature_ranges."
                                            f"{name}")
            for name in artifact.features.names if name in ranges}


def feature_domain(artifact: RewardArtifact, domain: Mapping[str, Any] | None = None
                   ) -> FeatureDomain:
    """The domain of ``artifact``'s features: each feature's recorded range (provenance
    ``feature_ranges``) intersected with its natural range, or unbounded where neither bounds
    it; then ``domain`` (``{feature: [lo, hi]}``), when given, in place of the recorded range of
    each feature it names, intersected with the natural range.

    Raises ``InvariantError`` for a malformed range, an unknown feature, or a range that lies
    entirely outside the feature's natural range (a stale recording, a domain no state of the
    feature can be in), naming where it comes from.
    """
    base = FeatureDomain.from_ranges(artifact.features.names, recorded_ranges(artifact),
                                     natural_ranges(artifact.features),
                                     where=f"{artifact.source}: provenance.feature_ranges")
    return base if domain is None else base.restricted(domain, f"{artifact.source}: domain")


def bounds_pair(value: Any, where: str) -> tuple[float, float]:
    """``[lo, hi]`` read from a file: two numbers, ``lo <= hi``, each end infinite only on its
    own side (``[-inf, 0]``, not ``[inf, inf]``); raises ``InvariantError`` naming ``where``."""
    if (not isinstance(value, list | tuple) or len(value) != 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)):
        raise InvariantError(f"{where}: must be [lo, hi] with two numbers, not {value!r}")
    lo, hi = float(value[0]), float(value[1])
    if math.isnan(lo) or math.isnan(hi) or lo > hi:
        raise InvariantError(f"{where}: [lo, hi] needs lo <= hi, got {value!r}")
    if lo == math.inf or hi == -math.inf:
        raise InvariantError(f"{where}: [lo, hi] holds no finite number, got {value!r}")
    return lo, hi


def _intersect(name: str, given: tuple[float, float], source: str,
               natural: tuple[float, float], where: str) -> FeatureBounds:
    """``given`` (from ``source``) ∩ ``natural``, each end labelled with the one that bounds it
    (``given`` on a tie)."""
    lo, hi = max(given[0], natural[0]), min(given[1], natural[1])
    if lo > hi:
        raise InvariantError(
            f"{where}: [{given[0]:.6g}, {given[1]:.6g}] lies entirely outside the natural range "
            f"of feature '{name}', [{natural[0]:.6g}, {natural[1]:.6g}] (the values its formula "
            "can take)")
    lo_source = (None if lo == -math.inf else source if lo == given[0] else "natural")
    hi_source = (None if hi == math.inf else source if hi == given[1] else "natural")
    return FeatureBounds(lo, hi, lo_source, hi_source)


def _float_below(x: mpmath.mpf) -> float:
    """The largest float at or below ``x``."""
    value = float(x)
    return math.nextafter(value, -math.inf) if value > x else value


def _float_above(x: mpmath.mpf) -> float:
    """The smallest float at or above ``x``."""
    value = float(x)
    return math.nextafter(value, math.inf) if value < x else value
