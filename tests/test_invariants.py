"""Invariants: validation, sound interval bounds, proofs that never lie, property tests, CLI."""

from __future__ import annotations

import itertools
import math

import mpmath
import numpy as np
import pytest
import sympy
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from mpmath import iv

from symreward import formula
from symreward.artifact import RewardArtifact
from symreward.cli import main
from symreward.data import Dataset
from symreward.data.io import save_dataset
from symreward.invariants import (
    RULES,
    InvariantError,
    check,
    interval_function,
    parse_invariants,
)
from symreward.invariants.intervals import Undefined
from symreward.invariants.spec import Rule
from symreward.testing import feature_states, transitions


def toml_value(value: object) -> str:
    if isinstance(value, str):
        return '"' + value + '"'
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


def artifact_text(terms: list[str] | str, invariants: list[dict], ranges: dict | None = None,
                  features: tuple[str, ...] = ("x", "y")) -> str:
    terms = [terms] if isinstance(terms, str) else terms
    lines = ['schema = "symreward/1"', 'name = "t"', "", "[features]"]
    lines += [f'{f} = "obs[{i}]"' for i, f in enumerate(features)]
    for i, expr in enumerate(terms):
        lines += ["", "[[terms]]", f'name = "t{i}"', f'expr = "{expr}"']
    for inv in invariants:
        lines += ["", "[[invariants]]"] + [f"{k} = {toml_value(v)}" for k, v in inv.items()]
    if ranges:
        lines += ["", "[provenance]", f"feature_ranges = {toml_value(ranges)}"]
    return "\n".join(lines) + "\n"


def make(terms: list[str] | str, invariants: list[dict], ranges: dict | None = None,
         features: tuple[str, ...] = ("x", "y")) -> RewardArtifact:
    return RewardArtifact.loads(artifact_text(terms, invariants, ranges, features))


def decide(terms: list[str] | str, invariant: dict, ranges: dict | None = None, **kwargs):
    return check(make(terms, [invariant], ranges), examples=kwargs.pop("examples", 100),
                 time_budget=kwargs.pop("time_budget", 1.0), **kwargs)[0]


# -- interval arithmetic is sound ---------------------------------------------------------

_LEAVES = st.sampled_from(["x", "y", "0.5", "2", "-1.5", "3"])


def _combine(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    binary = st.tuples(children, st.sampled_from(["+", "-", "*", "/"]), children).map(
        lambda t: f"({t[0]} {t[1]} {t[2]})")
    unary = st.tuples(st.sampled_from(["abs", "exp", "sin", "cos", "tanh", "sqrt", "log",
                                       "sigmoid"]), children).map(lambda t: f"{t[0]}({t[1]})")
    power = st.tuples(children, st.sampled_from(["2", "3", "-1", "0.5", "-2"])).map(
        lambda t: f"({t[0]}) ** {t[1]}")
    pair = st.tuples(st.sampled_from(["min", "max", "atan2"]), children, children).map(
        lambda t: f"{t[0]}({t[1]}, {t[2]})")
    compare = st.tuples(children, st.sampled_from(["<", "<=", ">", ">="]), children).map(
        lambda t: f"({t[0]} {t[1]} {t[2]})")
    where = st.tuples(children, st.sampled_from(["<", ">="]), children, children, children).map(
        lambda t: f"where({t[0]} {t[1]} {t[2]}, {t[3]}, {t[4]})")
    return st.one_of(binary, unary, power, pair, compare, where)


EXPRESSIONS = st.recursive(_LEAVES, _combine, max_leaves=6)

def _real(*values) -> bool:
    return not any(isinstance(v, mpmath.mpc) or mpmath.isnan(v) for v in values)


# NaN (here: a complex value) compares false and counts as true in where, as in the kernels
_MP = {
    "Less": lambda a, b: mpmath.mpf(1 if _real(a, b) and a < b else 0),
    "LessEqual": lambda a, b: mpmath.mpf(1 if _real(a, b) and a <= b else 0),
    "Greater": lambda a, b: mpmath.mpf(1 if _real(a, b) and a > b else 0),
    "GreaterEqual": lambda a, b: mpmath.mpf(1 if _real(a, b) and a >= b else 0),
    "Where": lambda c, a, b: a if not _real(c) or c != 0 else b,
    "Min": min, "Max": max, "Abs": abs,
    # mpmath's atan2 takes real arguments only; of a complex one (sqrt(-1)) it is undefined
    "atan2": lambda a, b: mpmath.atan2(a, b) if _real(a, b) else mpmath.nan,
}


def _exact(function, x: float, y: float) -> mpmath.mpf | None:
    """The value at a point with 60 significant digits (None where undefined or complex)."""
    with mpmath.workdps(60):
        try:
            value = function(mpmath.mpf(x), mpmath.mpf(y))
        except (ZeroDivisionError, ValueError, OverflowError, TypeError):
            return None
        if isinstance(value, mpmath.mpc) or not mpmath.isfinite(value):
            return None
        return +value


@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")
@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(EXPRESSIONS, st.floats(-5, 5), st.floats(0, 4), st.floats(-5, 5), st.floats(0, 4),
       st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=6))
def test_interval_bounds_enclose_exact_values(text, x0, wx, y0, wy, fractions):
    try:
        expr = formula.parse(text, ["x", "y"])
    except formula.FormulaError:
        return
    function = interval_function(expr)
    box = {"x": iv.mpf([x0, x0 + wx]), "y": iv.mpf([y0, y0 + wy])}
    try:
        enclosure = function(box)
    except Undefined:
        return
    lo, hi = mpmath.mpf(enclosure._mpi_[0]), mpmath.mpf(enclosure._mpi_[1])
    corners = [(0.0, 0.0), (1.0, 1.0), (0.0, 1.0), (1.0, 0.0), *fractions]
    exact = sympy.lambdify([formula.symbol("x"), formula.symbol("y")], expr,
                           modules=[_MP, "mpmath"])
    for fx, fy in corners:
        value = _exact(exact, min(x0 + fx * wx, x0 + wx), min(y0 + fy * wy, y0 + wy))
        if value is None:
            continue
        slack = mpmath.mpf(10) ** -40 * (1 + abs(value))
        assert lo - slack <= value <= hi + slack, (text, fx, fy, value, enclosure)


@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(EXPRESSIONS, st.floats(-3, 3), st.floats(0.01, 3), st.floats(0, 1), st.floats(-1, 1),
       st.lists(st.floats(0, 1), min_size=8, max_size=8))
@example("atan2(x, (x) ** 0.5)", -1.0, 1.0, 0.0, 0.0, [0.0] * 8)  # mpmath's atan2 of a complex
def test_proved_bounds_hold_at_sampled_points(text, x0, wx, at, shift, fractions):
    """End to end: whenever check says a random bound is proved, exact values obey it."""
    text = text.replace("y", "x")  # one feature (no function name has a y)
    try:
        expr = formula.parse(text, ["x", "y"])
    except formula.FormulaError:
        return
    exact = sympy.lambdify([formula.symbol("x"), formula.symbol("y")], expr,
                           modules=[_MP, "mpmath"])
    probe = _exact(exact, x0 + at * wx, 0.0)
    if probe is None or abs(probe) > 1e12:
        return
    hi = float(probe) + shift
    artifact = make(text, [{"rule": "bounded", "hi": hi}],
                    {"x": [x0, x0 + wx], "y": [0.0, 0.0]})
    result = check(artifact, examples=10, time_budget=0.05)[0]
    if result.status != "proved":
        return
    for fraction in [0.0, 1.0, *fractions]:
        value = _exact(exact, x0 + fraction * wx, 0.0)
        assert value is not None and value <= hi + 1e-9 * (1 + abs(hi)), (text, fraction, value)


@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(EXPRESSIONS, st.floats(-3, 3), st.floats(0.01, 3), st.sampled_from(["x", "abs(x)"]),
       st.sampled_from(["decreasing", "increasing"]),
       st.lists(st.floats(0, 1), min_size=10, max_size=10))
def test_proved_monotonicity_holds_at_sampled_points(text, x0, wx, of, rule, fractions):
    """End to end: whenever check proves a random reward monotone in x (or abs(x)), exact
    values are ordered along sorted samples on each side of 0."""
    text = text.replace("y", "x")
    try:
        expr = formula.parse(text, ["x", "y"])
    except formula.FormulaError:
        return
    artifact = make(text, [{"rule": rule, "of": of}], {"x": [x0, x0 + wx], "y": [0.0, 0.0]})
    result = check(artifact, examples=10, time_budget=0.05)[0]
    if result.status != "proved":
        return
    exact = sympy.lambdify([formula.symbol("x"), formula.symbol("y")], expr,
                           modules=[_MP, "mpmath"])
    points = sorted({x0, x0 + wx, *(x0 + f * wx for f in fractions)})
    for side in ([p for p in points if p <= 0], [p for p in points if p >= 0]):
        if of == "abs(x)" and side and side[0] < 0:
            side = side[::-1]  # abs(x) rises as x falls below 0
        ranked = [(p, _exact(exact, p, 0.0)) for p in (side if of == "abs(x)" else points)]
        ranked = [(p, v) for p, v in ranked if v is not None]
        for (p, v), (q, w) in itertools.pairwise(ranked):
            slack = 1e-9 * (1 + abs(v) + abs(w))
            ok = w <= v + slack if rule == "decreasing" else w >= v - slack
            assert ok, (text, of, rule, p, v, q, w)


def test_atan2_enclosure_is_outward_rounded():
    # mpmath's iv.atan2 alone misses the exact value at this endpoint by a few ulps
    enclosure = interval_function(formula.parse("atan2(x, -1.5)", ["x"]))(
        {"x": iv.mpf([1.0, 4.255859375])})
    with mpmath.workdps(60):
        exact = mpmath.atan2(mpmath.mpf(4.255859375), mpmath.mpf(-1.5))
        assert mpmath.mpf(enclosure._mpi_[0]) <= exact <= mpmath.mpf(enclosure._mpi_[1])


def test_interval_handles_unbounded_boxes():
    x = formula.parse("-x**2 + x*0", ["x"])
    enclosure = interval_function(x)({"x": iv.mpf([-math.inf, math.inf])})
    assert mpmath.mpf(enclosure._mpi_[1]) <= 0
    with pytest.raises(Undefined):
        interval_function(formula.parse("1/x", ["x"]))({"x": iv.mpf([-1, 1])})
    with pytest.raises(Undefined):
        interval_function(formula.parse("log(x)", ["x"]))({"x": iv.mpf([0, 1])})


# -- proofs never claim a false invariant --------------------------------------------------


def test_bounded_proved_for_negative_square_on_unbounded_domain():
    result = decide("-x**2", {"rule": "bounded", "hi": 0})
    assert result.status == "proved"


def test_bounded_just_inside_and_just_outside_the_domain():
    inside = decide("1 - x**2", {"rule": "bounded", "hi": 0.5, "domain": {"x": [0.8, 2]}})
    assert inside.status == "proved"
    outside = decide("1 - x**2", {"rule": "bounded", "hi": 0.5, "domain": {"x": [0.5, 2]}})
    assert outside.status == "violated"
    assert 0.5 <= outside.counterexample["x"] < math.sqrt(0.5)
    assert outside.reward > 0.5
    assert outside.contributions == {"t0": pytest.approx(outside.reward)}
    # the boundary itself: 1 - x**2 <= 0.5 holds exactly from x = sqrt(0.5)
    edge = decide("1 - x**2", {"rule": "bounded", "hi": 0.5,
                               "domain": {"x": [0.71, 2]}})
    assert edge.status == "proved"


def test_bounded_uses_recorded_ranges_and_lower_bound():
    ranges = {"x": [-1.0, 1.0], "y": [0.0, 3.0]}
    assert decide(["x*y", "-abs(x)"], {"rule": "bounded", "lo": -4.0, "hi": 3.0},
                  ranges).status == "proved"
    result = decide(["x*y", "-abs(x)"], {"rule": "bounded", "lo": -3.5}, ranges)
    assert result.status == "violated" and result.reward < -3.5
    assert set(result.counterexample) == {"x", "y"}


@settings(max_examples=25, deadline=None)
@given(st.floats(0.1, 3.0), st.floats(-2.0, 2.0), st.floats(0.05, 2.0))
def test_bounded_proof_agrees_with_the_true_maximum(a, c, width):
    # reward = c - a*(x - 1)**2 on x in [lo, lo + width]; the true maximum is known exactly
    lo = 1.0 - width / 2 + 0.3
    hi = lo + width
    top = c - a * (min(max(1.0, lo), hi) - 1.0) ** 2
    for bound in (top + 0.01, top - 0.01):
        result = decide(f"{c!r} - {a!r} * (x - 1)**2",
                        {"rule": "bounded", "hi": bound, "domain": {"x": [lo, hi]}},
                        examples=50, time_budget=0.5)
        if bound < top:
            assert result.status == "violated"
            assert result.reward > bound
        else:
            assert result.status in ("proved", "held")


def test_undefined_rewards_violate_bounded():
    result = decide("log(x)", {"rule": "bounded", "hi": 10}, {"x": [-1.0, 1.0]})
    assert result.status == "violated"
    assert result.reward != result.reward or result.reward > 10


def test_bounded_held_when_no_proof_but_true():
    result = decide("sin(x)**2 + cos(x)**2", {"rule": "bounded", "hi": 1},
                    {"x": [-3.0, 3.0]}, time_budget=0.2)
    assert result.status == "held"
    assert result.examples == 100


# -- each rule ----------------------------------------------------------------------------


def test_decreasing_in_abs():
    proved = decide(["-x**2", "y"], {"rule": "decreasing", "of": "abs(x)"})
    assert proved.status == "proved"
    violated = decide(["-x**2 + 0.5*x"], {"rule": "decreasing", "of": "abs(x)"},
                      {"x": [-2.0, 2.0]})
    assert violated.status == "violated"
    # x in (0, 0.25): moving away from 0 raises the reward
    assert 0 <= violated.counterexample["x"] <= 0.25 + 1e-6
    assert violated.other is not None and violated.reward > violated.other["reward"]


def test_increasing_with_where_and_vacuous_where():
    # increasing in x only where x > 1 (the reward dips below 1)
    terms = "(x - 1)**2"
    assert decide(terms, {"rule": "increasing", "of": "x", "where": "x > 1"}).status == "proved"
    assert decide(terms, {"rule": "increasing", "of": "x"}).status == "violated"
    vacuous = decide(terms, {"rule": "increasing", "of": "x", "where": "x > 5"},
                     {"x": [0.0, 2.0]})
    assert vacuous.status == "vacuous"


def test_monotone_with_jumps_is_tested_not_proved():
    held = decide("-x - 2*(x > 1)", {"rule": "decreasing", "of": "x"}, {"x": [-3.0, 3.0]})
    assert held.status == "held" and held.examples > 0
    violated = decide("-x + 2*(x > 1)", {"rule": "decreasing", "of": "x"}, {"x": [-3.0, 3.0]})
    assert violated.status == "violated"
    assert violated.counterexample["x"] > 1 >= violated.other["state"]["x"]


def test_prefers():
    assert decide("-x**2", {"rule": "prefers", "better": "abs(x) < 0.1",
                            "worse": "abs(x) > 1"}).status == "proved"
    violated = decide("-x**2", {"rule": "prefers", "better": "abs(x) < 1",
                                "worse": "abs(x) > 0.5"})
    assert violated.status == "violated"
    assert abs(violated.counterexample["x"]) > 0.5 and abs(violated.other["state"]["x"]) < 1
    vacuous = decide("-x**2", {"rule": "prefers", "better": "x > 3", "worse": "x < 0"},
                     {"x": [0.0, 2.0]})
    assert vacuous.status == "vacuous"


def test_sign():
    assert decide("-x**2 - 1", {"rule": "sign", "is": "negative"}).status == "proved"
    assert decide("-x**2", {"rule": "sign", "is": "nonpositive"}).status == "proved"
    assert decide("-x**2", {"rule": "sign", "is": "negative"}).status == "violated"
    assert decide("x + 1", {"rule": "sign", "is": "positive", "when": "x > 0"}).status == "proved"
    # strict at an open boundary (x -> 0+) is beyond interval proofs, but tests hold
    assert decide("x", {"rule": "sign", "is": "positive", "when": "x > 0"},
                  time_budget=0.2).status == "held"
    bad = decide("x - 1", {"rule": "sign", "is": "positive", "when": "x > 0"})
    assert bad.status == "violated" and 0 < bad.counterexample["x"] <= 1
    vacuous = decide("x", {"rule": "sign", "is": "positive", "when": "(x > 1) * (x < 0)"})
    assert vacuous.status == "vacuous"


def test_independent():
    assert decide("x**2", {"rule": "independent", "of": "y"}).status == "proved"
    held = decide("x + 0*y**2", {"rule": "independent", "of": "y"})
    assert held.status in ("proved", "held")
    violated = decide("x + 1e-3*y", {"rule": "independent", "of": "y"})
    assert violated.status == "violated"
    assert violated.counterexample["x"] == violated.other["state"]["x"]


def test_data_points_are_searched():
    rng = np.random.default_rng(0)
    obs = rng.normal(size=(50, 2))
    obs[7] = [9.5, 0.25]
    dataset = Dataset(observations=obs, actions=np.zeros((50, 1)), next_observations=obs,
                      terminals=np.zeros(50, bool), timeouts=np.zeros(50, bool))
    # a narrow spike the uniform search over [-1e6, 1e6] would never find
    artifact = make("100 * (abs(x - 9.5) < 1e-3) * (abs(y - 0.25) < 1e-3)",
                    [{"rule": "bounded", "hi": 1}])
    without = check(artifact, examples=50, time_budget=0.0)[0]
    assert without.status == "held"
    with_data = check(artifact, dataset, examples=200, time_budget=0.0)[0]
    assert with_data.status == "violated"
    assert with_data.counterexample["x"] == pytest.approx(9.5, abs=1e-3)


# -- validation ---------------------------------------------------------------------------


@pytest.mark.parametrize(("invariant", "message"), [
    ({"rule": "bounded", "high": 1}, "unknown key 'high'"),
    ({"rule": "bounded"}, "needs 'lo', 'hi'"),
    ({"rule": "bounded", "hi": "x"}, "hi: must be a number"),
    ({"rule": "bounded", "lo": 2, "hi": 1}, "lo = 2 is above hi = 1"),
    ({"rule": "decreasing"}, "needs 'of'"),
    ({"rule": "decreasing", "of": "x +"}, "invariants[0].of: syntax error"),
    ({"rule": "decreasing", "of": "x * y"}, "exactly one feature"),
    ({"rule": "decreasing", "of": "x > 1"}, "continuous"),
    ({"rule": "sign", "is": "zero"}, "invariants[0].is: 'zero' is not one of"),
    ({"rule": "independent", "of": "z"}, "must name a feature"),
    ({"rule": "prefers", "better": "x > 1", "worse": "zz"}, "unknown name 'zz'"),
    ({"rule": "bounded", "hi": 1, "domain": {"q": [0, 1]}}, "unknown feature 'q'"),
    ({"rule": "bounded", "hi": 1, "domain": {"x": [1, 0]}}, "lo <= hi"),
])
def test_invalid_invariants_are_named(invariant, message):
    artifact = make("x", [invariant])
    with pytest.raises(InvariantError, match="invariants\\[0\\]") as info:
        parse_invariants(artifact)
    assert message in str(info.value)


def test_a_new_rule_is_a_class_in_the_registry(monkeypatch):
    class Always(Rule):
        optional = ("why",)

        @classmethod
        def fields(cls, table, names, where):
            return {}

        @classmethod
        def decide(cls, checker, invariant, deadline):
            return checker.result(invariant, "proved", "by decree")

    monkeypatch.setitem(RULES, "always", Always)
    artifact = make("x", [])
    artifact.invariants.append({"rule": "always", "why": "a test"})
    [result] = check(artifact)
    assert (result.status, result.description, result.method) == (
        "proved", "always (why = 'a test')", "by decree")
    artifact.invariants[0]["how"] = 1
    with pytest.raises(InvariantError, match="unknown key 'how' for rule 'always'"):
        parse_invariants(artifact)


# -- strategies ---------------------------------------------------------------------------


def test_feature_states_stay_in_the_domain():
    artifact = make("x", [], {"x": [-1.0, 2.0]})

    @settings(max_examples=50, deadline=None)
    @given(feature_states(artifact, {"y": (0.0, 0.5)}))
    def inner(state):
        assert -1.0 <= state["x"] <= 2.0
        assert 0.0 <= state["y"] <= 0.5

    inner()

    @settings(max_examples=30, deadline=None)
    @given(feature_states(make("x", [])))
    def unbounded(state):
        assert all(math.isfinite(v) and abs(v) <= 1e6 for v in state.values())

    unbounded()


def test_transitions_match_the_inputs():
    artifact = RewardArtifact.loads(
        'schema = "symreward/1"\nname = "t"\n[features]\na = "obs[2] * act[1]"\n'
        'b = "info.speed"\n[[terms]]\nname = "r"\nexpr = "a + b"\n')

    @settings(max_examples=20, deadline=None)
    @given(transitions(artifact))
    def raw(row):
        assert row["obs"].shape == (3,) and row["act"].shape == (2,)
        assert row["next_obs"].shape == (3,) and set(row["info"]) == {"speed"}

    raw()
    obs = np.arange(12.0).reshape(4, 3)
    dataset = Dataset(observations=obs, actions=np.ones((4, 2)), next_observations=obs,
                      terminals=np.zeros(4, bool), timeouts=np.zeros(4, bool),
                      infos={"speed": np.arange(4.0)})

    @settings(max_examples=20, deadline=None)
    @given(transitions(artifact, dataset))
    def near(row):
        distances = np.abs(obs - row["obs"]).max(axis=1)
        assert distances.min() <= 0.05 * obs.std(axis=0).max() + 1e-9

    near()


# -- command line -------------------------------------------------------------------------


def test_cli_exit_codes(tmp_path, capsys):
    good = tmp_path / "good.toml"
    good.write_text(artifact_text("-x**2", [{"rule": "bounded", "hi": 0},
                                            {"rule": "decreasing", "of": "abs(x)"}]))
    assert main(["check", str(good), "--examples", "30", "--time-budget", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "proved" in out and "bounded" in out and "2 proved" in out

    bad = tmp_path / "bad.toml"
    bad.write_text(artifact_text("1 - x**2", [{"rule": "bounded", "hi": 0.5,
                                               "domain": {"x": [0.5, 2]}}]))
    assert main(["check", str(bad), "--examples", "30"]) == 1
    out = capsys.readouterr().out
    assert "violated" in out and "counterexample: x = " in out and "reward = " in out

    broken = tmp_path / "broken.toml"
    broken.write_text(artifact_text("x", [{"rule": "sign", "is": "zero"}]))
    assert main(["check", str(broken)]) == 2
    err = capsys.readouterr().err
    assert "broken.toml" in err and "invariants[0].is" in err and "Traceback" not in err

    assert main(["check", str(tmp_path / "missing.toml")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["check", str(good), "--examples", "0"]) == 2


def test_cli_data_and_hand_edit_note(tmp_path, capsys):
    path = tmp_path / "r.toml"
    artifact = make("-x**2", [{"rule": "bounded", "hi": 0}])
    artifact.save(path)
    path.write_text(path.read_text().replace("-x**2", "-2*x**2"))
    obs = np.random.default_rng(1).normal(size=(20, 2))
    data = tmp_path / "d.npz"
    save_dataset(Dataset(observations=obs, actions=np.zeros((20, 1)), next_observations=obs,
                         terminals=np.zeros(20, bool), timeouts=np.zeros(20, bool)), data)
    assert main(["check", str(path), "--data", str(data), "--examples", "20"]) == 0
    assert "edited by hand since last save" in capsys.readouterr().out
