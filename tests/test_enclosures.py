"""The vectorised interval evaluator: its enclosures hold every value of the formula in the box,
its slopes every difference quotient along a side, and a comparison of a feature with a number
is decided exactly from the box's ends."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import sympy
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from symreward import formula
from symreward.errors import SymrewardError
from symreward.invariants.enclosures import BoxFunction

NAMES = ["x", "y"]
numbers = st.floats(-3, 3, allow_nan=False).map(lambda v: str(round(v, 2)))
leaves = st.one_of(st.sampled_from(NAMES), numbers)


def _grow(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    unary = st.tuples(st.sampled_from(["abs", "exp", "tanh", "sin", "cos", "sqrt", "log",
                                       "sigmoid", "-"]), inner)
    binary = st.tuples(st.sampled_from(["+", "-", "*", "/", "min", "max", ">", "<=", "atan2"]),
                       inner, inner)
    power = st.tuples(inner, st.sampled_from(["2", "3", "-1", "0.5", "1.5"]))
    choice = st.tuples(inner, inner, inner)
    return st.one_of(
        unary.map(lambda u: f"-({u[1]})" if u[0] == "-" else f"{u[0]}({u[1]})"),
        binary.map(lambda b: f"{b[0]}({b[1]}, {b[2]})" if b[0] in ("min", "max", "atan2")
                   else f"({b[1]}) {b[0]} ({b[2]})"),
        power.map(lambda p: f"({p[0]})**{p[1]}"),
        choice.map(lambda c: f"where({c[0]}, {c[1]}, {c[2]})"))


formulas = st.recursive(leaves, _grow, max_leaves=6)
sides = st.tuples(st.floats(-3, 3, allow_nan=False),
                  st.sampled_from([0.0, 1e-6, 0.01, 0.3, 2.0, 6.0]))


def _values(point, states: np.ndarray) -> np.ndarray:
    """The formula at each state over the real numbers: NaN where it is undefined there, which
    numpy signals as a division by zero or an invalid operation on the way (the kernels go on
    through infinities: sigmoid(log(0)) is 0 to them, undefined to the enclosures). lambdify
    computes a formula without features in Python numbers, where (-1)**0.5 is complex."""

    def at(rows: np.ndarray) -> np.ndarray:
        with np.errstate(divide="raise", invalid="raise", over="ignore", under="ignore"):
            values = np.broadcast_to(point(*rows.T), (len(rows),))
        if np.iscomplexobj(values):
            values = np.where(np.imag(values) == 0, np.real(values), np.nan)
        return values.astype(float)

    try:
        return at(states)
    except (FloatingPointError, ZeroDivisionError, ValueError):
        out = np.full(len(states), np.nan)
        for k, row in enumerate(states):
            with contextlib.suppress(FloatingPointError, ZeroDivisionError, ValueError):
                out[k] = at(row[None, :])[0]
        return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=formulas, x=sides, y=sides, seed=st.integers(0, 2**32 - 1))
def test_enclosures_hold_every_value_and_slopes_every_difference_quotient(text, x, y, seed):
    try:
        expr = formula.parse(text, NAMES)
    except SymrewardError:
        assume(False)
    box = np.array([[x[0], y[0]], [x[0] + x[1], y[0] + y[1]]])
    enclosure = BoxFunction(expr, NAMES)(box[:1], box[1:], slopes=True)
    point = sympy.lambdify([formula.symbol(n) for n in NAMES], expr,
                           modules=[formula.NUMPY_FUNCTIONS, "numpy"])
    rng = np.random.default_rng(seed)
    states = box[0] + rng.random((300, 2)) * (box[1] - box[0])
    values = _values(point, states)
    defined = np.isfinite(values)
    lo, hi = enclosure.lo[0], enclosure.hi[0]
    if np.isnan(lo):  # empty: undefined throughout the box
        assert not np.any(defined)
        return
    slack = 1e-12 * (1 + np.abs(values[defined]))
    assert np.all(values[defined] >= lo - slack) and np.all(values[defined] <= hi + slack)
    if enclosure.irregular[0]:
        return
    for j in range(2):
        moved = states.copy()
        moved[:, j] = box[0, j] + rng.random(len(states)) * (box[1, j] - box[0, j])
        after = _values(point, moved)
        step = moved[:, j] - states[:, j]
        with np.errstate(all="ignore"):
            quotient = (after - values) / step
        usable = defined & np.isfinite(after) & (np.abs(step) > 1e-9)
        s_lo, s_hi = enclosure.grad.get(j, (np.zeros(1), np.zeros(1)))
        # the quotients' own rounding: a few ulps of the values, over the step
        noise = 1e-12 * (1 + np.abs(values) + np.abs(after)) / np.abs(np.where(usable, step, 1))
        assert np.all(quotient[usable] >= s_lo[0] - noise[usable])
        assert np.all(quotient[usable] <= s_hi[0] + noise[usable])


@pytest.mark.parametrize(("text", "open_lo", "open_hi", "expected"), [
    ("x > 0.5", False, False, (0.0, 1.0)),  # x = 0.5 is in the box, where x > 0.5 is false
    ("x > 0.5", True, False, (1.0, 1.0)),  # (0.5, 1]: true throughout
    ("x >= 0.5", False, False, (1.0, 1.0)),
    ("0.5 < x", True, False, (1.0, 1.0)),  # written the other way round
    ("x <= 0.5", True, False, (0.0, 0.0)),
    ("x < 1", False, True, (1.0, 1.0)),  # [0.5, 1): true throughout
    ("x < 1", False, False, (0.0, 1.0)),
])
def test_a_comparison_of_a_feature_with_a_number_reads_the_open_ends(text, open_lo, open_hi,
                                                                    expected):
    f = BoxFunction(formula.parse(text, ["x"]), ["x"])
    out = f(np.array([[0.5]]), np.array([[1.0]]), open_lo=np.array([[open_lo]]),
            open_hi=np.array([[open_hi]]))
    assert (out.lo[0], out.hi[0]) == expected


def test_a_jump_is_an_infinite_slope_with_its_sign_and_a_kink_the_hull_of_its_slopes():
    names = ["x"]
    lo, hi = np.array([[-1.0]]), np.array([[1.0]])
    up = BoxFunction(formula.parse("x > 0", names), names)(lo, hi, slopes=True)
    assert (up.grad[0][0][0], up.grad[0][1][0]) == (0.0, np.inf)
    down = BoxFunction(formula.parse("2 * (x < 0)", names), names)(lo, hi, slopes=True)
    assert down.grad[0][0][0] == -np.inf and 0.0 <= down.grad[0][1][0] < 1e-300  # 0, outward
    kink = BoxFunction(formula.parse("abs(x)", names), names)(lo, hi, slopes=True)
    assert (kink.grad[0][0][0], kink.grad[0][1][0]) == pytest.approx((-1.0, 1.0), rel=1e-15)
    assert not (up.irregular[0] or kink.irregular[0])


def test_undefined_points_make_a_box_partial_and_a_box_with_none_defined_empty():
    names = ["x"]
    f = BoxFunction(formula.parse("log(x)", names), names)
    out = f(np.array([[-1.0], [-2.0], [1.0]]), np.array([[1.0], [-1.0], [2.0]]))
    assert out.partial.tolist() == [True, True, False]
    assert out.lo[0] == -np.inf and out.hi[0] == pytest.approx(0.0, abs=1e-12)
    assert np.isnan(out.lo[1]) and np.isnan(out.hi[1])
    assert out.lo[2] <= 0.0 <= out.hi[2] and out.lo[2] > -1e-12
