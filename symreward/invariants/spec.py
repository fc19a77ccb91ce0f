"""An invariant table read into an immutable ``Invariant``: the keys its rule allows and needs,
its domain box and the formulas its rule reads. ``Rule`` is what every rule provides."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import sympy

from symreward import formula
from symreward.errors import InvariantError, SymrewardError

if TYPE_CHECKING:
    from symreward.artifact import RewardArtifact
    from symreward.invariants.checker import Checker
    from symreward.invariants.report import InvariantResult

_COMMON_KEYS = ("rule", "domain", "note")


@dataclass(frozen=True)
class Invariant:
    """One validated invariant: its table, its domain box and its parsed formulas."""

    index: int
    rule: str
    spec: Mapping[str, Any]
    domain: Mapping[str, tuple[float, float]]
    condition: sympy.Expr | None = None  # where / when
    better: sympy.Expr | None = None
    worse: sympy.Expr | None = None
    of: sympy.Expr | None = None
    feature: str | None = None  # the one feature `of` uses (monotone, independent)

    @property
    def description(self) -> str:
        shown = ", ".join(f"{k} = {v!r}" for k, v in self.spec.items()
                          if k not in ("rule", "note"))
        return f"{self.rule}" + (f" ({shown})" if shown else "")


class Rule:
    """A rule an invariant may state. A new rule is a subclass and one entry in
    ``symreward.invariants.rules.RULES``, which parsing, checking and the artifact read."""

    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()

    @classmethod
    def fields(cls, table: Mapping[str, Any], names: Sequence[str], where: str
               ) -> dict[str, Any]:
        """The ``Invariant`` fields parsed from ``table``, whose keys are already checked;
        raises ``InvariantError`` naming ``where`` and the key."""
        raise NotImplementedError

    @classmethod
    def decide(cls, checker: Checker, invariant: Invariant, deadline: float) -> InvariantResult:
        """The decision on ``invariant``; proofs give up at ``deadline`` (``time.monotonic``)."""
        raise NotImplementedError


def read(index: int, table: Mapping[str, Any], rule: type[Rule], names: Sequence[str],
         base: Mapping[str, tuple[float, float]], where: str) -> Invariant:
    """The invariant ``table`` states under ``rule``, on ``base`` updated with its own domain."""
    name = table["rule"]
    allowed = (*_COMMON_KEYS, *rule.required, *rule.optional)
    for key in table:
        if key not in allowed:
            raise InvariantError(f"{where}: unknown key '{key}' for rule '{name}' (expected "
                                 f"{', '.join(allowed)})")
    for key in rule.required:
        if key not in table:
            raise InvariantError(f"{where}: rule '{name}' needs '{key}'")
    domain = dict(base)
    if "domain" in table:
        box = table["domain"]
        if not isinstance(box, Mapping):
            raise InvariantError(f"{where}.domain: must be a table of feature = [lo, hi]")
        for feature, value in box.items():
            if feature not in names:
                raise InvariantError(f"{where}.domain: unknown feature '{feature}' (known: "
                                     f"{', '.join(names)})")
            domain[feature] = _pair(value, f"{where}.domain.{feature}")
    return Invariant(index=index, rule=name, spec=MappingProxyType(dict(table)),
                     domain=MappingProxyType(domain), **rule.fields(table, names, where))


def formula_field(table: Mapping[str, Any], key: str, names: Sequence[str], where: str
                  ) -> sympy.Expr:
    """The formula at ``table[key]``, over the features ``names``."""
    text = table[key]
    if not isinstance(text, str):
        raise InvariantError(f"{where}.{key}: must be a formula string, not "
                             f"{type(text).__name__}")
    try:
        return formula.parse(text, names)
    except SymrewardError as exc:
        raise InvariantError(f"{where}.{key}: {exc}") from None


def recorded_ranges(artifact: RewardArtifact) -> dict[str, tuple[float, float]]:
    """The domain box recorded in provenance (``feature_ranges``); unbounded where none is."""
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
