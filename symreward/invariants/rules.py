"""The rules an invariant may state, one class each, and their registry ``RULES`` (rule name →
class), which parsing, checking and the artifact read. A new rule is a ``spec.Rule`` subclass
and one entry here."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import sympy

from symreward import formula
from symreward.errors import InvariantError
from symreward.invariants.branch_and_bound import maximise, symbolic_nonpositive
from symreward.invariants.monotone import Decreasing, Increasing
from symreward.invariants.points import TOLERANCE, point_function
from symreward.invariants.report import InvariantResult
from symreward.invariants.sampling import float_range, search
from symreward.invariants.spec import Rule, formula_field

if TYPE_CHECKING:
    from symreward.invariants.checker import Checker
    from symreward.invariants.spec import Invariant

SIGNS = ("negative", "positive", "nonpositive", "nonnegative")


class Bounded(Rule):
    """``lo <= reward <= hi`` everywhere on the domain; an undefined reward violates it."""

    optional = ("lo", "hi")

    @classmethod
    def fields(cls, table: Mapping[str, Any], names: Sequence[str], where: str
               ) -> dict[str, Any]:
        if "lo" not in table and "hi" not in table:
            raise InvariantError(f"{where}: rule 'bounded' needs 'lo', 'hi' or both")
        for key in ("lo", "hi"):
            value = table.get(key, 0.0)
            if not isinstance(value, int | float) or isinstance(value, bool) or value != value:
                raise InvariantError(f"{where}.{key}: must be a number, not {value!r}")
        if "lo" in table and "hi" in table and table["lo"] > table["hi"]:
            raise InvariantError(f"{where}: lo = {table['lo']} is above hi = {table['hi']}")
        return {}

    @classmethod
    def decide(cls, checker: Checker, invariant: Invariant, deadline: float) -> InvariantResult:
        lo, hi = invariant.spec.get("lo"), invariant.spec.get("hi")
        goals = []
        if hi is not None:
            goals.append((checker.reward.expr, float(hi), False))
        if lo is not None:
            goals.append((-checker.reward.expr, -float(lo), False))

        def holds(r: float) -> bool:
            return (r == r and (lo is None or r >= lo - TOLERANCE * (1 + abs(lo)))
                    and (hi is None or r <= hi + TOLERANCE * (1 + abs(hi))))
        return _decide_bounds(checker, invariant, deadline, goals, None, holds)


class Sign(Rule):
    """The reward has the sign ``is`` wherever ``when`` holds."""

    required = ("is",)
    optional = ("when",)

    @classmethod
    def fields(cls, table: Mapping[str, Any], names: Sequence[str], where: str
               ) -> dict[str, Any]:
        if table["is"] not in SIGNS:
            raise InvariantError(f"{where}.is: {table['is']!r} is not one of {', '.join(SIGNS)}")
        return {"condition": formula_field(table, "when", names, where) if "when" in table
                else None}

    @classmethod
    def decide(cls, checker: Checker, invariant: Invariant, deadline: float) -> InvariantResult:
        vacuous = checker.condition_check(invariant, invariant.condition, "when", deadline)
        if isinstance(vacuous, InvariantResult):
            return vacuous
        kind = invariant.spec["is"]
        r = checker.reward.expr
        goal = {"negative": (r, 0.0, True), "nonpositive": (r, 0.0, False),
                "positive": (-r, 0.0, True), "nonnegative": (-r, 0.0, False)}[kind]
        holds = {"negative": lambda v: v < 0, "nonpositive": lambda v: v <= TOLERANCE,
                 "positive": lambda v: v > 0, "nonnegative": lambda v: v >= -TOLERANCE}[kind]
        return _decide_bounds(checker, invariant, deadline, [goal], invariant.condition, holds)


def _decide_bounds(checker: Checker, invariant: Invariant, deadline: float,
                   goals: list[tuple[sympy.Expr, float, bool]], cond: sympy.Expr | None,
                   holds: Callable[[float], bool]) -> InvariantResult:
    """Rules of the form: wherever ``cond`` holds, ``g <= t`` for each goal (g, t, strict)."""
    names = checker.names
    total = 0
    proved_all, method = True, "symbolic"
    for g, threshold, strict in goals:
        if cond is None and not strict and symbolic_nonpositive(g - threshold):
            continue
        outcome = maximise(g, cond, invariant.domain, threshold, strict, deadline, names)
        total += outcome.boxes
        if outcome.status == "violated":
            c_fn = point_function(cond, names) if cond is not None else None

            def violates(state: dict[str, float], c_fn: Any = c_fn) -> bool:
                values = [state[n] for n in names]
                met = c_fn is None or c_fn(*values) != 0
                return met and not holds(checker.reward.at(state))

            point = outcome.point
            if violates(point):
                point = checker.shrink(invariant, point, violates)
            return checker.violation(invariant, f"branch-and-bound search ({total} boxes), "
                                     "shrunk", point)
        if outcome.status != "proved":
            proved_all = False
        else:
            method = "interval proof"
    if proved_all:
        return checker.result(invariant, "proved", method + (f" ({total} boxes)" if total
                                                             else ""))
    c_pt = point_function(cond, names) if cond is not None else None
    met = [0]

    def problem(state: dict[str, float]) -> Any:
        values = [state[n] for n in names]
        if c_pt is not None and c_pt(*values) == 0:
            return None
        met[0] += 1
        return None if holds(checker.reward.at(state)) else "out of bounds"

    for checked, row in enumerate(checker.data_states(invariant), start=1):
        if problem(row) is not None:
            return checker.violation(invariant, "data point", row, checked)
    met[0] = 0
    state, _, tried = search(checker.states(invariant), problem, checker.examples)
    if state is not None:
        return checker.violation(invariant, "property test (hypothesis)", state, tried)
    if met[0] == 0:
        return checker.result(invariant, "unknown", "property test (hypothesis)",
                              examples=tried, detail="the condition was never met")
    return checker.result(invariant, "held", "property test (hypothesis)", examples=tried,
                          detail="" if met[0] == tried else f"condition met in {met[0]}")


class Prefers(Rule):
    """Every state meeting ``better`` scores strictly above every state meeting ``worse``."""

    required = ("better", "worse")

    @classmethod
    def fields(cls, table: Mapping[str, Any], names: Sequence[str], where: str
               ) -> dict[str, Any]:
        return {"better": formula_field(table, "better", names, where),
                "worse": formula_field(table, "worse", names, where)}

    @classmethod
    def decide(cls, checker: Checker, invariant: Invariant, deadline: float) -> InvariantResult:
        names = checker.names
        witnesses = []
        for cond, what in ((invariant.better, "better"), (invariant.worse, "worse")):
            found = checker.condition_check(invariant, cond, what, deadline)
            if isinstance(found, InvariantResult):
                return found
            witnesses.append(found)
        r = checker.reward.expr
        best = cls._sample_extreme(checker, invariant, invariant.better, True, witnesses[0])
        worst = cls._sample_extreme(checker, invariant, invariant.worse, False, witnesses[1])
        detail = ("the compared state meets 'better' but does not score above the "
                  "counterexample, which meets 'worse'")
        boxes = 0
        # Proved when max(reward over worse) < t <= min(reward over better) for a threshold t
        # between the extremes seen so far; a box midpoint beyond t improves them and t moves.
        while best is not None and worst is not None and time.monotonic() < deadline:
            if not best[0] > worst[0]:
                good, bad = cls._shrink_preference(checker, invariant, best[1], worst[1])
                return checker.violation(invariant, "branch-and-bound search, shrunk", bad,
                                         other=good, detail=detail)
            t = best[0] / 2 + worst[0] / 2
            upper = maximise(r, invariant.worse, invariant.domain, t, True, deadline, names)
            boxes += upper.boxes
            if upper.status == "violated":
                worst = (checker.reward.at(upper.point), upper.point)
                if worst[0] != worst[0]:
                    break
                continue
            lower = maximise(-r, invariant.better, invariant.domain, -t, False, deadline, names)
            boxes += lower.boxes
            if lower.status == "violated":
                best = (checker.reward.at(lower.point), lower.point)
                if best[0] != best[0]:
                    break
                continue
            if upper.status == "proved" and lower.status == "proved":
                return checker.result(invariant, "proved", f"interval proof ({boxes} boxes)")
            break
        b_pt = point_function(invariant.better, names)
        w_pt = point_function(invariant.worse, names)
        met = [0]

        def problem(pair: tuple[dict[str, float], dict[str, float]]) -> Any:
            good, bad = pair
            if b_pt(*(good[n] for n in names)) == 0:
                return None
            if w_pt(*(bad[n] for n in names)) == 0:
                return None
            met[0] += 1
            rg, rb = checker.reward.at(good), checker.reward.at(bad)
            return None if rg > rb else "not preferred"

        from hypothesis import strategies as st

        states = checker.states(invariant)
        pair, _, tried = search(st.tuples(states, states), problem, checker.examples)
        if pair is not None:
            return checker.violation(invariant, "property test (hypothesis)", pair[1], tried,
                                     other=pair[0], detail=detail)
        if met[0] == 0 and (best is None or worst is None):
            return checker.result(invariant, "unknown", "property test (hypothesis)",
                                  examples=tried, detail="no sampled pair met both conditions")
        return checker.result(invariant, "held", "property test (hypothesis)", examples=tried)

    @classmethod
    def _shrink_preference(cls, checker: Checker, invariant: Invariant,
                           good: Mapping[str, float], bad: Mapping[str, float]
                           ) -> tuple[dict, dict]:
        """Simplify a pair (meets better, meets worse) whose rewards are in the wrong order."""
        names, reward = checker.names, checker.reward
        b_pt = point_function(invariant.better, names)
        w_pt = point_function(invariant.worse, names)
        good, bad = dict(good), dict(bad)
        if not reward.at(good) > reward.at(bad):  # not NaN: shrinking keeps order
            r_good = reward.at(good)
            bad = checker.shrink(invariant, bad, lambda s: w_pt(*(s[n] for n in names)) != 0
                                 and not r_good > reward.at(s))
            r_bad = reward.at(bad)
            good = checker.shrink(invariant, good, lambda s: b_pt(*(s[n] for n in names)) != 0
                                  and not reward.at(s) > r_bad)
        return good, bad

    @classmethod
    def _sample_extreme(cls, checker: Checker, invariant: Invariant, cond: sympy.Expr,
                        lowest: bool, witness: Mapping[str, float] | None
                        ) -> tuple[float, dict[str, float]] | None:
        """The lowest (highest) reward among a deterministic sample of states meeting cond."""
        names = checker.names
        rng = np.random.default_rng(0)
        c_pt = point_function(cond, names)
        ranges = [float_range(*invariant.domain[n]) for n in names]
        candidates = [rng.uniform([lo for lo, _ in ranges], [hi for _, hi in ranges])
                      for _ in range(max(200, checker.examples))]
        if checker.near is not None and len(checker.near):
            candidates += list(checker.near[:2000])
        if witness is not None:
            candidates.append([witness[n] for n in names])
        best = None
        for values in candidates:
            values = [float(min(max(v, lo), hi)) for v, (lo, hi) in zip(values, ranges,
                                                                          strict=True)]
            if c_pt(*values) == 0:
                continue
            state = dict(zip(names, values, strict=True))
            r = checker.reward.at(state)
            if r != r:
                return (math.nan, state)
            if best is None or (r < best[0] if lowest else r > best[0]):
                best = (r, state)
        return best


class Independent(Rule):
    """Changing the feature ``of`` alone never changes the reward."""

    required = ("of",)

    @classmethod
    def fields(cls, table: Mapping[str, Any], names: Sequence[str], where: str
               ) -> dict[str, Any]:
        if table["of"] not in names:
            raise InvariantError(f"{where}.of: must name a feature (one of {', '.join(names)}), "
                                 f"not {table['of']!r}")
        return {"feature": table["of"]}

    @classmethod
    def decide(cls, checker: Checker, invariant: Invariant, deadline: float) -> InvariantResult:
        from hypothesis import strategies as st

        f = invariant.feature
        if not checker.reward.expr.has(formula.symbol(f)):
            return checker.result(invariant, "proved", "symbolic",
                                  detail=f"the formula does not mention {f}")
        lo, hi = float_range(*invariant.domain[f])

        def problem(case: tuple[dict[str, float], float]) -> Any:
            state, b = case
            other = state | {f: b}
            r0, r1 = checker.reward.at(state), checker.reward.at(other)
            if r0 != r0 and r1 != r1:
                return None
            if not abs(r1 - r0) <= TOLERANCE * (1 + abs(r0) + abs(r1)):
                return (state, other)
            return None

        case, pair, tried = search(st.tuples(checker.states(invariant),
                                             st.floats(lo, hi, allow_nan=False)),
                                   problem, checker.examples)
        if case is not None:
            return checker.violation(invariant, "property test (hypothesis)", pair[1], tried,
                                     other=pair[0],
                                     detail=f"only {f} differs, but the reward changes")
        return checker.result(invariant, "held", "property test (hypothesis)", examples=tried)


# The order is the one error messages list the rules in.
RULES: dict[str, type[Rule]] = {
    "bounded": Bounded,
    "decreasing": Decreasing,
    "increasing": Increasing,
    "prefers": Prefers,
    "independent": Independent,
    "sign": Sign,
}
