"""The numba kernels agree with numpy evaluation of the same formulas, and are cached.

Real numba throughout: each compile costs about two seconds, so the property test compiles many
random terms into one reward per example.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path

import numba
import numpy as np
import pytest
import sympy
from hypothesis import HealthCheck, example, given, reject, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sympy.printing.numpy import NumPyPrinter

from symreward import kernels
from symreward.errors import DataError, FeatureError, SymrewardError
from symreward.formula import (
    NUMPY_FUNCTIONS,
    Greater,
    Less,
    LessEqual,
    Where,
    info_symbol,
    input_symbol,
    parse,
    symbol,
)
from symreward.kernels import compile_reward, runtime, vecmath
from symreward.kernels.codegen import KERNELS

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kernel-cache")


# -- numpy reference ---------------------------------------------------------------------------

# The kernels compute exp, log, tanh, ... with kernels.VECTOR_MATH (glibc's vector functions where
# it can, else the scalar libm); numpy has SIMD versions of its own that differ from both in the
# last bit for some inputs. A formula can blow such a bit up without bound: cos(1e150 * exp(x)),
# tanh(x) - 1. So the reference evaluates with numpy but takes these functions from
# kernels.kernel_math, which computes them exactly as the kernels do;
# test_kernel_math_matches_numpy checks them against numpy's own.

MATH_NAMES = ("exp", "log", "sin", "cos", "tanh", "arctan", "arctan2", "power")


class ReferencePrinter(NumPyPrinter):
    """lambdify's numpy printer, with powers that numpy computes by its own pow (all but x**2,
    x**-1 and square roots) sent through ``power``, so through the kernels' power, and every
    number written as the double it is (the default writes 15 significant digits: another
    double than the kernels', which ``sin`` of it shows)."""

    def _print_Float(self, expr: sympy.Float) -> str:
        return repr(float(expr))

    def _print_Pow(self, expr: sympy.Pow, rational: bool = False) -> str:
        if expr.exp in (2, -1, sympy.S.Half, -sympy.S.Half):
            return super()._print_Pow(expr, rational)
        return f"power({self._print(expr.base)}, {self._print(expr.exp)})"

    def _print_Piecewise(self, expr: sympy.Piecewise) -> str:
        # numpy's printer runs simplify_logic on a condition holding an ITE first, which writes
        # ~(x > y) as x <= y: false where x is NaN, while the kernels branch on the ITE itself.
        values = ", ".join(self._print(arg.expr) for arg in expr.args)
        conditions = ", ".join(self._print(arg.cond) for arg in expr.args)
        return f"select([{conditions}], [{values}], default=nan)"

    def _print_ITE(self, expr: sympy.logic.boolalg.ITE) -> str:
        condition, if_true, if_false = (self._print(arg) for arg in expr.args)
        return f"where({condition}, {if_true}, {if_false})"


REFERENCE_PRINTER = ReferencePrinter({
    "fully_qualified_modules": False, "inline": True, "allow_unknown_functions": True,
    "user_functions": {name: name for name in (*MATH_NAMES, *NUMPY_FUNCTIONS)}})


def reference_modules() -> list:
    """lambdify's modules: the kernels' math (with the current kernels.VECTOR_MATH), numpy."""
    return [{name: kernels.kernel_math(name) for name in MATH_NAMES}, NUMPY_FUNCTIONS, "numpy"]


def numpy_eval(expr: sympy.Expr, columns: dict[sympy.Symbol, np.ndarray], n: int,
               modules: list | None = None) -> np.ndarray:
    """``expr`` evaluated by ``sympy.lambdify(..., "numpy")`` on named columns, with
    ``modules`` (by default ``reference_modules()``).

    lambdify would swap names like ``obs[0]`` for Dummy symbols, and sympy re-sorts the
    arguments of sums, products and min/max by name: the numpy code would add in another order
    (so ``1e300 - 1e300 + 1`` could differ) and break ``min(0.0, -0.0)`` ties the other way.
    Renaming to identifiers that sort alike keeps the order the kernels use."""
    symbols = sorted(expr.free_symbols, key=lambda s: s.name)
    renamed = [sympy.Symbol(f"x{k:04d}", real=True) for k in range(len(symbols))]
    # Rebuilt unevaluated: evaluating would simplify min(-6.9, max(1, v)) to -6.9, which the
    # kernels (and numpy) compute as NaN where v is NaN.
    with sympy.evaluate(False):
        renamed_expr = expr.xreplace(dict(zip(symbols, renamed, strict=True)))
    function = sympy.lambdify(renamed, renamed_expr, modules=modules or reference_modules(),
                              printer=REFERENCE_PRINTER)
    with np.errstate(all="ignore"):
        value = function(*(columns[s] for s in symbols))
    return np.broadcast_to(np.asarray(value, dtype=np.float64), (n,))


def reference(features: list[tuple[str, sympy.Expr]], terms: list[tuple[str, sympy.Expr]],
              raw: dict[sympy.Symbol, np.ndarray], n: int, modules: list | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """Feature matrix and term columns, feature by feature as numpy evaluates them.

    Each feature is evaluated on the columns of the features it uses, not substituted into the
    terms: sympy would simplify the substituted expression (``sqrt(x)**2`` → ``x``), changing
    where the result is NaN."""
    columns = dict(raw)
    for name, expr in features:
        columns[symbol(name)] = numpy_eval(expr, columns, n, modules)
    feature_matrix = np.column_stack([columns[symbol(name)] for name, _ in features])
    term_columns = np.column_stack([numpy_eval(expr, columns, n, modules) for _, expr in terms] or
                                   [np.empty((n, 0))])
    return feature_matrix, term_columns


def row_sums(columns: np.ndarray) -> np.ndarray:
    """Left-to-right sum of the columns, the order in which the fused kernel adds terms."""
    total = columns[:, 0].copy() if columns.shape[1] else np.zeros(columns.shape[0])
    with np.errstate(all="ignore"):
        for k in range(1, columns.shape[1]):
            total = total + columns[:, k]
    return total


def assert_same(actual: np.ndarray, expected: np.ndarray, rtol: float = 1e-12) -> None:
    assert actual.dtype == np.float64 and actual.shape == expected.shape
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected), err_msg="NaN pattern")
    np.testing.assert_array_equal(np.isinf(actual), np.isinf(expected), err_msg="inf pattern")
    # atol only matters below the normal range, where subnormal results lose relative precision.
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=1e-300, equal_nan=True)


# -- random formulas ---------------------------------------------------------------------------

OBS0, OBS1, ACT0 = input_symbol("obs", 0), input_symbol("obs", 1), input_symbol("act", 0)
INFO_V = info_symbol("v")
INFO_NAMES = ("u", "v")  # info.v is column 1: column 0 is filled with NaN to catch a mix-up
RAW_LEAVES = [OBS0, OBS1, ACT0, INFO_V]
SPECIAL_INPUTS = [0.0, -0.0, 1.0, -1.0, 0.5, -2.5, 3.0, 1e-8, -1e-8, 1e6, -1e6, 1e150, -1e150,
                  1e300, -1e300, np.pi, np.inf, -np.inf, np.nan]
CONSTANTS = [sympy.Integer(0), sympy.Integer(1), sympy.Integer(2), sympy.Integer(-3),
             sympy.Float(0.5), sympy.Float(-1.25), sympy.Float(1e-3), sympy.Float(1e6),
             sympy.Rational(1, 3), sympy.pi, sympy.E, sympy.sin(1)]
EXPONENTS = [2, 3, 4, 5, -1, -2, -3, sympy.Rational(1, 2), sympy.Rational(-1, 2),
             sympy.Rational(1, 3), sympy.Rational(3, 2), sympy.Float(2.5), sympy.Float(-0.7)]


def _valid(expr: sympy.Expr) -> bool:
    if expr.has(sympy.I, sympy.zoo, sympy.nan, sympy.oo, -sympy.oo):
        return False
    return bool(expr.free_symbols) or bool(sympy.N(expr).is_real)


def _build(make: Callable[..., sympy.Expr], *args: sympy.Expr) -> sympy.Expr:
    """``make(*args)``, or the first argument if sympy folds it to a complex or infinite
    constant (which the formula language refuses too)."""
    try:
        expr = make(*args)
    except (ZeroDivisionError, ValueError, TypeError):
        return args[0]
    return expr if _valid(expr) else args[0]


UNARY = [sympy.Abs, sympy.exp, sympy.log, sympy.sin, sympy.cos, sympy.tanh, sympy.sqrt,
         lambda a: -a]
BINARY = [
    lambda a, b: a + b, lambda a, b: a - b, lambda a, b: a * b, lambda a, b: a / b,
    lambda a, b: a ** b, sympy.atan2, sympy.Min, sympy.Max,
    lambda a, b: sympy.Min(a, b, evaluate=False), lambda a, b: sympy.Max(a, b, evaluate=False),
    Less, LessEqual, Greater,
    lambda a, b: sympy.Piecewise((1, sympy.Lt(a, b)), (0, True)),
    lambda a, b: sympy.Piecewise((1, sympy.Ge(a, b)), (0, True)),
]
TERNARY = [
    Where, sympy.Min, sympy.Max,
    lambda c, a, b: sympy.Piecewise((a, sympy.Ne(c, 0)), (b, True)),
    lambda c, a, b: sympy.Piecewise((a, sympy.Gt(c, b)), (b, True)),
]


def formulas(leaves: list[sympy.Symbol]) -> st.SearchStrategy[sympy.Expr]:
    base = st.one_of(st.sampled_from(leaves), st.sampled_from(CONSTANTS))

    def extend(children: st.SearchStrategy[sympy.Expr]) -> st.SearchStrategy[sympy.Expr]:
        return st.one_of(
            st.builds(_build, st.sampled_from(UNARY), children),
            st.builds(_build, st.sampled_from(BINARY), children, children),
            st.builds(_build, st.sampled_from(TERNARY), children, children, children),
            st.builds(_build, st.just(sympy.Pow), children, st.sampled_from(EXPONENTS)),
        )

    return st.recursive(base, extend, max_leaves=7)


# Columns: obs[0], obs[1], act[0], info.v.
inputs = arrays(np.float64, (24, 4), elements=st.one_of(
    st.sampled_from(SPECIAL_INPUTS),
    st.floats(-1e3, 1e3, allow_nan=False, allow_subnormal=False)))


@st.composite
def rewards(draw: st.DrawFn) -> tuple[list, list]:
    f1 = draw(formulas(RAW_LEAVES))
    f2 = draw(formulas([*RAW_LEAVES, symbol("f1")]))
    features = [("p", OBS0), ("q", ACT0), ("f1", f1), ("f2", f2),
                ("unused", draw(formulas(RAW_LEAVES)))]
    leaves = [symbol(name) for name in ("p", "q", "f1", "f2")]
    count = draw(st.integers(6, 10))
    terms = [(f"t{k}", draw(formulas(leaves))) for k in range(count)]
    return features, terms


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(reward=rewards(), table=inputs)
@example(reward=([("p", OBS0), ("q", ACT0), ("f1", OBS0), ("f2", OBS0),
                  ("unused", sympy.Min(sympy.Float(-6.90775527898214),
                                       sympy.Max(1, INFO_V), evaluate=False))],
                 [("t0", symbol("q"))]),
         table=np.array([[1.0, 1.0, 1.0, np.nan]] * 24))
@example(reward=([("p", OBS0), ("q", ACT0), ("f1", OBS0), ("f2", sympy.Float(125.89254117941749)),
                  ("unused", OBS0)], [("t0", sympy.sin(symbol("f2")))]),
         table=np.full((24, 4), 0.5))
def test_kernels_match_numpy(reward: tuple[list, list], table: np.ndarray,
                             cache_dir: Path) -> None:
    features, terms = reward
    n = table.shape[0]
    # Strided float views on purpose: the kernels convert them once.
    obs = np.column_stack([table[:, 0], table[:, 1], np.full(n, 7.0)])[:, :2]
    act = table[:, 2:3]
    info = np.column_stack([np.full(n, np.nan), table[:, 3]])
    next_obs = np.zeros((n, 2))
    raw = {OBS0: table[:, 0], OBS1: table[:, 1], ACT0: table[:, 2], INFO_V: table[:, 3]}
    try:
        expected_features, expected_terms = reference(features, terms, raw, n)
    except ValueError:  # sympy's numpy printer fails on some Piecewise nested in conditions
        reject()

    compiled = compile_reward(features, terms, INFO_NAMES, cache_dir=cache_dir)
    columns = compiled.term_columns(obs, act, next_obs, info)
    assert_same(columns, expected_terms)
    assert_same(compiled.feature_matrix(obs, act, next_obs, info), expected_features)
    total = compiled.rewards(obs, act, next_obs, info)
    assert_same(total, row_sums(expected_terms))
    assert_same(total, row_sums(columns))
    singles = [compiled.single(np.ascontiguousarray(obs[i]), np.ascontiguousarray(act[i]),
                               next_obs[i], np.ascontiguousarray(info[i])) for i in range(n)]
    assert_same(np.array(singles), total)


SPECIAL_VALUES = np.array([0.0, -0.0, 5e-324, -1e-310, 1e-8, 0.5, 1.0, -1.0, 2.5, -7.25, 19.5,
                           709.0, 710.0, -745.0, -746.0, 1e6, -1e6, 1e150, 1e300, -1e300, np.pi,
                           np.inf, -np.inf, np.nan])


@pytest.fixture(params=kernels.VECTOR_MATH_OPTIONS, ids=lambda math: math.name)
def vector_math(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
                ) -> kernels.VectorMath:
    """Each way of computing the kernels' math that this machine supports, made the current one
    (the fallbacks are tested here even where a faster way exists)."""
    monkeypatch.setattr(vecmath, "VECTOR_MATH", request.param)
    return request.param


def test_kernel_math_matches_numpy(vector_math: kernels.VectorMath) -> None:
    """The kernels' math agrees with numpy's ufuncs, NaN and inf included."""
    rng = np.random.default_rng(1)
    spread = np.concatenate([rng.normal(size=500) * 4, np.exp(rng.uniform(-700, 700, 500)),
                             -np.exp(rng.uniform(-700, 700, 500))])
    grid = (g.ravel() for g in np.meshgrid(SPECIAL_VALUES, SPECIAL_VALUES))
    for x, y in [grid, (spread, rng.permutation(spread))]:
        with np.errstate(all="ignore"):
            for name in MATH_NAMES:
                function = getattr(np, name)
                args = (y, x) if function.nin == 2 else (x,)
                assert_same(kernels.kernel_math(name)(*args), function(*args), rtol=1e-14)


# -- one hand-written reward for the other tests -----------------------------------------------

FEATURES = {
    "theta": "atan2(obs[1], obs[0])",
    "speed": "sqrt(obs[3]**2 + obs[4]**2)",
    "effort": "act[0]**2 + act[1]**2",
    "height": "obs[2]",
    "tilt": "cos(obs[5])",
    "lost": "exp(next_obs[5]) - theta",
    "x_vel": "info.x_velocity",
}
TERMS = {
    "upright": "-1.0 * theta**2",
    "slow": "-0.1 * speed",
    "effort": "-0.001 * effort",
    "high": "2 * tanh(height)",
    "fallen": "-5 * (height < 0.2)",
    "level": "exp(-tilt**2)",
    "forward": "where(x_vel > 0, x_vel, 0.5 * x_vel)",
}
INFO = ("y_velocity", "x_velocity")


def parsed(features: dict[str, str], terms: dict[str, str]) -> tuple[list, list]:
    names: list[str] = []
    feature_exprs = []
    for name, text in features.items():
        feature_exprs.append((name, parse(text, names, allow_inputs=True)))
        names.append(name)
    return feature_exprs, [(name, parse(text, names)) for name, text in terms.items()]


def transitions(n: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, 6)), rng.normal(size=(n, 2)), rng.normal(size=(n, 6)),
            rng.normal(size=(n, 2)))


@pytest.fixture(scope="module")
def demo(cache_dir: Path) -> kernels.RewardKernels:
    return compile_reward(*parsed(FEATURES, TERMS), INFO, cache_dir=cache_dir)


def test_demo_reward_matches_numpy(demo: kernels.RewardKernels) -> None:
    obs, act, next_obs, info = transitions(1000)
    features, terms = parsed(FEATURES, TERMS)
    raw = {input_symbol("obs", k): obs[:, k] for k in range(6)}
    raw |= {input_symbol("act", k): act[:, k] for k in range(2)}
    raw |= {input_symbol("next_obs", 5): next_obs[:, 5], info_symbol("x_velocity"): info[:, 1]}
    expected_features, expected_terms = reference(features, terms, raw, 1000)
    assert_same(demo.feature_matrix(obs, act, next_obs, info), expected_features)
    assert_same(demo.term_columns(obs, act, next_obs, info), expected_terms)
    assert_same(demo.rewards(obs, act, next_obs, info), row_sums(expected_terms))
    assert demo.feature_names == tuple(FEATURES)
    assert demo.term_names == tuple(TERMS)
    assert demo.info_names == INFO


# Every function the kernels may call as a vector, nested up to three calls deep, and in the
# branch a row does not take (log of a negative number).
MATH_FEATURES = {
    "x": "obs[0]",
    "y": "obs[1]",
    "z": "act[0]",
    "angle": "atan2(y, x)",
    "wave": "sin(x) * cos(z)",
}
MATH_TERMS = {
    "bounded": "tanh(angle) * exp(-wave**2)",
    "slope": "atan2(y, 2)",  # sympy makes it atan(y/2)
    "log": "log(abs(x) + 0.001)",
    "root": "abs(y) ** 0.7",
    "fifth": "z ** 5",
    "nested": "exp(sin(exp(z)))",
    "branch": "where(x > 0, log(x), exp(x))",
}


def math_inputs(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of normal values and, at random rows, special ones."""
    rng = np.random.default_rng(3)
    obs, act = rng.normal(size=(n, 2)) * 3, rng.normal(size=(n, 1)) * 3
    for table in (obs, act):
        spots = rng.random(table.shape) < 0.1
        table[spots] = rng.choice(SPECIAL_INPUTS, size=spots.sum())
    return obs, act, np.empty((n, 0))


def test_every_vector_math_agrees_with_numpy(cache_dir: Path,
                                             vector_math: kernels.VectorMath) -> None:
    """With numpy's own functions (not the kernels'), on values where no formula magnifies
    last-bit differences."""
    features, terms = parsed(MATH_FEATURES, MATH_TERMS)
    compiled = compile_reward(features, terms, cache_dir=cache_dir)
    assert kernels.VECTOR_MATH is vector_math
    assert ("_block(" in compiled.source) == bool(vector_math.functions)  # the path is used
    n = 1003  # not a whole number of vectors or of chunks
    obs, act, next_obs = math_inputs(n)
    raw = {OBS0: obs[:, 0], OBS1: obs[:, 1], ACT0: act[:, 0]}
    expected_features, expected_terms = reference(features, terms, raw, n,
                                                  modules=[NUMPY_FUNCTIONS, "numpy"])
    assert_same(compiled.feature_matrix(obs, act, next_obs), expected_features)
    assert_same(compiled.term_columns(obs, act, next_obs), expected_terms)


def test_rows_get_the_same_bits_wherever_they_are(cache_dir: Path,
                                                 vector_math: kernels.VectorMath,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A row's reward does not depend on its place in a vector or chunk, on the number of
    threads, or on the kernel: the serial, serial chunked and parallel kernels and single()
    give the same bits."""
    compiled = compile_reward(*parsed(MATH_FEATURES, MATH_TERMS), cache_dir=cache_dir)
    n = 1003
    obs, act, next_obs = math_inputs(n)
    total = compiled.rewards(obs, act, next_obs)

    def assert_bits(actual: np.ndarray, expected: np.ndarray) -> None:
        # Every NaN counts as one: LLVM may pick either operand's NaN (and so its sign bit).
        actual, expected = (np.where(np.isnan(a), np.nan, a) for a in (actual, expected))
        np.testing.assert_array_equal(actual.view(np.uint64), expected.view(np.uint64))

    order = np.random.default_rng(4).permutation(n)
    assert_bits(compiled.rewards(obs[order], act[order], next_obs[order]), total[order])
    assert_bits(compiled.rewards(obs[5:12], act[5:12], next_obs[5:12]), total[5:12])
    for threads in (False, True):  # the chunked code on this thread, then numba's threads
        assert_bits(compiled.rewards(obs, act, next_obs, threads=threads), total)
        assert_bits(compiled.rewards(obs[5:12], act[5:12], next_obs[5:12], threads=threads),
                    total[5:12])
        assert_bits(compiled.term_columns(obs, act, next_obs, threads=threads),
                    compiled.term_columns(obs, act, next_obs))
        assert_bits(compiled.feature_matrix(obs, act, next_obs, threads=threads),
                    compiled.feature_matrix(obs, act, next_obs))
    monkeypatch.setattr(runtime, "PARALLEL_ROWS", 0)  # the parallel kernels from here on
    assert_bits(compiled.rewards(obs, act, next_obs), total)
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        assert_bits(compiled.rewards(obs, act, next_obs), total)
    finally:
        numba.set_num_threads(threads)
    assert_bits(np.array([compiled.single(obs[i], act[i], next_obs[i]) for i in range(n)]),
                total)


def kernel_source(source: str, name: str) -> str:
    match = re.search(rf"^def {name}\(.*?(?=^def |\Z)", source, flags=re.DOTALL | re.MULTILINE)
    assert match, f"no kernel {name} in the generated source"
    return match.group(0)


def test_unused_features_are_not_computed(demo: kernels.RewardKernels) -> None:
    for kernel, source in (("rewards", demo.source), ("term_columns", demo.source),
                           ("single", demo.single_source)):
        text = kernel_source(source, kernel)
        assert "f_theta = " in text
        assert "f_lost" not in text and "next_obs_5" not in text
    assert "f_lost = " in kernel_source(demo.source, "feature_matrix")
    # The fused kernel keeps features in locals: its only output is the reward vector.
    assert "numpy.empty(n)" in kernel_source(demo.source, "rewards")


def test_info_columns_follow_info_names(demo: kernels.RewardKernels) -> None:
    obs, act, next_obs, info = transitions(50)
    swapped = compile_reward(*parsed(FEATURES, TERMS), INFO[::-1], cache_dir=demo.path.parent)
    assert swapped is not demo
    np.testing.assert_array_equal(swapped.rewards(obs, act, next_obs, info[:, ::-1]),
                                  demo.rewards(obs, act, next_obs, info))
    with pytest.raises(DataError, match="info"):
        demo.rewards(obs, act, next_obs)
    with pytest.raises(ValueError, match="info must have 2 columns"):
        demo.rewards(obs, act, next_obs, info[:, :1])


def test_a_condition_nested_in_a_condition_branches_on_nan_as_numpy_does(
        cache_dir: Path) -> None:
    """sympy writes a Piecewise inside a condition as ``ITE(c, a, b)``. Where ``c`` compares
    a NaN it is false, so ``b`` decides; numpy's printer would rewrite it with ``~(x > y)`` as
    ``x <= y``, false too for NaN (found by the property test above, whose reference now
    branches as the kernels do)."""
    p, q = symbol("p"), symbol("q")
    inner = sympy.ITE(p > q, sympy.Ne(q, 0), sympy.Ne(sympy.tanh(q), 0))
    term = sympy.Piecewise((5.0, inner), (7.0, True))
    compiled = compile_reward([("p", OBS0), ("q", ACT0)], [("t", term)], (), cache_dir=cache_dir)
    obs = np.array([[np.nan, 0.0], [1.0, 0.0], [0.0, 0.0]])
    act = np.array([[np.inf], [0.0], [1.0]])
    expected = [5.0, 7.0, 5.0]  # NaN > inf is false and tanh(inf) != 0; 1 > 0 and q == 0
    np.testing.assert_array_equal(compiled.rewards(obs, act, obs), expected)
    raw = {OBS0: obs[:, 0], ACT0: act[:, 0]}
    np.testing.assert_array_equal(reference([("p", OBS0), ("q", ACT0)], [("t", term)], raw, 3)[1]
                                  [:, 0], expected)


def test_info_may_be_omitted_when_unused(cache_dir: Path) -> None:
    features, terms = parsed({"x": "obs[0]", "v": "info.v"}, {"a": "x**2"})
    compiled = compile_reward(features, terms, ["v"], cache_dir=cache_dir)
    obs = np.arange(6.0).reshape(3, 2)
    np.testing.assert_array_equal(compiled.rewards(obs, obs, obs), obs[:, 0] ** 2)
    assert compiled.single(obs[2], obs[2], obs[2]) == 16.0
    with pytest.raises(DataError, match="info"):
        compiled.feature_matrix(obs, obs, obs)


def test_float32_and_noncontiguous_inputs(demo: kernels.RewardKernels) -> None:
    obs, act, next_obs, info = (a.astype(np.float32) for a in transitions(200))
    expected = demo.rewards(*(a.astype(np.float64) for a in (obs, act, next_obs, info)))
    np.testing.assert_array_equal(demo.rewards(obs, act, next_obs, info), expected)
    fortran = [np.asfortranarray(a) for a in (obs, act, next_obs, info)]
    np.testing.assert_array_equal(demo.rewards(*fortran), expected)
    assert demo.single(obs[3], list(act[3]), next_obs[3], info[3]) == expected[3]


def test_read_only_inputs(demo: kernels.RewardKernels) -> None:
    arrays = transitions(30)
    expected = demo.rewards(*arrays)
    for array in arrays:
        array.setflags(write=False)
    np.testing.assert_array_equal(demo.rewards(*arrays), expected)
    assert demo.single(*(a[0] for a in arrays)) == expected[0]


def test_empty_input(demo: kernels.RewardKernels) -> None:
    obs, act, next_obs, info = (np.empty((0, 6)), np.empty((0, 2)), np.empty((0, 6)),
                                np.empty((0, 2)))
    assert demo.rewards(obs, act, next_obs, info).shape == (0,)
    assert demo.term_columns(obs, act, next_obs, info).shape == (0, len(TERMS))
    assert demo.feature_matrix(obs, act, next_obs, info).shape == (0, len(FEATURES))


def test_bad_shapes_raise_instead_of_reading_out_of_bounds(demo: kernels.RewardKernels) -> None:
    obs, act, next_obs, info = transitions(10)
    with pytest.raises(ValueError, match=r"obs must have at least 6 columns"):
        demo.rewards(obs[:, :5], act, next_obs, info)
    with pytest.raises(ValueError, match="as many rows"):
        demo.rewards(obs, act[:9], next_obs, info)
    with pytest.raises(ValueError, match=r"act must have at least 2 columns"):
        demo.single(obs[0], act[0, :1], next_obs[0], info[0])
    with pytest.raises(DataError, match="2-D"):
        demo.rewards(obs[:, 0], act, next_obs, info)


def test_single_matches_rewards_and_is_a_float(demo: kernels.RewardKernels) -> None:
    obs, act, next_obs, info = transitions(20)
    batch = demo.rewards(obs, act, next_obs, info)
    for i in range(20):
        value = demo.single(obs[i], act[i], next_obs[i], info[i])
        assert isinstance(value, float)
        assert value == batch[i]
    assert demo.single_raw(obs[0], act[0], next_obs[0], info[0]) == demo.single(
        obs[0], act[0], next_obs[0], info[0])


def test_memory_cache_returns_the_same_object(demo: kernels.RewardKernels) -> None:
    again = compile_reward(*parsed(FEATURES, TERMS), INFO, cache_dir=demo.path.parent)
    assert again is demo
    renamed = dict(TERMS)
    renamed["upright2"] = renamed.pop("upright")
    other = compile_reward(*parsed(FEATURES, renamed), INFO, cache_dir=demo.path.parent)
    assert other is not demo and other.term_names[-1] == "upright2"


def test_generated_module_is_written_beside_its_key(demo: kernels.RewardKernels) -> None:
    assert demo.path.name == f"reward_{demo.key[:16]}.py"
    assert demo.path.read_text(encoding="utf-8") == demo.source
    assert len(demo.key) == 64


SUBPROCESS = textwrap.dedent("""
    import json, sys, time
    start = time.perf_counter()
    from symreward.formula import parse
    from symreward import kernels as kernels_module
    from symreward.kernels import compile_reward
    features, terms, info, cache_dir = json.loads(sys.argv[1])
    names, feature_exprs = [], []
    for name, text in features.items():
        feature_exprs.append((name, parse(text, names, allow_inputs=True)))
        names.append(name)
    term_exprs = [(name, parse(text, names)) for name, text in terms.items()]
    compiled = compile_reward(feature_exprs, term_exprs, info, cache_dir=cache_dir)
    kernels = compiled.dispatchers().values()
    print(json.dumps({
        "math": kernels_module.VECTOR_MATH.name,
        "key": compiled.key,
        "hits": sum(sum(k.stats.cache_hits.values()) for k in kernels),
        "misses": sum(sum(k.stats.cache_misses.values()) for k in kernels),
    }))
""")


def in_new_process(features: dict[str, str], terms: dict[str, str], info: Sequence[str],
                   cache_dir: Path, **environment: str) -> dict:
    """compile_reward run by SUBPROCESS, with more environment variables."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **environment}
    result = subprocess.run(
        [sys.executable, "-c", SUBPROCESS, json.dumps([features, terms, info, str(cache_dir)])],
        capture_output=True, text=True, env=environment, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_new_process_loads_from_disk_without_compiling(tmp_path: Path) -> None:
    features = {**FEATURES, "bonus": "obs[0] * 3.5"}  # not compiled by any other test
    terms = {**TERMS, "bonus": "bonus"}
    compiled = compile_reward(*parsed(features, terms), INFO, cache_dir=tmp_path)
    compiled.dispatchers()
    # numba keeps its index and machine code beside the module, or under $NUMBA_CACHE_DIR
    saved = Path(numba.core.config.CACHE_DIR) if numba.core.config.CACHE_DIR else \
        tmp_path / "__pycache__"
    stem = compiled.path.stem
    assert list(saved.rglob(f"{stem}.*.nbi")) and list(saved.rglob(f"{stem}.*.nbc"))
    report = in_new_process(features, terms, INFO, tmp_path)
    every = len(KERNELS) + 1  # the batch kernels, their serial copies and single
    assert report == {"math": kernels.VECTOR_MATH.name, "key": compiled.key, "hits": every,
                      "misses": 0}
    # An edited number (as `symreward patch --set` makes) reuses the batch kernels' compiled
    # code; single, which has its numbers written in, compiles its own.
    edited = in_new_process({**features, "bonus": "obs[0] * 4.75"}, terms, INFO, tmp_path)
    assert edited == {**report, "hits": every - 1, "misses": 1}


def test_numbers_are_passed_at_run_time(cache_dir: Path) -> None:
    """Rewards that differ only in their numbers share one module and its compiled kernels,
    and each computes with its own numbers."""
    features = {"x": "obs[0]", "y": "act[0] - 0.25"}
    first = compile_reward(*parsed(features, {"a": "-1.5 * x**2", "b": "2 * (y > 0.3)"}),
                           cache_dir=cache_dir)
    second = compile_reward(*parsed({**features, "y": "act[0] - 0.75"},
                                    {"a": "-0.125 * x**2", "b": "2 * (y > -0.5)"}),
                            cache_dir=cache_dir)
    assert second.key == first.key and second.path == first.path
    assert second.dispatchers()["rewards_serial"] is first.dispatchers()["rewards_serial"]
    assert "0.125" not in second.source and "0.75" not in second.source
    obs, act, next_obs, _ = transitions(50)
    x, y = obs[:, 0], act[:, 0] - 0.75
    np.testing.assert_array_equal(second.rewards(obs, act, next_obs),
                                  -0.125 * (x * x) + 2 * (y > -0.5))
    np.testing.assert_array_equal(first.rewards(obs, act, next_obs),
                                  -1.5 * (x * x) + 2 * (act[:, 0] - 0.25 > 0.3))
    assert second.single(obs[0], act[0], next_obs[0]) == second.rewards(obs, act, next_obs)[0]


def test_each_kernel_is_compiled_on_first_use(tmp_path: Path) -> None:
    compiled = compile_reward(*parsed({"x": "obs[0]"}, {"a": "x * 1.125 + 7"}), cache_dir=tmp_path)
    saved = Path(numba.core.config.CACHE_DIR) if numba.core.config.CACHE_DIR else \
        tmp_path / "__pycache__"

    before = set(saved.rglob("*.nbi"))

    def saved_kernels() -> set[str]:
        """The kernels numba has saved since the test began (files module.kernel-line.*.nbi)."""
        return {path.name.split(".")[1].split("-")[0] for path in saved.rglob("*.nbi")
                if path not in before}

    assert saved_kernels() == set()
    obs, act, next_obs, _ = transitions(5)
    compiled.rewards(obs, act, next_obs)
    assert saved_kernels() == {"rewards_serial"}  # a small table: the serial copy
    assert compiled.single(obs[0], act[0], next_obs[0]) == obs[0, 0] * 1.125 + 7
    assert saved_kernels() == {"rewards_serial", "single"}


def test_code_for_another_cpu_gets_scalar_math_and_its_own_cache(tmp_path: Path) -> None:
    """numba building for a generic x86-64 CPU (as for a cache shared between machines) cannot
    pass vectors in AVX registers: that process takes the scalar path and a key of its own, so it
    compiles instead of loading the kernels built here, and the other way round."""
    compiled = compile_reward(*parsed(MATH_FEATURES, MATH_TERMS), cache_dir=tmp_path)
    report = in_new_process(MATH_FEATURES, MATH_TERMS, (), tmp_path, NUMBA_CPU_NAME="generic")
    assert report["math"] == "scalar"
    assert report["misses"] == len(KERNELS) + 1 and report["hits"] == 0
    assert (report["key"] == compiled.key) == (kernels.VECTOR_MATH.name == "scalar")


def test_unwritable_cache_dir_falls_back_with_a_warning(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    features, terms = parsed({"x": "obs[0]"}, {"a": "3 * x"})
    with pytest.warns(RuntimeWarning, match="not writable"):
        compiled = compile_reward(features, terms, cache_dir=blocker / "cache")
    assert not compiled.path.is_relative_to(blocker)
    assert compiled.single([2.0], [0.0], [0.0]) == 6.0


def test_cache_dir_defaults_to_the_environment(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(kernels.ENV_CACHE_DIR, str(tmp_path))
    features, terms = parsed({"x": "obs[0]"}, {"a": "4 * x"})
    compiled = compile_reward(features, terms)
    assert compiled.path.parent == tmp_path


def test_names_are_checked_and_mangled(cache_dir: Path) -> None:
    x = input_symbol("obs", 0)
    with pytest.raises(FeatureError, match="identifier"):
        compile_reward([("a; import os", x)], [], cache_dir=cache_dir)
    with pytest.raises(FeatureError, match="twice"):
        compile_reward([("a", x), ("a", x)], [], cache_dir=cache_dir)
    with pytest.raises(FeatureError, match="not one of its raw inputs and earlier features"):
        compile_reward([("a", symbol("b")), ("b", x)], [], cache_dir=cache_dir)
    with pytest.raises(FeatureError, match="not one of its features"):
        compile_reward([("a", x)], [("t", x)], cache_dir=cache_dir)
    with pytest.raises(FeatureError, match="info_names"):
        compile_reward([("a", info_symbol("z"))], [], ["y"], cache_dir=cache_dir)
    with pytest.raises(FeatureError, match="not one of its raw"):
        compile_reward([("a", symbol("obs[1]; import os"))], [], cache_dir=cache_dir)
    with pytest.raises(SymrewardError, match="cannot be compiled"):
        compile_reward([("a", sympy.asin(x))], [], cache_dir=cache_dir)
    # A non-ASCII name becomes a numbered local: Python folds some of them onto ASCII names.
    compiled = compile_reward([("θ", x), ("theta", 2 * x)],
                              [("t", symbol("θ") + symbol("theta"))], cache_dir=cache_dir)
    assert "f_0 = " in compiled.source and "f_theta = " in compiled.source
    assert compiled.single([1.5], [0.0], [0.0]) == 4.5


def test_shared_subexpressions_are_computed_once(cache_dir: Path,
                                                 vector_math: kernels.VectorMath) -> None:
    features, terms = parsed({"x": "obs[0]", "y": "obs[1]"},
                             {"a": "exp(sin(x) * y)", "b": "2 * exp(sin(x) * y)", "c": "sin(x)"})
    compiled = compile_reward(features, terms, cache_dir=cache_dir)
    for kernel, source in (("rewards", compiled.source), ("single", compiled.single_source)):
        text = kernel_source(source, kernel)
        for name in ("sin", "exp"):  # a scalar call, a vector call over a chunk, or over one row
            assert len(re.findall(rf"(numpy\.{name}|_{name}_block|_{name}_lane)\(", text)) == 1
    obs = np.array([[0.3, -2.0], [1.0, 4.0]])
    expected = 3 * np.exp(np.sin(obs[:, 0]) * obs[:, 1]) + np.sin(obs[:, 0])
    np.testing.assert_allclose(compiled.rewards(obs, obs, obs), expected, rtol=1e-15)


def test_constants_are_computed_on_doubles_like_numpy(cache_dir: Path,
                                                      vector_math: kernels.VectorMath) -> None:
    # exp(E) is exp of the double nearest e, as numpy computes it, not the double nearest exp(e):
    # those differ in the last bit, and cos(1e150 * x) would turn that into any value.
    x = symbol("x")
    terms = [("a", sympy.exp(sympy.E) * x), ("b", sympy.sin(1) * x), ("c", sympy.pi * x / 2),
             ("d", sympy.exp(1000) * x), ("e", x ** sympy.Rational(1, 3)),
             ("f", sympy.cos(10 ** 150 * sympy.exp(sympy.E) * x)), ("g", -sympy.oo * x)]
    compiled = compile_reward([("x", input_symbol("obs", 0))], terms, cache_dir=cache_dir)
    obs = np.array([[1.0], [-8.0], [0.0]])
    x = obs[:, 0]
    exp, sin, cos, power = (kernels.kernel_math(name) for name in ("exp", "sin", "cos", "power"))
    with np.errstate(all="ignore"):
        expected = np.column_stack([exp(math.e) * x, sin(1.0) * x, 0.5 * math.pi * x,
                                    np.inf * x, power(x, 1 / 3),
                                    cos(1e150 * exp(math.e) * x), -np.inf * x])
    np.testing.assert_array_equal(compiled.term_columns(obs, obs, obs), expected)


def test_no_terms_is_a_zero_reward(cache_dir: Path) -> None:
    compiled = compile_reward([("x", input_symbol("obs", 0))], [], cache_dir=cache_dir)
    obs = np.ones((4, 1))
    np.testing.assert_array_equal(compiled.rewards(obs, obs, obs), np.zeros(4))
    assert compiled.term_columns(obs, obs, obs).shape == (4, 0)
    assert compiled.single(obs[0], obs[0], obs[0]) == 0.0


_EDGES = np.array([0.0, -0.0, 1.0, -1.0, 0.5, 3.0, -2.5, 1e-200, 5e-324, 1e154, 1e300, np.inf,
                   -np.inf, np.nan])


def test_the_scalar_helpers_give_numpys_bits_on_signed_zeros_nan_and_overflow() -> None:
    """The intrinsics behind ``x**2``, ``x**3``, ``x**4``, ``min`` and ``max`` in the kernels
    compute what the Python they replaced did: products in the same order, numpy's choice of
    operand (the first when it is NaN or strictly beyond; signed zeros keep their order)."""
    from symreward.kernels.scalars import max2, min2, pow2, pow3, pow4

    @numba.njit
    def helpers(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        out = np.empty((5, x.size))
        for i in range(x.size):
            out[0, i] = pow2(x[i])
            out[1, i] = pow3(x[i])
            out[2, i] = pow4(x[i])
            out[3, i] = min2(x[i], y[i])
            out[4, i] = max2(x[i], y[i])
        return out

    x, y = (a.ravel() for a in np.meshgrid(_EDGES, _EDGES))
    with np.errstate(all="ignore"):
        square = x * x
        expected = np.stack([square, square * x, square * square, np.minimum(x, y),
                             np.maximum(x, y)])
    actual = helpers(x, y)
    finite = ~np.isnan(expected)
    np.testing.assert_array_equal(np.isnan(actual), ~finite)
    np.testing.assert_array_equal(actual[finite].view(np.uint64),
                                  expected[finite].view(np.uint64))
