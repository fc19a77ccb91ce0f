"""Parsing and deciding an artifact's invariants: ``parse_invariants`` and ``check`` dispatch
each table to its rule in ``RULES``, and ``Checker`` holds what every rule's decision shares
(the reward, the data, the budget) and the steps they have in common."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import sympy

from symreward.errors import InvariantError
from symreward.evaluate import feature_columns
from symreward.invariants.branch_and_bound import maximise
from symreward.invariants.domain import feature_domain
from symreward.invariants.points import Reward
from symreward.invariants.report import InvariantResult
from symreward.invariants.rules import RULES
from symreward.invariants.sampling import state_strategy
from symreward.invariants.spec import Invariant, read

if TYPE_CHECKING:
    from symreward.artifact import RewardArtifact


def parse_invariants(artifact: RewardArtifact) -> list[Invariant]:
    """Validate every invariant of ``artifact``; raises ``InvariantError`` listing all problems."""
    names = artifact.features.names
    base = feature_domain(artifact)
    parsed, problems = [], []
    for index, table in enumerate(artifact.invariants):
        where = f"{artifact.source}: invariants[{index}]"
        try:
            table = dict(table)
            rule = table.get("rule")
            if rule not in RULES:
                raise InvariantError(f"{where}.rule: {rule!r} is not one of {', '.join(RULES)}")
            parsed.append(read(index, table, RULES[rule], names, base, where))
        except InvariantError as exc:
            problems.append(str(exc))
    if problems:
        raise InvariantError("; ".join(problems) if len(problems) == 1 else
                             f"{len(problems)} problems:\n  " + "\n  ".join(problems))
    return parsed


def data_features(artifact: RewardArtifact, dataset: Any) -> np.ndarray:
    """Every feature's value on each transition of ``dataset``, columns in
    ``artifact.features.names`` order."""
    return feature_columns(dataset, artifact.features)


def check(artifact: RewardArtifact, data: Any = None, *, time_budget: float = 2.0,
          examples: int = 200, indices: Iterable[int] | None = None) -> list[InvariantResult]:
    """Decide the invariants of ``artifact`` (all, or those at ``indices``).

    ``data`` is an optional ``Dataset`` (property tests then also try its states and
    perturbations of them) or an (N, n_features) array of feature values. ``time_budget`` is
    the seconds each proof may take; ``examples`` the hypothesis examples per invariant.
    """
    if time_budget < 0 or examples < 1:
        raise InvariantError("time_budget must be >= 0 and examples >= 1")
    invariants = parse_invariants(artifact)
    near = None
    if data is not None:
        near = (np.asarray(data, dtype=np.float64) if isinstance(data, np.ndarray)
                else data_features(artifact, data))
        near = near[np.all(np.isfinite(near), axis=1)]
    checker = Checker(artifact, near, time_budget, examples)
    chosen = set(indices) if indices is not None else None
    return [checker.run(inv) for inv in invariants if chosen is None or inv.index in chosen]


class Checker:
    """The reward of one artifact, the data's states and the budgets, for deciding its
    invariants one at a time."""

    def __init__(self, artifact: RewardArtifact, near: np.ndarray | None, time_budget: float,
                 examples: int):
        self.reward = Reward(artifact)
        self.names = self.reward.names
        self.near = near
        self.time_budget = time_budget
        self.examples = examples

    def run(self, invariant: Invariant) -> InvariantResult:
        start = time.monotonic()
        result = RULES[invariant.rule].decide(self, invariant, start + self.time_budget)
        result.seconds = time.monotonic() - start
        return result

    def result(self, invariant: Invariant, status: str, method: str, **kwargs: Any
               ) -> InvariantResult:
        return InvariantResult(index=invariant.index, rule=invariant.rule,
                               description=invariant.description, status=status, method=method,
                               domain=invariant.domain.as_dict(), **kwargs)

    def violation(self, invariant: Invariant, method: str, state: Mapping[str, float],
                  examples: int = 0, other: Mapping[str, float] | None = None,
                  detail: str = "") -> InvariantResult:
        """A violated result: the counterexample ``state`` (and the compared state ``other``
        of a pairwise rule) with its reward and each term's contribution.

        Every state reported lies in the invariant's domain, inside the features' natural
        ranges; one outside is a bug of the rule that found it, raised as such rather than
        shown as a counterexample no state of the features can be."""
        state = {n: float(state[n]) for n in self.names}
        _inside(invariant, state, method)
        compared = None
        if other is not None:
            other = {n: float(other[n]) for n in self.names}
            _inside(invariant, other, method)
            compared = {"state": other, "reward": self.reward.at(other),
                        "contributions": self.reward.contributions(other)}
        return self.result(invariant, "violated", method, examples=examples,
                           counterexample=state, reward=self.reward.at(state),
                           contributions=self.reward.contributions(state), other=compared,
                           detail=detail)

    def shrink(self, invariant: Invariant, state: Mapping[str, float],
               violates: Callable[[dict[str, float]], bool], keep: Iterable[str] = ()
               ) -> dict[str, float]:
        """Simplify a counterexample found by branch-and-bound, as hypothesis would: move each
        feature to 0, an integer or fewer decimals while the invariant stays violated."""
        state = {n: float(state[n]) for n in self.names}
        for name in self.names:
            if name in keep:
                continue
            lo, hi = invariant.domain[name]
            value = state[name]
            for candidate in (0.0, float(round(value)), *(round(value, d) for d in (1, 2, 3, 4))):
                if candidate == value or not lo <= candidate <= hi:
                    continue
                trial = state | {name: candidate}
                if violates(trial):
                    state = trial
                    break
        return state

    def data_states(self, invariant: Invariant) -> list[dict[str, float]]:
        """The data's own states inside the invariant's domain, each tried exactly: a random
        search may well miss the one state that matters."""
        if self.near is None or not len(self.near):
            return []
        inside = np.ones(len(self.near), dtype=bool)
        for i, name in enumerate(self.names):
            lo, hi = invariant.domain[name]
            inside &= (self.near[:, i] >= lo) & (self.near[:, i] <= hi)
        return [dict(zip(self.names, map(float, row), strict=True))
                for row in self.near[inside][:50_000]]

    def states(self, invariant: Invariant) -> Any:
        """Hypothesis strategy of states in the invariant's domain, and near the data."""
        return state_strategy(self.names, invariant.domain, self.near)

    def condition_check(self, invariant: Invariant, cond: sympy.Expr | None, what: str,
                        deadline: float) -> InvariantResult | dict[str, float] | None:
        """A vacuous result when ``cond`` is proved never to hold on the domain, else a state
        where it holds (when one was found) or None."""
        if cond is None:
            return None
        budget = time.monotonic() + (deadline - time.monotonic()) / 4
        outcome = maximise(sympy.Integer(0), cond, invariant.domain, -1.0, False, budget,
                           self.names)
        if outcome.status == "vacuous":
            return self.result(invariant, "vacuous", f"interval proof ({outcome.boxes} boxes)",
                               detail=f"'{what}' never holds on the domain")
        return outcome.point


def _inside(invariant: Invariant, state: Mapping[str, float], method: str) -> None:
    outside = invariant.domain.outside(state)
    if outside:
        shown = ", ".join(f"{n} = {state[n]!r} not in {list(invariant.domain[n])}"
                          for n in outside)
        raise RuntimeError(f"internal error: invariants[{invariant.index}] ({method}) found a "
                           f"counterexample outside the domain: {shown}")
