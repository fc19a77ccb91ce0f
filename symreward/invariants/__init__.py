"""Invariants of a reward artifact: validation, sound interval proofs, property tests.

An artifact lists ``[[invariants]]`` tables; ``check`` decides each one and reports the strongest
result it reached:

* **proved** — symbolically (sympy's sign assumptions, only for formulas without division, roots
  or logarithms) or by interval arithmetic (``mpmath.iv``, outward-rounded) with branch-and-bound
  over the domain box, within ``time_budget`` seconds per invariant;
* **held** — hypothesis searched the domain (and points near the data, when given) and found no
  counterexample in the reported number of examples;
* **violated** — a concrete counterexample: the feature values (shrunk by hypothesis when it found
  them), the reward and each term's contribution;
* **vacuous** — the invariant's condition (``where``, ``when``, ``better``, ``worse``) is proved
  never to hold on the domain;
* **unknown** — neither a proof nor a test could run (e.g. a condition never met by any sample).

Semantics (all over the *domain*: the box of feature ranges recorded in provenance as
``feature_ranges``, overridden per invariant by ``domain = {feature = [lo, hi]}``; a feature with
no known range is unbounded). Features are treated as independent coordinates of that box, so the
domain may hold feature combinations no raw observation produces: proofs are conservative for
it, and a counterexample may be such a combination. Proofs are about the formula over the real
numbers; the float64 kernels may differ by rounding, so a tested value counts against a
non-strict bound only when it passes it by more than 1e-9 relative.

* ``bounded`` (``lo``, ``hi``, either optional): ``lo <= reward <= hi`` at every state of the
  domain. A state where the reward is undefined (NaN: log of a negative number, 0/0, ...)
  violates it.
* ``sign`` (``is`` = negative | positive | nonpositive | nonnegative, ``when`` optional):
  the reward has that sign wherever ``when`` holds (undefined rewards violate it).
* ``prefers`` (``better``, ``worse``): every state meeting ``better`` has a reward strictly above
  every state meeting ``worse``: ``min reward over better > max reward over worse``.
* ``decreasing`` / ``increasing`` (``of``, ``where`` optional): ``of`` must be a continuous
  formula of exactly one feature ``f`` (no comparisons, ``where`` or ``atan2``). Decreasing
  means: for any two states that differ only in ``f``, such that every state on the segment
  between them lies in the domain and meets ``where``, and ``of`` is strictly monotone along the
  segment, the state with the larger ``of`` has a reward no larger (increasing: no smaller).
  This is the "moving f so that of increases never increases the reward" reading: it is local to
  each branch of ``of`` (for ``of = abs(theta)`` the two sides of 0 are compared separately).
  Proof: when the reward is continuous in ``f`` (no comparison, ``where`` condition or ``atan2``
  involving ``f``), it is piecewise analytic along ``f``, so the claim is equivalent to
  ``d reward/df * d of/df <= 0`` (``>= 0``) wherever ``where`` may hold, and the interval proof
  bounds that product. Otherwise only property tests run. Pairs with an undefined reward are
  skipped.
* ``independent`` (``of`` = a feature name): changing that feature alone never changes the reward.
  Proved when the formula does not mention the feature; otherwise tested (exact equality up to
  1e-9 relative).

Conditions are formulas, true where non-zero (NaN counts as true, as in the kernels).

Limits of the proofs: interval bounds overestimate when a feature appears several times (the
dependency problem), so a bound that is tight along a curve (``x**2 - 2*x*y + y**2 >= 0``) runs
out of budget and is tested instead; so does a strict sign that becomes tight at an open
boundary (``x > 0`` where ``x > 0``). Counterexamples found by branch-and-bound are simplified
(features moved to 0, integers or fewer decimals while still violating) rather than shrunk by
hypothesis.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import sympy
from mpmath import iv

from symreward import formula
from symreward.errors import SymrewardError
from symreward.evaluate import feature_columns
from symreward.invariants.branch_and_bound import maximise, symbolic_nonpositive
from symreward.invariants.intervals import (
    IV,
    Undefined,
    Unsupported,
    interval_function,
    lower,
    upper,
)
from symreward.invariants.points import TOLERANCE, Reward, point_function
from symreward.invariants.report import STATUSES, InvariantResult, format_result
from symreward.invariants.sampling import WIDE, float_range, search, state_strategy

if TYPE_CHECKING:
    from symreward.artifact import RewardArtifact

__all__ = ["SIGNS", "STATUSES", "WIDE", "Invariant", "InvariantError", "InvariantResult", "check",
           "data_features", "format_result", "interval_function", "parse_invariants",
           "point_function", "state_strategy"]

SIGNS = ("negative", "positive", "nonpositive", "nonnegative")
_COMMON = ("rule", "domain", "note")
_KEYS = {
    "bounded": ((), ("lo", "hi")),
    "decreasing": (("of",), ("where",)),
    "increasing": (("of",), ("where",)),
    "prefers": (("better", "worse"), ()),
    "independent": (("of",), ()),
    "sign": (("is",), ("when",)),
}


class InvariantError(SymrewardError):
    """An invariant that cannot be checked: names the artifact, the invariant and the field."""


# -- parsed invariants ---------------------------------------------------------------------


@dataclass
class Invariant:
    """One validated invariant: its parsed formulas and its domain box."""

    index: int
    rule: str
    spec: dict[str, Any]
    domain: dict[str, tuple[float, float]]
    condition: sympy.Expr | None = None  # where / when
    better: sympy.Expr | None = None
    worse: sympy.Expr | None = None
    of: sympy.Expr | None = None
    feature: str | None = None  # the one feature `of` uses (monotone, independent)
    # interval functions of the condition and of d of/d feature, for the segment tests
    condition_iv: IV | None = field(default=None, repr=False)
    slope_iv: IV | None = field(default=None, repr=False)

    @property
    def description(self) -> str:
        shown = ", ".join(f"{k} = {v!r}" for k, v in self.spec.items()
                          if k not in ("rule", "note"))
        return f"{self.rule}" + (f" ({shown})" if shown else "")


def _recorded_ranges(artifact: RewardArtifact) -> dict[str, tuple[float, float]]:
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


def parse_invariants(artifact: RewardArtifact) -> list[Invariant]:
    """Validate every invariant of ``artifact``; raises ``InvariantError`` listing all problems."""
    names = artifact.features.names
    base = _recorded_ranges(artifact)
    parsed, problems = [], []
    for index, spec in enumerate(artifact.invariants):
        where = f"{artifact.source}: invariants[{index}]"
        try:
            parsed.append(_parse_one(index, dict(spec), names, base, where))
        except InvariantError as exc:
            problems.append(str(exc))
    if problems:
        raise InvariantError("; ".join(problems) if len(problems) == 1 else
                             f"{len(problems)} problems:\n  " + "\n  ".join(problems))
    return parsed


def _parse_one(index: int, spec: dict[str, Any], names: Sequence[str],
               base: Mapping[str, tuple[float, float]], where: str) -> Invariant:
    rule = spec.get("rule")
    if rule not in _KEYS:
        raise InvariantError(f"{where}.rule: {rule!r} is not one of {', '.join(_KEYS)}")
    required, optional = _KEYS[rule]
    allowed = (*_COMMON, *required, *optional)
    for key in spec:
        if key not in allowed:
            raise InvariantError(f"{where}: unknown key '{key}' for rule '{rule}' (expected "
                                 f"{', '.join(allowed)})")
    for key in required:
        if key not in spec:
            raise InvariantError(f"{where}: rule '{rule}' needs '{key}'")
    domain = dict(base)
    if "domain" in spec:
        table = spec["domain"]
        if not isinstance(table, Mapping):
            raise InvariantError(f"{where}.domain: must be a table of feature = [lo, hi]")
        for name, value in table.items():
            if name not in names:
                raise InvariantError(f"{where}.domain: unknown feature '{name}' (known: "
                                     f"{', '.join(names)})")
            domain[name] = _pair(value, f"{where}.domain.{name}")
    invariant = Invariant(index=index, rule=rule, spec=spec, domain=domain)

    def expr(key: str) -> sympy.Expr:
        text = spec[key]
        if not isinstance(text, str):
            raise InvariantError(f"{where}.{key}: must be a formula string, not "
                                 f"{type(text).__name__}")
        try:
            return formula.parse(text, names)
        except SymrewardError as exc:
            raise InvariantError(f"{where}.{key}: {exc}") from None

    if rule == "bounded":
        if "lo" not in spec and "hi" not in spec:
            raise InvariantError(f"{where}: rule 'bounded' needs 'lo', 'hi' or both")
        for key in ("lo", "hi"):
            value = spec.get(key, 0.0)
            if not isinstance(value, int | float) or isinstance(value, bool) or value != value:
                raise InvariantError(f"{where}.{key}: must be a number, not {value!r}")
        if "lo" in spec and "hi" in spec and spec["lo"] > spec["hi"]:
            raise InvariantError(f"{where}: lo = {spec['lo']} is above hi = {spec['hi']}")
    elif rule == "sign":
        if spec["is"] not in SIGNS:
            raise InvariantError(f"{where}.is: {spec['is']!r} is not one of {', '.join(SIGNS)}")
        invariant.condition = expr("when") if "when" in spec else None
    elif rule == "prefers":
        invariant.better, invariant.worse = expr("better"), expr("worse")
    elif rule == "independent":
        if spec["of"] not in names:
            raise InvariantError(f"{where}.of: must name a feature (one of {', '.join(names)}), "
                                 f"not {spec['of']!r}")
        invariant.feature = spec["of"]
    else:
        invariant.of = expr("of")
        used = sorted(s.name for s in invariant.of.free_symbols)
        if len(used) != 1:
            raise InvariantError(f"{where}.of: must use exactly one feature, uses "
                                 f"{', '.join(used) or 'none'} (only monotonicity along one "
                                 "feature is supported)")
        if _discontinuous_in(invariant.of, used[0]):
            raise InvariantError(f"{where}.of: must be continuous in {used[0]} (no comparison, "
                                 "where or atan2)")
        invariant.feature = used[0]
        invariant.condition = expr("where") if "where" in spec else None
    return invariant


def _discontinuous_in(expr: sympy.Expr, name: str) -> bool:
    """Whether ``expr`` may jump as feature ``name`` moves: it has a comparison, a where
    condition or an atan2 that involves the feature."""
    sym = formula.symbol(name)
    for node in sympy.preorder_traversal(expr):
        if isinstance(node, formula.Comparison | sympy.atan2) and node.has(sym):
            return True
        if isinstance(node, formula.Where) and node.args[0].has(sym):
            return True
    return False


# -- deciding each rule -------------------------------------------------------------------


class _Checker:
    def __init__(self, artifact: RewardArtifact, near: np.ndarray | None, time_budget: float,
                 examples: int):
        self.reward = Reward(artifact)
        self.names = self.reward.names
        self.near = near
        self.time_budget = time_budget
        self.examples = examples

    def run(self, invariant: Invariant) -> InvariantResult:
        start = time.monotonic()
        decide = {"bounded": self.bounded, "sign": self.sign, "prefers": self.prefers,
                  "decreasing": self.monotone, "increasing": self.monotone,
                  "independent": self.independent}[invariant.rule]
        result = decide(invariant, start + self.time_budget)
        result.seconds = time.monotonic() - start
        return result

    # helpers
    def _result(self, invariant: Invariant, status: str, method: str, **kwargs: Any
                ) -> InvariantResult:
        return InvariantResult(index=invariant.index, rule=invariant.rule,
                               description=invariant.description, status=status, method=method,
                               **kwargs)

    def _violation(self, invariant: Invariant, method: str, state: Mapping[str, float],
                   examples: int = 0, other: Mapping[str, float] | None = None,
                   detail: str = "") -> InvariantResult:
        state = {n: float(state[n]) for n in self.names}
        compared = None
        if other is not None:
            other = {n: float(other[n]) for n in self.names}
            compared = {"state": other, "reward": self.reward.at(other),
                        "contributions": self.reward.contributions(other)}
        return self._result(invariant, "violated", method, examples=examples,
                            counterexample=state, reward=self.reward.at(state),
                            contributions=self.reward.contributions(state), other=compared,
                            detail=detail)

    def _shrink(self, invariant: Invariant, state: Mapping[str, float],
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

    def _data_states(self, invariant: Invariant) -> list[dict[str, float]]:
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

    def _states(self, invariant: Invariant) -> Any:
        return state_strategy(self.names, invariant.domain, self.near)

    def _condition_check(self, invariant: Invariant, cond: sympy.Expr | None, what: str,
                         deadline: float) -> InvariantResult | dict[str, float] | None:
        """A vacuous result when ``cond`` is proved never to hold on the domain, else a state
        where it holds (when one was found) or None."""
        if cond is None:
            return None
        budget = time.monotonic() + (deadline - time.monotonic()) / 4
        outcome = maximise(sympy.Integer(0), cond, invariant.domain, -1.0, False, budget,
                            self.names)
        if outcome.status == "vacuous":
            return self._result(invariant, "vacuous", f"interval proof ({outcome.boxes} boxes)",
                                detail=f"'{what}' never holds on the domain")
        return outcome.point

    def _bound_rule(self, invariant: Invariant, deadline: float,
                    goals: list[tuple[sympy.Expr, float, bool]], cond: sympy.Expr | None,
                    holds: Callable[[float], bool]) -> InvariantResult:
        """Rules of the form: wherever ``cond`` holds, ``g <= t`` for each goal (g, t, strict)."""
        total = 0
        proved_all, method = True, "symbolic"
        for g, threshold, strict in goals:
            if cond is None and not strict and symbolic_nonpositive(g - threshold):
                continue
            outcome = maximise(g, cond, invariant.domain, threshold, strict, deadline,
                                self.names)
            total += outcome.boxes
            if outcome.status == "violated":
                c_fn = point_function(cond, self.names) if cond is not None else None

                def violates(state: dict[str, float], c_fn: Any = c_fn) -> bool:
                    values = [state[n] for n in self.names]
                    met = c_fn is None or c_fn(*values) != 0
                    return met and not holds(self.reward.at(state))

                point = outcome.point
                if violates(point):
                    point = self._shrink(invariant, point, violates)
                return self._violation(invariant, f"branch-and-bound search ({total} boxes), "
                                       "shrunk", point)
            if outcome.status != "proved":
                proved_all = False
            else:
                method = "interval proof"
        if proved_all:
            return self._result(invariant, "proved", method + (f" ({total} boxes)" if total
                                                               else ""))
        c_pt = point_function(cond, self.names) if cond is not None else None
        met = [0]

        def problem(state: dict[str, float]) -> Any:
            values = [state[n] for n in self.names]
            if c_pt is not None and c_pt(*values) == 0:
                return None
            met[0] += 1
            return None if holds(self.reward.at(state)) else "out of bounds"

        for checked, row in enumerate(self._data_states(invariant), start=1):
            if problem(row) is not None:
                return self._violation(invariant, "data point", row, checked)
        met[0] = 0
        state, _, tried = search(self._states(invariant), problem, self.examples)
        if state is not None:
            return self._violation(invariant, "property test (hypothesis)", state, tried)
        if met[0] == 0:
            return self._result(invariant, "unknown", "property test (hypothesis)",
                                examples=tried, detail="the condition was never met")
        return self._result(invariant, "held", "property test (hypothesis)", examples=tried,
                            detail="" if met[0] == tried else f"condition met in {met[0]}")

    def bounded(self, invariant: Invariant, deadline: float) -> InvariantResult:
        lo, hi = invariant.spec.get("lo"), invariant.spec.get("hi")
        goals = []
        if hi is not None:
            goals.append((self.reward.expr, float(hi), False))
        if lo is not None:
            goals.append((-self.reward.expr, -float(lo), False))

        def holds(r: float) -> bool:
            return (r == r and (lo is None or r >= lo - TOLERANCE * (1 + abs(lo)))
                    and (hi is None or r <= hi + TOLERANCE * (1 + abs(hi))))
        return self._bound_rule(invariant, deadline, goals, None, holds)

    def sign(self, invariant: Invariant, deadline: float) -> InvariantResult:
        vacuous = self._condition_check(invariant, invariant.condition, "when", deadline)
        if isinstance(vacuous, InvariantResult):
            return vacuous
        kind = invariant.spec["is"]
        r = self.reward.expr
        goal = {"negative": (r, 0.0, True), "nonpositive": (r, 0.0, False),
                "positive": (-r, 0.0, True), "nonnegative": (-r, 0.0, False)}[kind]
        holds = {"negative": lambda v: v < 0, "nonpositive": lambda v: v <= TOLERANCE,
                 "positive": lambda v: v > 0, "nonnegative": lambda v: v >= -TOLERANCE}[kind]
        return self._bound_rule(invariant, deadline, [goal], invariant.condition, holds)

    def prefers(self, invariant: Invariant, deadline: float) -> InvariantResult:
        witnesses = []
        for cond, what in ((invariant.better, "better"), (invariant.worse, "worse")):
            found = self._condition_check(invariant, cond, what, deadline)
            if isinstance(found, InvariantResult):
                return found
            witnesses.append(found)
        r = self.reward.expr
        best = self._sample_extreme(invariant, invariant.better, True, witnesses[0])
        worst = self._sample_extreme(invariant, invariant.worse, False, witnesses[1])
        detail = ("the compared state meets 'better' but does not score above the "
                  "counterexample, which meets 'worse'")
        boxes = 0
        # Proved when max(reward over worse) < t <= min(reward over better) for a threshold t
        # between the extremes seen so far; a box midpoint beyond t improves them and t moves.
        while best is not None and worst is not None and time.monotonic() < deadline:
            if not best[0] > worst[0]:
                good, bad = self._shrink_preference(invariant, best[1], worst[1])
                return self._violation(invariant, "branch-and-bound search, shrunk", bad,
                                       other=good, detail=detail)
            t = best[0] / 2 + worst[0] / 2
            upper = maximise(r, invariant.worse, invariant.domain, t, True, deadline,
                              self.names)
            boxes += upper.boxes
            if upper.status == "violated":
                worst = (self.reward.at(upper.point), upper.point)
                if worst[0] != worst[0]:
                    break
                continue
            lower = maximise(-r, invariant.better, invariant.domain, -t, False, deadline,
                              self.names)
            boxes += lower.boxes
            if lower.status == "violated":
                best = (self.reward.at(lower.point), lower.point)
                if best[0] != best[0]:
                    break
                continue
            if upper.status == "proved" and lower.status == "proved":
                return self._result(invariant, "proved", f"interval proof ({boxes} boxes)")
            break
        b_pt = point_function(invariant.better, self.names)
        w_pt = point_function(invariant.worse, self.names)
        met = [0]

        def problem(pair: tuple[dict[str, float], dict[str, float]]) -> Any:
            good, bad = pair
            if b_pt(*(good[n] for n in self.names)) == 0:
                return None
            if w_pt(*(bad[n] for n in self.names)) == 0:
                return None
            met[0] += 1
            rg, rb = self.reward.at(good), self.reward.at(bad)
            return None if rg > rb else "not preferred"

        from hypothesis import strategies as st

        states = self._states(invariant)
        pair, _, tried = search(st.tuples(states, states), problem, self.examples)
        if pair is not None:
            return self._violation(invariant, "property test (hypothesis)", pair[1], tried,
                                   other=pair[0],
                                   detail="the compared state meets 'better' but does not score "
                                          "above the counterexample, which meets 'worse'")
        if met[0] == 0 and (best is None or worst is None):
            return self._result(invariant, "unknown", "property test (hypothesis)",
                                examples=tried, detail="no sampled pair met both conditions")
        return self._result(invariant, "held", "property test (hypothesis)", examples=tried)

    def _shrink_preference(self, invariant: Invariant, good: Mapping[str, float],
                           bad: Mapping[str, float]) -> tuple[dict, dict]:
        """Simplify a pair (meets better, meets worse) whose rewards are in the wrong order."""
        b_pt = point_function(invariant.better, self.names)
        w_pt = point_function(invariant.worse, self.names)
        good, bad = dict(good), dict(bad)
        if not self.reward.at(good) > self.reward.at(bad):  # not NaN: shrinking keeps order
            r_good = self.reward.at(good)
            bad = self._shrink(invariant, bad, lambda s: w_pt(*(s[n] for n in self.names)) != 0
                               and not r_good > self.reward.at(s))
            r_bad = self.reward.at(bad)
            good = self._shrink(invariant, good,
                                lambda s: b_pt(*(s[n] for n in self.names)) != 0
                                and not self.reward.at(s) > r_bad)
        return good, bad

    def _sample_extreme(self, invariant: Invariant, cond: sympy.Expr, lowest: bool,
                        witness: Mapping[str, float] | None
                        ) -> tuple[float, dict[str, float]] | None:
        """The lowest (highest) reward among a deterministic sample of states meeting cond."""
        rng = np.random.default_rng(0)
        c_pt = point_function(cond, self.names)
        ranges = [float_range(*invariant.domain[n]) for n in self.names]
        candidates = [rng.uniform([lo for lo, _ in ranges], [hi for _, hi in ranges])
                      for _ in range(max(200, self.examples))]
        if self.near is not None and len(self.near):
            candidates += list(self.near[:2000])
        if witness is not None:
            candidates.append([witness[n] for n in self.names])
        best = None
        for values in candidates:
            values = [float(min(max(v, lo), hi)) for v, (lo, hi) in zip(values, ranges,
                                                                          strict=True)]
            if c_pt(*values) == 0:
                continue
            state = dict(zip(self.names, values, strict=True))
            r = self.reward.at(state)
            if r != r:
                return (math.nan, state)
            if best is None or (r < best[0] if lowest else r > best[0]):
                best = (r, state)
        return best

    def monotone(self, invariant: Invariant, deadline: float) -> InvariantResult:
        vacuous = self._condition_check(invariant, invariant.condition, "where", deadline)
        if isinstance(vacuous, InvariantResult):
            return vacuous
        f = invariant.feature
        sym = formula.symbol(f)
        sense = -1 if invariant.rule == "decreasing" else 1
        r = sympy.Add(*[t for t in self.reward.terms if t.has(sym)])
        d_of = sympy.diff(invariant.of, sym)
        detail = ""
        if r == 0:
            return self._result(invariant, "proved", "symbolic",
                                detail=f"the reward does not depend on {f}")
        if _discontinuous_in(r, f):
            detail = f"no proof: the reward may jump as {f} changes"
        else:
            product = sympy.diff(r, sym) * d_of * (-sense)
            outcome = maximise(product, invariant.condition, invariant.domain, 0.0, False,
                                deadline, self.names)
            if outcome.status == "vacuous":
                return self._result(invariant, "vacuous", f"interval proof ({outcome.boxes} "
                                    "boxes)", detail="'where' never holds on the domain")
            if outcome.status == "proved":
                return self._result(invariant, "proved",
                                    f"interval proof of d reward/d {f} × d of/d {f} "
                                    f"{'<=' if sense < 0 else '>='} 0 ({outcome.boxes} boxes)")
            if outcome.status == "violated":
                found = self._local_pair(invariant, outcome.point, sense, d_of)
                if found is not None:
                    return self._violation(invariant, "branch-and-bound search, shrunk",
                                           found[1], other=found[0],
                                           detail=self._pair_detail(invariant))
        return self._monotone_search(invariant, sense, d_of, detail)

    def _pair_detail(self, invariant: Invariant) -> str:
        word = "lower" if invariant.rule == "decreasing" else "higher"
        return (f"moving {invariant.feature} from the compared state to the counterexample "
                f"raises of = {invariant.spec['of']!r} but the reward is not {word} or equal")

    def _segment_ok(self, invariant: Invariant, state: Mapping[str, float], a: float, b: float,
                    d_of: Any) -> int:
        """+1 / -1 when ``of`` strictly increases / decreases from f=a to f=b and ``where``
        holds on the whole segment (interval-checked), else 0."""
        f = invariant.feature
        box = {n: iv.mpf(state[n]) for n in self.names}
        box[f] = iv.mpf([min(a, b), max(a, b)])
        try:
            if invariant.condition is not None:
                c = invariant.condition_iv(box)
                if lower(c) <= 0 <= upper(c):
                    return 0
            slope = invariant.slope_iv(box)
        except (Undefined, Unsupported):
            return 0
        direction = 1 if b > a else -1
        if lower(slope) > 0:
            return direction
        if upper(slope) < 0:
            return -direction
        return 0

    def _pair_problem(self, invariant: Invariant, sense: int, d_of: sympy.Expr,
                      met: list[int] | None = None
                      ) -> Callable[[dict[str, float], float, float], Any]:
        invariant.condition_iv = (interval_function(invariant.condition)
                                  if invariant.condition is not None else None)
        invariant.slope_iv = interval_function(d_of)
        f = invariant.feature

        def problem(state: dict[str, float], a: float, b: float) -> Any:
            if a == b:
                return None
            up = self._segment_ok(invariant, state, a, b, d_of)
            if up == 0:
                return None
            if met is not None:
                met[0] += 1
            start, end = state | {f: a}, state | {f: b}
            r0, r1 = self.reward.at(start), self.reward.at(end)
            if r0 != r0 or r1 != r1:
                return None
            change = (r1 - r0) * up  # reward change per unit rise of `of`
            tolerance = TOLERANCE * (1 + abs(r0) + abs(r1))
            if change * sense < -tolerance:
                return (start, end) if up > 0 else (end, start)
            return None
        return problem

    def _local_pair(self, invariant: Invariant, point: Mapping[str, float], sense: int,
                    d_of: sympy.Expr) -> tuple[dict, dict] | None:
        try:
            problem = self._pair_problem(invariant, sense, d_of)
        except Unsupported:
            return None
        f = invariant.feature
        lo, hi = invariant.domain[f]
        x = point[f]
        for step in (1e-2, 1e-3, 1e-4, 1e-6):
            h = step * max(1.0, abs(x))
            for a, b in ((x, x + h), (x - h, x)):
                if a >= lo and b <= hi and problem(dict(point), a, b) is not None:
                    return self._shrink_pair(invariant, dict(point), a, b, problem)
        return None

    def _shrink_pair(self, invariant: Invariant, state: dict[str, float], a: float, b: float,
                     problem: Callable[[dict[str, float], float, float], Any]
                     ) -> tuple[dict, dict]:
        f = invariant.feature
        state = self._shrink(invariant, state, lambda s: problem(s, a, b) is not None, keep=[f])
        for digits in (1, 2, 3, 4, 6):
            ra, rb = round(a, digits), round(b, digits)
            if ra != rb and (ra, rb) != (a, b) and problem(state, ra, rb) is not None:
                a, b = ra, rb
                break
        return problem(state, a, b)

    def _monotone_search(self, invariant: Invariant, sense: int, d_of: sympy.Expr,
                         detail: str) -> InvariantResult:
        from hypothesis import strategies as st

        met = [0]
        try:
            problem = self._pair_problem(invariant, sense, d_of, met)
        except Unsupported as exc:
            return self._result(invariant, "unknown", "none",
                                detail=f"cannot test: no interval rule for {exc}")
        f = invariant.feature
        lo, hi = float_range(*invariant.domain[f])
        values = st.floats(lo, hi, allow_nan=False)
        # the second end: anywhere, or a step of up to 5% of the range from the first
        steps = st.floats(-0.05, 0.05, allow_nan=False).map(lambda s: s * max(1.0, hi - lo))

        def wrapped(case: tuple[dict[str, float], float, Any]) -> Any:
            state, a, b = case
            b = float(min(max(b if isinstance(b, float) else a + b[0], lo), hi))
            return problem(state, a, b)

        strategy = st.tuples(self._states(invariant), values,
                             st.one_of(values, st.tuples(steps)))
        case, pair, tried = search(strategy, wrapped, self.examples)
        if case is not None:
            earlier, later = pair
            return self._violation(invariant, "property test (hypothesis)", later, tried,
                                   other=earlier, detail=self._pair_detail(invariant))
        if met[0] == 0:
            return self._result(invariant, "unknown", "property test (hypothesis)",
                                examples=tried, detail="no sampled segment met the conditions")
        counted = f"{met[0]} sampled segments met the conditions"
        return self._result(invariant, "held", "property test (hypothesis)", examples=tried,
                            detail=f"{detail}; {counted}" if detail else counted)

    def independent(self, invariant: Invariant, deadline: float) -> InvariantResult:
        from hypothesis import strategies as st

        f = invariant.feature
        if not self.reward.expr.has(formula.symbol(f)):
            return self._result(invariant, "proved", "symbolic",
                                detail=f"the formula does not mention {f}")
        lo, hi = float_range(*invariant.domain[f])

        def problem(case: tuple[dict[str, float], float]) -> Any:
            state, b = case
            other = state | {f: b}
            r0, r1 = self.reward.at(state), self.reward.at(other)
            if r0 != r0 and r1 != r1:
                return None
            if not abs(r1 - r0) <= TOLERANCE * (1 + abs(r0) + abs(r1)):
                return (state, other)
            return None

        case, pair, tried = search(st.tuples(self._states(invariant),
                                              st.floats(lo, hi, allow_nan=False)),
                                    problem, self.examples)
        if case is not None:
            return self._violation(invariant, "property test (hypothesis)", pair[1], tried,
                                   other=pair[0],
                                   detail=f"only {f} differs, but the reward changes")
        return self._result(invariant, "held", "property test (hypothesis)", examples=tried)


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
    checker = _Checker(artifact, near, time_budget, examples)
    chosen = set(indices) if indices is not None else None
    return [checker.run(inv) for inv in invariants if chosen is None or inv.index in chosen]
