"""What a person states a fit must respect (``Constraints``): invariants in the artifact's
``[[invariants]]`` format and accepted findings, and how the findings enter the fit; and the
constraints file ``learn --constraints`` reads (``read_constraints``)."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from symreward import validation
from symreward.errors import InvariantError, OptionError, SymrewardError
from symreward.features import FeatureSet
from symreward.findings import SCHEMA as FINDINGS_SCHEMA
from symreward.findings import Finding, FindingsError, parse_findings
from symreward.invariants.rules import RULES
from symreward.invariants.spec import Invariant, read
from symreward.tomlfiles import read_toml

# The least gap R(other) - R(state) a hard "below" constraint keeps, in reward units: enough
# for the strict order to survive rounding, too little to force a slope on a short segment.
MARGIN = 1e-6


@dataclass
class Constraints:
    """Constraints of a fit (``SymbolicRewardLearner(constraints=...)``).

    Parameters
    ----------
    invariants : sequence of dict
        Invariant tables in the artifact's ``[[invariants]]`` format. Each becomes sign bounds
        on the weights of the terms whose shape its rule decides by interval proofs
        (``symreward.constraints.shapes``), and the learned artifact lists it, so ``check``
        verifies the whole reward.
    findings : sequence of Finding
        Findings (``symreward.findings``); only the accepted ones (``accept = true``)
        constrain. ``at_most`` / ``at_least`` bound the reward at the finding's state (hard, every
        objective). ``below`` is a hard margin, ``R(state) <= R(other) - margin`` (the
        finding's own ``margin`` where it has one), by default (every objective), or a soft
        preference (``finding_weight``).
    finding_weight : float or None, default=None
        ``None``: ``below`` findings are hard margins. A positive number: each ``below`` finding
        is instead one more labelled pair of single-state segments (``other`` preferred), of
        this weight against the data's pairs' weight of 1, in the training loss of the
        preference and ranking objectives only; it is then not guaranteed to hold.
    margin : float, default=1e-6
        The least gap ``R(other) - R(state)`` a hard ``below`` finding keeps, in reward units.
    source : str
        Where the constraints were read from, for messages.
    """

    invariants: Sequence[Mapping[str, Any]] = ()
    findings: Sequence[Finding] = ()
    finding_weight: float | None = None
    margin: float = MARGIN
    source: str = "<memory>"

    @property
    def accepted(self) -> list[Finding]:
        return [f for f in self.findings if f.accept]

    def check(self) -> None:
        """The options' values; an ``OptionError`` names the first bad one."""
        validation.number("finding_weight", self.finding_weight, 0.0, low_open=True,
                          optional=True)
        validation.number("margin", self.margin, 0.0)
        if isinstance(self.invariants, str | bytes | Mapping) or not all(
                isinstance(t, Mapping) for t in self.invariants):
            raise OptionError("constraints.invariants", self.invariants,
                              "must be a sequence of invariant tables (dicts)")
        if not all(isinstance(f, Finding) for f in self.findings):
            raise OptionError("constraints.findings", self.findings,
                              "must be a sequence of symreward.findings.Finding")

    def with_invariants(self, tables: Sequence[Mapping[str, Any]]) -> Constraints:
        """These constraints with ``tables`` added (tables already present are not repeated)."""
        merged = [dict(t) for t in self.invariants]
        merged += [dict(t) for t in tables if dict(t) not in merged]
        return replace(self, invariants=merged)

    def merged(self, other: Constraints) -> Constraints:
        """These constraints and ``other``'s invariants and findings (this one's options)."""
        taken = {f.id for f in self.findings}
        return replace(self.with_invariants(other.invariants),
                       findings=[*self.findings, *(f for f in other.findings
                                                   if f.id not in taken)])


def read_constraints(path: str | os.PathLike, features: FeatureSet) -> Constraints:
    """The constraints in the TOML file at ``path``: ``[[invariants]]`` tables in the
    artifact's format, and/or a findings file's ``[[findings]]`` (with its ``schema``), both
    checked against ``features``. Raises a ``SymrewardError`` naming the file, the table's
    index and the field."""
    data = read_toml(path).unwrap()
    names = features.names
    findings: list[Finding] = []
    if "schema" in data or "findings" in data:
        findings = parse_findings(data, names, str(path), other_keys=("invariants",)).findings
    else:
        unknown = [key for key in data if key != "invariants"]
        if unknown:
            raise FindingsError(f"{path}: unknown top-level key '{unknown[0]}' (a constraints "
                                "file holds [[invariants]] tables, or is a findings file with "
                                f"schema = {FINDINGS_SCHEMA!r})")
    tables = data.get("invariants", [])
    if not isinstance(tables, list):
        raise InvariantError(f"{path}: invariants: must be an array of [[invariants]] tables")
    if not tables and not findings:
        raise SymrewardError(f"{path}: no [[invariants]] or [[findings]] to constrain a fit")
    read_invariants(tables, names, {n: (-math.inf, math.inf) for n in names}, str(path))
    return Constraints(invariants=[dict(t) for t in tables], findings=findings,
                       source=str(path))


def read_invariants(tables: Sequence[Any], names: Sequence[str],
                    box: Mapping[str, tuple[float, float]], source: str) -> list[Invariant]:
    """Each table read as an invariant over the features ``names`` on the domain ``box`` (an
    invariant's own ``domain`` overrides it); an ``InvariantError`` lists every problem,
    naming ``source``, the table's index and the key."""
    parsed, problems = [], []
    for index, table in enumerate(tables):
        where = f"{source}: invariants[{index}]"
        try:
            if not isinstance(table, Mapping):
                raise InvariantError(f"{where}: must be a table")
            rule = table.get("rule")
            if rule not in RULES:
                raise InvariantError(f"{where}.rule: {rule!r} is not one of {', '.join(RULES)}")
            parsed.append(read(index, dict(table), RULES[rule], names, box, where))
        except InvariantError as exc:
            problems.append(str(exc))
    if problems:
        raise InvariantError(problems[0] if len(problems) == 1 else
                             f"{len(problems)} problems:\n  " + "\n  ".join(problems))
    return parsed
