"""The feature domain: natural ranges are sound, the domain is recorded ∩ natural with its
sources, check never reports a state outside it, and the branch-and-bound split stays finite."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import mpmath
import numpy as np
import pytest
import sympy
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from symreward import formula
from symreward.artifact import RewardArtifact
from symreward.cli import main
from symreward.data import Dataset
from symreward.evaluate import feature_columns
from symreward.features import FeatureSet
from symreward.invariants import RULES, InvariantError, check, format_result
from symreward.invariants.branch_and_bound import _split_point, _splittable, maximise
from symreward.invariants.domain import (
    FeatureDomain,
    bounds_pair,
    feature_domain,
    natural_ranges,
)
from symreward.invariants.points import point_function
from symreward.invariants.sampling import float_range
from symreward.invariants.spec import Rule, read
from symreward.testing import feature_states

PI = math.pi
INF = math.inf


def natural(text: str) -> tuple[float, float]:
    return natural_ranges(FeatureSet({"f": text}))["f"]


def artifact(features: dict[str, str], terms: list[str], invariants: list[str] = (),
             provenance: str = "") -> RewardArtifact:
    lines = ['schema = "symreward/1"', 'name = "t"', "[features]"]
    lines += [f'{name} = "{text}"' for name, text in features.items()]
    for i, expr in enumerate(terms):
        lines += ["[[terms]]", f'name = "t{i}"', f'expr = "{expr}"']
    for table in invariants:
        lines += ["[[invariants]]", table]
    if provenance:
        lines += ["[provenance]", provenance]
    return RewardArtifact.loads("\n".join(lines) + "\n", source="t.reward.toml")


DIST = {"dist": "sqrt(next_obs[8]**2 + next_obs[9]**2)", "a0": "act[0]", "a1": "act[1]"}
DIST_TERMS = ["-dist", "-(a0**2 + a1**2)"]


# -- the range of each function ------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("sqrt(obs[0])", (0, INF)),
    ("sqrt(next_obs[8]**2 + next_obs[9]**2)", (0, INF)),
    ("abs(act[0])", (0, INF)),
    ("obs[0]**2", (0, INF)),
    ("obs[0]**4 + obs[1]**2", (0, INF)),
    ("obs[0]**3", (-INF, INF)),
    ("obs[0]**3.0", (-INF, INF)),  # numpy.power(-2.0, 3.0) is -8
    ("obs[0]**0.5", (0, INF)),
    ("obs[0]**-2", (0, INF)),
    ("1/obs[0]", (-INF, INF)),
    ("1/(1 + obs[0]**2)", (0, 1)),
    ("tanh(obs[0])", (-1, 1)),
    ("sin(obs[0])", (-1, 1)),
    ("cos(obs[0]) * 2 + 1", (-1, 3)),
    ("sigmoid(obs[0])", (0, 1)),
    ("clip(act[0], -2, 3)", (-2, 3)),
    ("obs[0] > 1", (0, 1)),
    ("(obs[0] > 1) * (obs[1] <= 2)", (0, 1)),
    ("sqrt(obs[0]) >= 0", (0, 1)),  # NaN compares false: 0 is a value it takes
    ("exp(obs[0])", (0, INF)),
    ("exp(-obs[0]**2)", (0, 1)),
    ("log(obs[0])", (-INF, INF)),
    ("log(1 + obs[0]**2)", (0, INF)),
    ("min(obs[0], 1)", (-INF, 1)),
    ("max(abs(obs[0]), 2)", (2, INF)),
    ("where(obs[0] > 0, tanh(obs[1]), 5)", (-1, 5)),
    ("where(obs[0] > 0, sqrt(obs[0]), -1)", (-1, INF)),
    ("obs[0] * act[0]", (-INF, INF)),
    ("obs[0]**obs[1]", (-INF, INF)),
    ("abs(obs[0])**obs[1]", (0, INF)),
    ("info.speed", (-INF, INF)),
    ("obs[0]**2 - 2*obs[0]", (-INF, INF)),  # sound, not tight: its image is [-1, inf)
])
def test_natural_range_of_each_function(text, expected):
    lo, hi = natural(text)
    assert (lo, hi) == pytest.approx(expected, rel=0, abs=0)


def test_natural_range_of_atan2_is_minus_pi_to_pi_outward_rounded():
    lo, hi = natural("atan2(obs[1], obs[0])")
    assert lo <= -PI and hi >= PI
    assert (lo, hi) == pytest.approx((-PI, PI), rel=1e-12)
    lo, hi = natural("atan2(obs[1], 2)")  # sympy writes it as atan(obs[1]/2)
    assert lo <= -PI / 2 and hi >= PI / 2 and hi == pytest.approx(PI / 2, rel=1e-12)


def test_a_feature_that_uses_another_reads_its_natural_range():
    ranges = natural_ranges(FeatureSet({"d": "sqrt(obs[0]**2 + obs[1]**2)", "near": "1 - d",
                                        "squashed": "tanh(near)", "x": "obs[0]"}))
    assert (ranges["d"], ranges["near"], ranges["x"]) == ((0, INF), (-INF, 1), (-INF, INF))
    lo, hi = ranges["squashed"]
    assert lo == -1 and hi == pytest.approx(math.tanh(1), rel=1e-15) and hi >= math.tanh(1)


def test_a_formula_defined_nowhere_is_unbounded():
    assert natural("sqrt(-1 - obs[0]**2)") == (-INF, INF)


# -- soundness: every value a feature takes lies in its natural range ------------------------

_LEAVES = st.sampled_from(["obs[0]", "obs[1]", "act[0]", "0.5", "2", "-1.5", "3"])


def _combine(children):
    binary = st.tuples(children, st.sampled_from(["+", "-", "*", "/"]), children).map(
        lambda t: f"({t[0]} {t[1]} {t[2]})")
    unary = st.tuples(st.sampled_from(["abs", "exp", "sin", "cos", "tanh", "sqrt", "log",
                                       "sigmoid"]), children).map(lambda t: f"{t[0]}({t[1]})")
    power = st.tuples(children, st.sampled_from(["2", "3", "-1", "0.5", "-2", "3.0", "1.5",
                                                 "-0.5"])).map(lambda t: f"({t[0]}) ** {t[1]}")
    pair = st.tuples(st.sampled_from(["min", "max", "atan2"]), children, children).map(
        lambda t: f"{t[0]}({t[1]}, {t[2]})")
    clip = st.tuples(children, st.sampled_from(["-1, 1", "0, 2", "-3, -2"])).map(
        lambda t: f"clip({t[0]}, {t[1]})")
    compare = st.tuples(children, st.sampled_from(["<", "<=", ">", ">="]), children).map(
        lambda t: f"({t[0]} {t[1]} {t[2]})")
    where = st.tuples(children, st.sampled_from(["<", ">="]), children, children, children).map(
        lambda t: f"where({t[0]} {t[1]} {t[2]}, {t[3]}, {t[4]})")
    return st.one_of(binary, unary, power, pair, clip, compare, where)


FEATURES = st.recursive(_LEAVES, _combine, max_leaves=6)
RAW = st.one_of(st.floats(-20, 20), st.floats(-1e12, 1e12),
                st.sampled_from([0.0, -0.0, 1.0, -1.0, 1e-300, -1e-300, 1e300, -1e300]))


def _real(*values) -> bool:
    return not any(isinstance(v, mpmath.mpc) or mpmath.isnan(v) for v in values)


# NaN (a complex value) compares false and counts as true in where, as in the kernels
_MP = {
    "Less": lambda a, b: mpmath.mpf(1 if _real(a, b) and a < b else 0),
    "LessEqual": lambda a, b: mpmath.mpf(1 if _real(a, b) and a <= b else 0),
    "Greater": lambda a, b: mpmath.mpf(1 if _real(a, b) and a > b else 0),
    "GreaterEqual": lambda a, b: mpmath.mpf(1 if _real(a, b) and a >= b else 0),
    "Where": lambda c, a, b: a if not _real(c) or c != 0 else b,
    "Min": lambda *a: mpmath.nan if not _real(*a) else min(a),
    "Max": lambda *a: mpmath.nan if not _real(*a) else max(a),
    "Abs": abs,
    "atan2": lambda a, b: mpmath.atan2(a, b) if _real(a, b) else mpmath.nan,
    # exact values of sin(1e300) or exp(exp(30)) need more digits than a test can spend:
    # such points are skipped
    "sin": lambda a: mpmath.sin(_moderate(a, 1e15)),
    "cos": lambda a: mpmath.cos(_moderate(a, 1e15)),
    "exp": lambda a: mpmath.exp(_moderate(a, 1e6)),
}


def _moderate(a, limit):
    if _real(a) and abs(a) > limit:
        raise OverflowError
    return a


def _exact(function, values):
    """The real value at a point, 60 significant digits (None where undefined or complex)."""
    with mpmath.workdps(60):
        try:
            value = function(*(mpmath.mpf(v) for v in values))
        except (ZeroDivisionError, ValueError, OverflowError, TypeError):
            return None
        if isinstance(value, mpmath.mpc) or not mpmath.isfinite(value):
            return None
        return +value


def _divides_by_zero(expr, point) -> bool:
    """Whether a power with a negative or variable exponent has a zero base at ``point``."""
    names = ["obs[0]", "obs[1]", "act[0]"]
    for node in sympy.preorder_traversal(expr):
        if isinstance(node, sympy.Pow) and not (node.exp.is_number and node.exp > 0):
            try:
                if point_function(node.base, names)(*point) == 0:
                    return True
            except TypeError:  # a complex constant
                continue
    return False


@pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisWarning")
@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(FEATURES, st.lists(st.tuples(RAW, RAW, RAW), min_size=1, max_size=6))
@example("((obs[0]) ** -1) ** 3.0", [(-2.0, 0.0, 0.0)])
@example("where(sqrt(obs[0]) < 1, 2, 3)", [(-1.0, 0.0, 0.0)])
@example("atan2(obs[0], sqrt(obs[0]))", [(-0.0, 0.0, 0.0)])  # sqrt(-0.0) is -0.0: -pi
@example("atan2((clip(obs[0], 0, 2) - 2), clip(obs[0], -3, -2))", [(0.0, 0.0, 0.0)])
def test_natural_ranges_hold_every_value_a_feature_takes(text, points):
    """Soundness: at random raw inputs, the feature's real value (exact, where defined) and its
    finite float value (as the kernels compute it) lie in its natural range. Floats that divide
    by zero are left out: a zero's sign decides the infinity (1 / sqrt(-0.0) is -inf, where the
    reals say +inf), and a function of it can be finite (tanh(-inf) is -1)."""
    try:
        expr = formula.parse(text, allow_inputs=True)
    except formula.FormulaError:
        return
    lo, hi = natural(text)
    inputs = [formula.symbol(n) for n in ("obs[0]", "obs[1]", "act[0]")]
    exact = sympy.lambdify(inputs, expr, modules=[_MP, "mpmath"])
    floating = point_function(expr, ["obs[0]", "obs[1]", "act[0]"])
    for point in points:
        value = _exact(exact, point)
        if value is not None:
            assert lo <= value <= hi, (text, point, value, (lo, hi))
        try:
            number = floating(*point)
        except TypeError:  # complex: a constant such as atan2(-1, -1)**0.5, which sympy keeps
            continue
        if math.isfinite(number) and not _divides_by_zero(expr, point):
            assert lo <= number <= hi, (text, point, number, (lo, hi))


def test_kernel_feature_columns_lie_in_their_natural_ranges():
    """The compiled kernels' finite values of many features over wide and extreme raw inputs,
    signed zeros included."""
    texts = ["sqrt(next_obs[0]**2 + next_obs[1]**2)", "abs(act[0])", "obs[0]**2",
             "tanh(obs[1])", "sin(obs[0]) * cos(obs[1])", "sigmoid(act[0])",
             "clip(act[1], -2, 2)", "obs[0] > obs[1]", "atan2(obs[1], obs[0])", "exp(obs[0])",
             "exp(-obs[0]**2)", "log(1 + obs[1]**2)", "1/(1 + obs[0]**2)", "obs[0]**-2",
             "sqrt(obs[0])", "max(abs(obs[0]), 2)", "min(tanh(obs[0]), sigmoid(obs[1]))",
             "where(obs[0] > 0, sqrt(obs[0]), -1)", "-sqrt(abs(act[0] * act[1]))",
             "atan2(obs[0], 2)", "cos(obs[0])**2 + sin(obs[0])**2", "1 - tanh(obs[1])**2",
             "abs(obs[0])**0.5 + 1", "obs[0]**3", "atan2(obs[1], sqrt(obs[0]))",
             "1/sqrt(obs[0])"]
    features = FeatureSet({f"f{i}": t for i, t in enumerate(texts)})
    rng = np.random.default_rng(0)
    n = 20_000
    scale = np.exp(rng.uniform(-30, 30, size=(n, 2)))  # magnitudes from 1e-13 to 1e13
    obs, nxt = rng.normal(size=(n, 2)) * scale, rng.normal(size=(n, 2)) * scale
    act = rng.normal(size=(n, 2)) * scale[:, ::-1]
    obs[:50], act[:50] = 0.0, 0.0  # the special points 0, 0 ** -2, atan2(0, 0)
    obs[50:100], act[50:100] = -0.0, -0.0  # sqrt(-0.0) is -0.0, atan2(-0.0, -0.0) is -pi
    data = Dataset(obs, act, nxt, np.zeros(n, bool), np.zeros(n, bool))
    columns = feature_columns(data, features)
    ranges = natural_ranges(features)
    for i, name in enumerate(features.names):
        lo, hi = ranges[name]
        values = columns[:, i][np.isfinite(columns[:, i])]  # infinities are limits
        assert values.size > n // 3, texts[i]
        assert lo <= values.min() and values.max() <= hi, (texts[i], values.min(),
                                                            values.max(), (lo, hi))


# -- the domain: recorded ∩ natural, with sources --------------------------------------------


def test_domain_without_recorded_ranges_is_natural_or_unbounded():
    domain = feature_domain(artifact(DIST, DIST_TERMS))
    assert dict(domain) == {"dist": (0.0, INF), "a0": (-INF, INF), "a1": (-INF, INF)}
    assert domain.sources == {"dist": "natural", "a0": "unbounded", "a1": "unbounded"}
    assert domain.as_dict()["dist"] == {"lo": 0.0, "hi": None, "source": "natural"}
    json.dumps(domain.as_dict())  # plain data
    assert domain.describe() == "dist in [0, +inf) (natural); a0, a1 unbounded"


def test_domain_intersects_recorded_ranges_with_natural_ones():
    art = artifact({**DIST, "th": "tanh(obs[0])"}, [*DIST_TERMS, "th"],
                   provenance="feature_ranges = { dist = [-1.0, 5.0], a0 = [-2.0, 2.0], "
                              "th = [-3.0, 0.5] }")
    domain = feature_domain(art)
    assert dict(domain) == {"dist": (0.0, 5.0), "a0": (-2.0, 2.0), "a1": (-INF, INF),
                            "th": (-1.0, 0.5)}
    assert domain.sources == {"dist": "recorded ∩ natural", "a0": "recorded",
                              "a1": "unbounded", "th": "recorded ∩ natural"}
    assert domain.bounds["dist"].lo_source == "natural"
    assert domain.bounds["dist"].hi_source == "recorded"
    # a tie goes to the explicit bound
    art = artifact(DIST, DIST_TERMS, provenance="feature_ranges = { dist = [0.0, 3.0] }")
    assert feature_domain(art).sources["dist"] == "recorded"


def test_an_invariants_domain_replaces_the_recorded_range_inside_the_natural_one():
    art = artifact(DIST, DIST_TERMS, ['rule = "bounded"\nhi = 0\n'
                                      'domain = { dist = [-4.0, 10.0], a0 = [-1.0, 1.0] }'],
                   provenance="feature_ranges = { dist = [0.5, 2.0] }")
    [result] = check(art, examples=20, time_budget=0.5)
    assert result.domain["dist"] == {"lo": 0.0, "hi": 10.0, "source": "domain ∩ natural"}
    assert result.domain["a0"] == {"lo": -1.0, "hi": 1.0, "source": "domain"}
    assert result.domain["a1"] == {"lo": None, "hi": None, "source": "unbounded"}
    assert "domain: dist in [0, 10] (domain ∩ natural); a0 in [-1, 1] (domain); a1 unbounded" \
        in format_result(result)


def test_a_domain_from_plain_ranges():
    """What a caller without an artifact passes (the data's ranges, say), with or without
    natural ranges; an invariant read on a plain box takes it as recorded."""
    domain = FeatureDomain.from_ranges(["d", "x"], {"d": (-1.0, 4.0)}, {"d": (0.0, INF)})
    assert dict(domain) == {"d": (0.0, 4.0), "x": (-INF, INF)}
    assert domain.sources == {"d": "recorded ∩ natural", "x": "unbounded"}
    invariant = read(0, {"rule": "bounded", "hi": 0, "domain": {"x": [0, 1]}}, RULES["bounded"],
                     ["x", "y"], {"x": (-5.0, 5.0), "y": (1.0, 2.0)}, "c.toml: invariants[0]")
    assert dict(invariant.domain) == {"x": (0.0, 1.0), "y": (1.0, 2.0)}
    assert invariant.domain.sources == {"x": "domain", "y": "recorded"}


def test_a_domain_entirely_outside_the_natural_range_is_an_error():
    art = artifact(DIST, DIST_TERMS, ['rule = "bounded"\nhi = 0\n'
                                      'domain = { dist = [-5.0, -1.0] }'])
    with pytest.raises(InvariantError, match=r"invariants\[0\]\.domain\.dist: \[-5, -1\] lies "
                                             r"entirely outside the natural range of feature "
                                             r"'dist', \[0, inf\]"):
        check(art)
    with pytest.raises(InvariantError, match=r"domain\.dist: .* natural range of feature"):
        feature_states(artifact(DIST, DIST_TERMS), {"dist": (-3.0, -2.0)})


def test_a_recorded_range_outside_the_natural_range_is_an_error():
    art = artifact(DIST, DIST_TERMS, provenance="feature_ranges = { dist = [-3.0, -1.0] }")
    with pytest.raises(InvariantError, match=r"provenance\.feature_ranges\.dist: \[-3, -1\] lies "
                                             "entirely outside the natural range"):
        feature_domain(art)


@pytest.mark.parametrize("value", [[math.inf, math.inf], [-math.inf, -math.inf], [2, 1],
                                   [0, math.nan], [1], "x", [True, 2]])
def test_bounds_that_hold_no_finite_number_are_refused(value):
    with pytest.raises(InvariantError, match="where"):
        bounds_pair(value, "where")


def test_feature_states_draw_from_the_natural_range():
    art = artifact({**DIST, "s": "sigmoid(obs[0])"}, [*DIST_TERMS, "s"])

    @settings(max_examples=100, deadline=None)
    @given(feature_states(art))
    def inner(state):
        assert state["dist"] >= 0.0
        assert 0.0 <= state["s"] <= 1.0

    inner()


@given(st.floats(allow_nan=False), st.floats(allow_nan=False))
@example(-INF, -1e9)
@example(1e9, INF)
def test_float_range_lies_inside_its_side(a, b):
    lo, hi = min(a, b), max(a, b)
    if lo == INF or hi == -INF:
        return
    sample_lo, sample_hi = float_range(lo, hi)
    assert lo <= sample_lo <= sample_hi <= hi
    assert math.isfinite(sample_lo) and math.isfinite(sample_hi)


# -- check: the distance example, and counterexamples inside the domain -----------------------


def test_a_distance_is_never_negative_so_bounded_above_by_zero_is_proved():
    """The issue's example: it was violated with the counterexample dist = -1."""
    [result] = check(artifact(DIST, DIST_TERMS, ['rule = "bounded"\nhi = 0']))
    assert result.status == "proved", format_result(result)
    assert result.counterexample is None
    assert result.domain["dist"]["source"] == "natural"


def test_the_check_report_names_where_each_bound_comes_from(tmp_path, capsys):
    path = tmp_path / "dist.reward.toml"
    path.write_text(artifact(DIST, DIST_TERMS, ['rule = "bounded"\nhi = 0',
                                                'rule = "bounded"\nlo = -1\n'
                                                'domain = { a0 = [0.0, 0.5] }']).dumps())
    assert main(["check", str(path), "--examples", "30"]) == 1  # lo = -1 is false
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[1] == "  domain: dist in [0, +inf) (natural); a0, a1 unbounded"
    assert "[0] proved" in out
    # the second invariant's own domain is shown under it
    assert ("domain: dist in [0, +inf) (natural); a0 in [0, 0.5] (domain); a1 unbounded"
            in out)
    assert out.count("domain:") == 2


NATURAL_FEATURES = {"dist": "sqrt(next_obs[8]**2 + next_obs[9]**2)", "th": "tanh(obs[0])",
                    "s": "sigmoid(obs[1])", "c": "clip(act[0], 0, 1)",
                    "up": "atan2(obs[3], obs[2])", "on": "obs[5] > 0", "a0": "act[0]"}


@pytest.mark.parametrize(("terms", "invariant"), [
    (["-dist", "-a0**2"], 'rule = "bounded"\nhi = 0'),
    (["0.3*th"], 'rule = "bounded"\nhi = 0.3\nlo = -0.3'),
    (["s", "c"], 'rule = "sign"\nis = "nonnegative"'),
    (["-dist**2"], 'rule = "decreasing"\nof = "dist"'),
    (["-(s - 1)**2"], 'rule = "increasing"\nof = "s"'),
    (["-up**2"], 'rule = "bounded"\nlo = -9.87'),
    (["on", "-th"], 'rule = "bounded"\nhi = 2\nlo = -1'),
    (["-dist**2"], 'rule = "prefers"\nbetter = "dist < 1"\nworse = "dist > 2"'),
    (["-c**2 + c"], 'rule = "sign"\nis = "nonnegative"\nwhen = "a0 > 0"'),
])
def test_true_on_the_natural_ranges_is_not_violated(terms, invariant):
    """Each holds for every value the features can take and fails only outside their natural
    ranges (a negative distance, tanh above 1, a comparison at 2): check used to report such
    states as counterexamples."""
    [result] = check(artifact(NATURAL_FEATURES, terms, [invariant]), examples=100,
                     time_budget=1.0)
    assert result.status in ("proved", "held"), format_result(result)


FALSE_INVARIANTS = [
    'rule = "bounded"\nhi = -0.5',
    'rule = "bounded"\nlo = -3',
    'rule = "sign"\nis = "negative"',
    'rule = "sign"\nis = "negative"\nwhen = "dist < 0.5"',
    'rule = "increasing"\nof = "dist"',
    'rule = "decreasing"\nof = "s"',
    'rule = "prefers"\nbetter = "dist > 1"\nworse = "dist < 1"',
    'rule = "independent"\nof = "th"',
    'rule = "bounded"\nhi = -0.5\ndomain = { dist = [-10.0, 3.0], th = [-5.0, 0.0] }',
]


@pytest.mark.parametrize("invariant", FALSE_INVARIANTS)
def test_every_counterexample_lies_in_the_natural_ranges(invariant):
    """Each rule's ways of finding a counterexample (branch-and-bound, shrinking, hypothesis,
    pairs) report only states inside the features' natural ranges."""
    features = {**DIST, "th": "tanh(obs[0])", "s": "sigmoid(obs[1])"}
    art = artifact(features, ["-dist", "-(a0**2 + a1**2)", "0.3*th", "-s**2 + s"],
                   [invariant])
    [result] = check(art, examples=60, time_budget=0.5)
    assert result.status == "violated", format_result(result)
    ranges = natural_ranges(art.features)
    states = [result.counterexample] + ([result.other["state"]] if result.other else [])
    for state in states:
        for name, value in state.items():
            lo, hi = ranges[name]
            assert lo <= value <= hi, (name, value, (lo, hi))


EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
EXAMPLE_ARTIFACTS = sorted(path for path in EXAMPLES.rglob("*.toml")
                           if "[[terms]]" in path.read_text(encoding="utf-8"))


def probes(names: list[str]) -> list[dict]:
    """False or doubtful statements about any reward, so that check reports counterexamples."""
    tables = [{"rule": "bounded", "hi": -1e6}, {"rule": "bounded", "lo": 1e6},
              {"rule": "sign", "is": "positive"}, {"rule": "sign", "is": "negative"}]
    for name in names:
        tables += [{"rule": "independent", "of": name}, {"rule": "increasing", "of": name},
                   {"rule": "decreasing", "of": name},
                   {"rule": "prefers", "better": f"{name} < 0.5", "worse": f"{name} > 0.5"}]
    return tables


def test_every_example_is_swept():
    assert {p.relative_to(EXAMPLES).as_posix() for p in EXAMPLE_ARTIFACTS} >= {
        "pendulum/reward.toml", "property_tests/reacher.reward.toml"}


@pytest.mark.parametrize("path", EXAMPLE_ARTIFACTS,
                         ids=[p.relative_to(EXAMPLES).as_posix() for p in EXAMPLE_ARTIFACTS])
def test_no_counterexample_outside_the_natural_ranges_in_the_examples(path):
    """Every example artifact, with its own invariants and with probes of every rule over
    each of its features: each counterexample check reports lies in the natural ranges."""
    art = RewardArtifact.load(path)
    ranges = natural_ranges(art.features)
    results = check(art, examples=30, time_budget=0.2)
    art.invariants[:] = probes(art.features.names)
    results += check(art, examples=30, time_budget=0.2)
    violated = [r for r in results if r.status == "violated"]
    assert len(violated) >= len(art.features.names)
    for result in violated:
        for state in [result.counterexample] + ([result.other["state"]] if result.other else []):
            outside = {n: v for n, v in state.items() if not ranges[n][0] <= v <= ranges[n][1]}
            assert not outside, (result.description, outside)


def test_a_rule_reporting_a_state_outside_the_domain_is_an_internal_error(monkeypatch):
    class Careless(Rule):
        """Reports a distance below zero."""

        @classmethod
        def fields(cls, table, names, where):
            return {}

        @classmethod
        def decide(cls, checker, invariant, deadline):
            return checker.violation(invariant, "carelessly", {"dist": -1.0, "a0": 0.0,
                                                               "a1": 0.0})

    monkeypatch.setitem(RULES, "careless", Careless)
    art = artifact(DIST, DIST_TERMS)
    art.invariants.append({"rule": "careless"})
    with pytest.raises(RuntimeError, match=r"outside the domain: dist = -1\.0 not in \[0\.0, "
                                           r"inf\]"):
        check(art)


# -- branch-and-bound splits stay finite and inside the box ----------------------------------

CRASH = artifact({"x": "obs[0]", "y": "obs[1]"}, ["x**2 + y"],
                 ['rule = "sign"\nis = "positive"\nwhen = "y > 0"'])


def test_a_strict_sign_tight_at_an_open_boundary_does_not_crash():
    """It died with mpmath's 'endpoints must be properly ordered' once branch-and-bound had
    doubled an unbounded side up to 1.8e308 and split past it (the default budget got there)."""
    [result] = check(CRASH, time_budget=2.0, examples=50)
    assert result.status in ("held", "unknown"), format_result(result)


@pytest.mark.parametrize("box", [
    {"x": (-INF, -8.98846567431158e307), "y": (-INF, INF)},  # crashed: split to (-inf, -inf)
    {"x": (8.98846567431158e307, INF), "y": (-INF, INF)},  # crashed: split to (inf, inf)
    {"x": (-1.7e308, 1.7e308), "y": (-INF, INF)},  # the width overflows
    {"x": (-INF, -1.7976931348623157e308), "y": (0.0, INF)},
    {"x": (-INF, INF), "y": (-INF, INF)},
])
def test_branch_and_bound_at_the_ends_of_the_floats(box):
    x, y = formula.symbol("x"), formula.symbol("y")
    outcome = maximise(-(x**2 + y), formula.Greater(y, 0), box, 0.0, True,
                       time.monotonic() + 0.5, ["x", "y"])
    assert outcome.status in ("unknown", "proved")


@given(st.floats(allow_nan=False), st.floats(allow_nan=False))
@example(-INF, -1e308)
@example(1e308, INF)
@example(-1.7e308, 1.7e308)
@example(1.7976931348623157e308, INF)
@example(5e-324, 5e-324)
def test_split_points_are_finite_and_inside(a, b):
    lo, hi = min(a, b), max(a, b)
    if lo == INF or hi == -INF:
        return
    point = _split_point(lo, hi)
    assert math.isfinite(point) and lo <= point <= hi
    if _splittable(lo, hi):
        assert lo < point < hi


@pytest.mark.parametrize(("hi", "status"), [(3.2, "proved"), (3.0, "violated")])
def test_atan2_across_its_branch_cut(hi, status):
    """y from -2 to 0 where x < 0: atan2 jumps from -pi to pi at y = 0. mpmath's interval atan2
    returned reversed ends there, and check died with 'endpoints must be properly ordered'."""
    art = artifact({"x": "obs[0]", "y": "obs[1]"}, ["atan2(y, x)"],
                   [f'rule = "bounded"\nlo = -3.2\nhi = {hi}\n'
                    'domain = { x = [-3.0, -2.0], y = [-2.0, 0.0] }'])
    [result] = check(art, examples=50, time_budget=1.0)
    assert result.status == status, format_result(result)
    if status == "violated":
        assert result.counterexample["y"] == 0.0 and result.reward == pytest.approx(PI)
