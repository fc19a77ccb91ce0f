"""The monotone rules, ``decreasing`` and ``increasing`` in a formula ``of`` of one feature:
proved by bounding ``d reward/d f × d of/d f``, tested on segments along the feature on which
``of`` is strictly monotone and ``where`` holds throughout."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import sympy
from mpmath import iv

from symreward import formula
from symreward.errors import InvariantError
from symreward.invariants.branch_and_bound import maximise
from symreward.invariants.intervals import (
    IV,
    Undefined,
    Unsupported,
    interval_function,
    lower,
    upper,
)
from symreward.invariants.points import TOLERANCE
from symreward.invariants.report import InvariantResult
from symreward.invariants.sampling import float_range, search
from symreward.invariants.spec import Rule, formula_field

if TYPE_CHECKING:
    from symreward.invariants.checker import Checker
    from symreward.invariants.spec import Invariant

# problem(state, a, b): the pair (earlier, later) in the wrong order when the feature moves from
# a to b in state, else None
_PairProblem = Callable[[dict[str, float], float, float], Any]


class _Monotone(Rule):
    """Moving the feature so that ``of`` rises never moves the reward against ``sense``."""

    required = ("of",)
    optional = ("where",)
    sense = 0  # -1: the reward may not rise (decreasing); +1: it may not fall (increasing)
    word = ""  # how the reward should compare, in the counterexample's detail

    @classmethod
    def fields(cls, table: Mapping[str, Any], names: Sequence[str], where: str
               ) -> dict[str, Any]:
        of = formula_field(table, "of", names, where)
        used = sorted(s.name for s in of.free_symbols)
        if len(used) != 1:
            raise InvariantError(f"{where}.of: must use exactly one feature, uses "
                                 f"{', '.join(used) or 'none'} (only monotonicity along one "
                                 "feature is supported)")
        if discontinuous_in(of, used[0]):
            raise InvariantError(f"{where}.of: must be continuous in {used[0]} (no comparison, "
                                 "where or atan2)")
        return {"of": of, "feature": used[0],
                "condition": formula_field(table, "where", names, where) if "where" in table
                else None}

    @classmethod
    def decide(cls, checker: Checker, invariant: Invariant, deadline: float) -> InvariantResult:
        vacuous = checker.condition_check(invariant, invariant.condition, "where", deadline)
        if isinstance(vacuous, InvariantResult):
            return vacuous
        f = invariant.feature
        sym = formula.symbol(f)
        r = sympy.Add(*[t for t in checker.reward.terms if t.has(sym)])
        d_of = sympy.diff(invariant.of, sym)
        detail = ""
        if r == 0:
            return checker.result(invariant, "proved", "symbolic",
                                  detail=f"the reward does not depend on {f}")
        if discontinuous_in(r, f):
            detail = f"no proof: the reward may jump as {f} changes"
        else:
            product = sympy.diff(r, sym) * d_of * (-cls.sense)
            outcome = maximise(product, invariant.condition, invariant.domain, 0.0, False,
                               deadline, checker.names)
            if outcome.status == "vacuous":
                return checker.result(invariant, "vacuous", f"interval proof ({outcome.boxes} "
                                      "boxes)", detail="'where' never holds on the domain")
            if outcome.status == "proved":
                return checker.result(invariant, "proved",
                                      f"interval proof of d reward/d {f} × d of/d {f} "
                                      f"{'<=' if cls.sense < 0 else '>='} 0 ({outcome.boxes} "
                                      "boxes)")
            if outcome.status == "violated":
                found = cls._local_pair(checker, invariant, outcome.point, d_of)
                if found is not None:
                    return checker.violation(invariant, "branch-and-bound search, shrunk",
                                             found[1], other=found[0],
                                             detail=cls._pair_detail(invariant))
        return cls._search(checker, invariant, d_of, detail)

    @classmethod
    def _pair_detail(cls, invariant: Invariant) -> str:
        return (f"moving {invariant.feature} from the compared state to the counterexample "
                f"raises of = {invariant.spec['of']!r} but the reward is not {cls.word} or "
                "equal")

    @classmethod
    def _pair_problem(cls, checker: Checker, invariant: Invariant, d_of: sympy.Expr,
                      met: list[int] | None = None) -> _PairProblem:
        """The test of one segment; ``met`` counts the segments that qualify. Raises
        ``Unsupported`` when ``where`` or ``d of/d f`` has no interval rule."""
        condition_iv = (interval_function(invariant.condition)
                        if invariant.condition is not None else None)
        slope_iv = interval_function(d_of)
        f = invariant.feature

        def problem(state: dict[str, float], a: float, b: float) -> Any:
            if a == b:
                return None
            up = _segment_direction(checker.names, f, condition_iv, slope_iv, state, a, b)
            if up == 0:
                return None
            if met is not None:
                met[0] += 1
            start, end = state | {f: a}, state | {f: b}
            r0, r1 = checker.reward.at(start), checker.reward.at(end)
            if r0 != r0 or r1 != r1:
                return None
            change = (r1 - r0) * up  # reward change per unit rise of `of`
            tolerance = TOLERANCE * (1 + abs(r0) + abs(r1))
            if change * cls.sense < -tolerance:
                return (start, end) if up > 0 else (end, start)
            return None
        return problem

    @classmethod
    def _local_pair(cls, checker: Checker, invariant: Invariant, point: Mapping[str, float],
                    d_of: sympy.Expr) -> tuple[dict, dict] | None:
        """A wrong-order pair on a short segment from ``point``, where branch-and-bound found
        the product of derivatives of the wrong sign."""
        try:
            problem = cls._pair_problem(checker, invariant, d_of)
        except Unsupported:
            return None
        f = invariant.feature
        lo, hi = invariant.domain[f]
        x = point[f]
        for step in (1e-2, 1e-3, 1e-4, 1e-6):
            h = step * max(1.0, abs(x))
            for a, b in ((x, x + h), (x - h, x)):
                if a >= lo and b <= hi and problem(dict(point), a, b) is not None:
                    return _shrink_pair(checker, invariant, dict(point), a, b, problem)
        return None

    @classmethod
    def _search(cls, checker: Checker, invariant: Invariant, d_of: sympy.Expr, detail: str
                ) -> InvariantResult:
        from hypothesis import strategies as st

        met = [0]
        try:
            problem = cls._pair_problem(checker, invariant, d_of, met)
        except Unsupported as exc:
            return checker.result(invariant, "unknown", "none",
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

        strategy = st.tuples(checker.states(invariant), values,
                             st.one_of(values, st.tuples(steps)))
        case, pair, tried = search(strategy, wrapped, checker.examples)
        if case is not None:
            earlier, later = pair
            return checker.violation(invariant, "property test (hypothesis)", later, tried,
                                     other=earlier, detail=cls._pair_detail(invariant))
        if met[0] == 0:
            return checker.result(invariant, "unknown", "property test (hypothesis)",
                                  examples=tried, detail="no sampled segment met the conditions")
        counted = f"{met[0]} sampled segments met the conditions"
        return checker.result(invariant, "held", "property test (hypothesis)", examples=tried,
                              detail=f"{detail}; {counted}" if detail else counted)


class Decreasing(_Monotone):
    """Where ``of`` rises along its feature, the reward does not rise."""

    sense = -1
    word = "lower"


class Increasing(_Monotone):
    """Where ``of`` rises along its feature, the reward does not fall."""

    sense = 1
    word = "higher"


def discontinuous_in(expr: sympy.Expr, name: str) -> bool:
    """Whether ``expr`` may jump as feature ``name`` moves: it has a comparison, a where
    condition or an atan2 that involves the feature."""
    sym = formula.symbol(name)
    for node in sympy.preorder_traversal(expr):
        if isinstance(node, formula.Comparison | sympy.atan2) and node.has(sym):
            return True
        if isinstance(node, formula.Where) and node.args[0].has(sym):
            return True
    return False


def _segment_direction(names: Sequence[str], feature: str, condition_iv: IV | None,
                       slope_iv: IV, state: Mapping[str, float], a: float, b: float) -> int:
    """+1 / -1 when ``of`` strictly increases / decreases from feature=a to feature=b and
    ``where`` holds on the whole segment (interval-checked), else 0."""
    box = {n: iv.mpf(state[n]) for n in names}
    box[feature] = iv.mpf([min(a, b), max(a, b)])
    try:
        if condition_iv is not None:
            c = condition_iv(box)
            if lower(c) <= 0 <= upper(c):
                return 0
        slope = slope_iv(box)
    except (Undefined, Unsupported):
        return 0
    direction = 1 if b > a else -1
    if lower(slope) > 0:
        return direction
    if upper(slope) < 0:
        return -direction
    return 0


def _shrink_pair(checker: Checker, invariant: Invariant, state: dict[str, float], a: float,
                 b: float, problem: _PairProblem) -> tuple[dict, dict]:
    """Simplify a wrong-order pair: the other features as ``Checker.shrink`` does, then the
    segment's ends to fewer decimals."""
    f = invariant.feature
    state = checker.shrink(invariant, state, lambda s: problem(s, a, b) is not None, keep=[f])
    lo, hi = invariant.domain[f]
    for digits in (1, 2, 3, 4, 6):
        ra, rb = round(a, digits), round(b, digits)
        if (ra != rb and (ra, rb) != (a, b) and lo <= min(ra, rb) and max(ra, rb) <= hi
                and problem(state, ra, rb) is not None):
            a, b = ra, rb
            break
    return problem(state, a, b)
