"""An invariant table read into an immutable ``Invariant``: the keys its rule allows and needs,
its domain box (``domain.FeatureDomain``) and the formulas its rule reads. ``Rule`` is what
every rule provides."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import sympy

from symreward import formula
from symreward.errors import InvariantError, SymrewardError
from symreward.invariants.domain import FeatureDomain

if TYPE_CHECKING:
    from symreward.invariants.checker import Checker
    from symreward.invariants.report import InvariantResult

_COMMON_KEYS = ("rule", "domain", "note")


@dataclass(frozen=True)
class Invariant:
    """One validated invariant: its table, its domain box and its parsed formulas."""

    index: int
    rule: str
    spec: Mapping[str, Any]
    domain: FeatureDomain
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
    """The invariant ``table`` states under ``rule``, on ``base`` restricted by its own
    domain. ``base`` is a ``FeatureDomain`` (``feature_domain``: inside the natural ranges),
    or a plain box ``{feature: (lo, hi)}`` taken as recorded ranges with no natural ones."""
    if not isinstance(base, FeatureDomain):
        base = FeatureDomain.from_ranges(names, base, where=f"{where}: the domain box")
    name = table["rule"]
    allowed = (*_COMMON_KEYS, *rule.required, *rule.optional)
    for key in table:
        if key not in allowed:
            raise InvariantError(f"{where}: unknown key '{key}' for rule '{name}' (expected "
                                 f"{', '.join(allowed)})")
    for key in rule.required:
        if key not in table:
            raise InvariantError(f"{where}: rule '{name}' needs '{key}'")
    domain = base.restricted(table["domain"], f"{where}.domain") if "domain" in table else base
    return Invariant(index=index, rule=name, spec=MappingProxyType(dict(table)),
                     domain=domain, **rule.fields(table, names, where))


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
