"""Constraints bound to one fit (``FitConstraints``): the invariants read on the data's domain,
the accepted findings' states with the locked terms' reward there; for a list of candidate
terms (``for_candidates``) the sign bounds of their weights and the findings as rows, which
``CandidateConstraints.attach`` puts on the fit's linear problems, and ``effective_support``,
a support without the terms the constraints force to 0.

What each objective supports: sign bounds, ``at_most`` / ``at_least`` findings and hard
``below`` findings hold in every objective's fit (its weights and, where the objective reports
one, its intercept). Soft ``below`` findings (``Constraints.finding_weight``) are preference
pairs: the preference and ranking objectives only, whose losses are over pairs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import sympy

from symreward.constraints.shapes import ShapeRules
from symreward.constraints.spec import Constraints, read_invariants
from symreward.errors import OptionError
from symreward.findings import Finding, FindingsError
from symreward.invariants.points import point_function
from symreward.objectives.fitting import fit
from symreward.objectives.linear import LinearConstraints, LinearProblem

if TYPE_CHECKING:
    from symreward.artifact import RewardArtifact
    from symreward.search.library import Candidate


def stated_invariants(constraints: Constraints | None, base: RewardArtifact | None
                      ) -> list[dict[str, Any]]:
    """The invariants a fit with ``constraints`` from ``base`` states: ``base``'s first, then
    the constraints' not among them (the learned artifact lists them all)."""
    tables = [dict(t) for t in base.invariants] if base is not None else []
    extra = list(constraints.invariants) if constraints is not None else []
    return tables + [dict(t) for t in extra if dict(t) not in tables]


def fit_constraints(constraints: Constraints | None, base: RewardArtifact | None,
                    names: Sequence[str], ranges: Mapping[str, tuple[float, float]],
                    locked: Sequence[sympy.Expr], *, kind: str, intercept: bool
                    ) -> FitConstraints | None:
    """The constraints of a fit from ``base`` with the option ``constraints``: its
    findings and options, and the ``stated_invariants``; None where there are none.
    ``FitConstraints`` says what the other arguments are."""
    tables = stated_invariants(constraints, base)
    if constraints is None and not tables:
        return None
    source = (constraints.source if constraints is not None
              else base.source if base is not None else "")
    chosen = replace(constraints or Constraints(), invariants=tables, source=source)
    return FitConstraints(chosen, names, ranges, locked, kind=kind, intercept=intercept)


class FitConstraints:
    """``constraints`` for a fit over the features ``names`` whose domain box is ``ranges``
    (the data's feature ranges; an invariant's own ``domain`` overrides them), with the locked
    terms ``locked`` as a fixed reward; ``kind`` is the fit's loss (``LinearProblem.kind``) and
    ``intercept`` whether the learned reward reports an intercept."""

    def __init__(self, constraints: Constraints, names: Sequence[str],
                 ranges: Mapping[str, tuple[float, float]], locked: Sequence[sympy.Expr], *,
                 kind: str, intercept: bool):
        constraints.check()
        self.constraints = constraints
        self.names = list(names)
        box = {n: tuple(ranges.get(n, (-math.inf, math.inf))) for n in self.names}
        self.invariants = read_invariants(constraints.invariants, self.names, box,
                                          f"constraints ({constraints.source})")
        self.shapes = ShapeRules(self.invariants, self.names)
        self.findings = constraints.accepted
        self.soft = constraints.finding_weight is not None
        if self.soft and kind != "bernoulli":
            raise OptionError("constraints.finding_weight", constraints.finding_weight,
                              "soft findings are preference pairs: only with the preferences "
                              "and rankings objectives (None: hard margins, every objective)")
        self.intercept = intercept
        self.states = _states(self.findings, self.names, constraints.source)
        reward = sympy.Add(*locked)
        at = point_function(reward, self.names)
        self.locked_at_states = np.array([at(*row) for row in self.states])
        self._values: dict[str, np.ndarray] = {}

    def for_candidates(self, candidates: Sequence[Candidate]) -> CandidateConstraints:
        """The constraints on the weights of ``candidates`` (the fit's columns, in order)."""
        k = len(candidates)
        values = np.column_stack([self._at_states(c) for c in candidates]) if k else \
            np.zeros((len(self.states), 0))
        lower, upper = np.full(k, -math.inf), np.full(k, math.inf)
        for j, candidate in enumerate(candidates):
            lower[j], upper[j] = self.shapes.bounds(candidate.expr)
        # A term undefined at an accepted state cannot meet a constraint there: left out.
        undefined = ~np.all(np.isfinite(values), axis=0)
        lower[undefined] = upper[undefined] = 0.0
        values[:, undefined] = 0.0
        rows, intercept_rows, limits, labels, pairs = [], [], [], [], []
        for finding in self.findings:
            s = self._row(finding.state)
            here, offset = values[s], self.locked_at_states[s]
            if finding.want == "below":
                o = self._row(finding.other)
                there, other_offset = values[o], self.locked_at_states[o]
                if self.soft:
                    pairs.append((there - here, other_offset - offset))
                    continue
                rows.append(here - there)
                intercept_rows.append(0.0)
                margin = (self.constraints.margin if finding.margin is None
                          else finding.margin)
                limits.append(other_offset - offset - margin)
                labels.append(f"finding {finding.id}: R(state) "
                              f"{'<' if finding.strict else '<='} R(other)")
            else:
                sign = 1.0 if finding.want == "at_most" else -1.0
                rows.append(sign * here)
                intercept_rows.append(sign if self.intercept else 0.0)
                limits.append(sign * (finding.bound - offset))
                labels.append(f"finding {finding.id}: R(state) "
                              f"{'<=' if sign > 0 else '>='} {finding.bound:g}")
        low, high = self.shapes.intercept_bounds() if self.intercept else (-math.inf, math.inf)
        linear = LinearConstraints(
            lower, upper, np.array(rows).reshape(len(rows), k), np.array(intercept_rows),
            np.array(limits), tuple(labels), intercept_lower=low, intercept_upper=high)
        return CandidateConstraints(linear, pairs, self.constraints.finding_weight or 0.0)

    def summary(self) -> dict[str, Any]:
        """What constrained the fit, for provenance."""
        summary: dict[str, Any] = {"invariants": len(self.invariants),
                                   "findings": [f.id for f in self.findings]}
        if self.findings:
            summary["findings_as"] = "pairs" if self.soft else "margins"
            if self.soft:
                summary["finding_weight"] = self.constraints.finding_weight
            else:
                summary["margin"] = self.constraints.margin
        return summary

    def _row(self, state: Mapping[str, float] | None) -> int:
        assert state is not None
        key = [float(state[n]) for n in self.names]
        return next(i for i, row in enumerate(self.states) if list(row) == key)

    def _at_states(self, candidate: Candidate) -> np.ndarray:
        if candidate.text not in self._values:
            at = point_function(candidate.expr, self.names)
            self._values[candidate.text] = np.array([at(*row) for row in self.states])
        return self._values[candidate.text]


@dataclass(frozen=True)
class CandidateConstraints:
    """The constraints on one list of candidates' weights: ``linear`` (bounds, hard rows) and
    the soft ``pairs`` (each the columns' difference, preferred state minus the other, and the
    locked reward's), each of ``pair_weight``."""

    linear: LinearConstraints
    pairs: Sequence[tuple[np.ndarray, float]] = ()
    pair_weight: float = 0.0

    def attach(self, problem: LinearProblem) -> LinearProblem:
        """``problem`` (a training problem over these candidates' columns) with the
        constraints, and the soft pairs as more rows of its loss."""
        problem = replace(problem, constraints=self.linear)
        if not self.pairs:
            return problem
        count = len(self.pairs)
        extra = replace(problem, X=np.array([x for x, _ in self.pairs]),
                        target=np.ones(count), offset=np.array([o for _, o in self.pairs]),
                        weight=np.full(count, self.pair_weight))
        return LinearProblem.stacked([problem, extra])


def effective_support(problem: LinearProblem, support: Sequence[int]) -> tuple[int, ...]:
    """``support`` without the columns ``problem``'s constraints force to 0: those bounded to
    0, then those whose constrained fit sets a weight bounded on one side by 0 to exactly 0
    (refit until none does). Without constraints, ``support`` as it is."""
    constraints = problem.constraints
    support = tuple(support)
    if constraints is None:
        return support
    pinned = (constraints.lower == 0) | (constraints.upper == 0)
    support = tuple(k for k in support if not constraints.lower[k] == constraints.upper[k] == 0)
    while support:
        fitted = fit(problem, support)
        zero = {k for k, c in zip(support, fitted.coef, strict=True) if c == 0 and pinned[k]}
        if not zero:
            break
        support = tuple(k for k in support if k not in zero)
    return support


def _states(findings: Sequence[Finding], names: Sequence[str], source: str) -> np.ndarray:
    """The distinct states of ``findings`` (state and other) as rows over ``names``."""
    rows: list[list[float]] = []
    for index, finding in enumerate(findings):
        for field, state in (("state", finding.state), ("other", finding.other)):
            if state is None:
                continue
            if set(state) != set(names):
                raise FindingsError(f"constraints ({source}): finding {finding.id!r} "
                                    f"(findings[{index}]).{field}: features "
                                    f"{', '.join(sorted(state))} are not the fit's "
                                    f"{', '.join(names)}")
            row = [float(state[n]) for n in names]
            if row not in rows:
                rows.append(row)
    return np.array(rows, dtype=float).reshape(len(rows), len(names))
