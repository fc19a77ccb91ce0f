"""Exported rewards (numpy, pure Python, C, LaTeX) compute what the kernels compute.

The numpy and Python exports are run here (exec'd in a fresh namespace: running the code it
generated is the point), the C export is compiled with the system compiler and loaded with
ctypes. The checks against ``artifact.evaluate`` use the kernels as they are (glibc's vector math
where this machine has it); the property test makes the math library the same on both sides
(the kernels' scalar math is the C library's, as C and Python's math module use it, and the
numpy export's exp, sin, ... are swapped for the kernels') and then asks for the same bits.
"""

from __future__ import annotations

import ast
import ctypes
import hashlib
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from symreward.artifact import RewardArtifact
from symreward.data import Dataset
from symreward.errors import ArtifactError, OptionError
from symreward.evaluate import info_matrix
from symreward.export import FORMATS, export
from symreward.kernels import kernel_math, vecmath

EXAMPLE = Path(__file__).parent.parent / "examples" / "pendulum" / "reward.toml"

HEADER = 'schema = "symreward/1"\nname = "{name}"\n\n[features]\n'

# Between them, every function and operator of the formula language, powers of each kind
# (multiplied, through pow, fractional, symbolic), features of features, info fields (one read
# only by an unused feature, which still has its place in C's info array), constants.
ARTIFACTS = {
    "pendulum": EXAMPLE.read_text(),
    "smooth": HEADER.format(name="smooth") + """\
x = "obs[0]"
y = "act[1]"
z = "next_obs[3]"
r = "sqrt(x**2 + y**2)"

[[terms]]
name = "waves"
expr = "0.75 * sin(x) * cos(y) - 0.3 * tanh(2 * z)"

[[terms]]
name = "growth"
expr = "0.05 * exp(-x**2) + 0.2 * log(1 + r) - sigmoid(z - y) / 3"

[[terms]]
name = "angles"
expr = "atan2(y, x) + 0.1 * atan2(z, 2) - pi * x / 8 + exp(1) * 0.01"

[[terms]]
name = "powers"
expr = "0.01 * x**3 - 0.002 * y**4 + 1e-4 * z**5 + 0.1 / (1 + r**2) + 0.2 * (1 + r)**-1.5"

[[terms]]
name = "roots"
expr = "0.05 * sqrt(1 + abs(z)) + 0.02 * (2 + sin(x))**(0.5 * cos(y)) + 0.1 * (1 + x**2)**-2"
""",
    "piecewise": HEADER.format(name="piecewise") + """\
speed = "info.speed"
height = "info.height"
gap = "next_obs[0] - obs[0]"
push = "act[0]"
ratio = "clip(gap / (1 + abs(push)), -1, 1)"
never = "info.aaa_unused"

[[terms]]
name = "bounds"
expr = "min(speed, 2) - max(height, 0.5) + clip(push, -0.5, 0.5) + min(gap, push, ratio)"

[[terms]]
name = "switches"
expr = "where(height > 0.3, speed, -speed) + where(gap, 1, 0.25) + (speed >= 0) * (height <= 1)"

[[terms]]
name = "signs"
expr = "0.5 * (gap > 0) - (push < 0)"

[[terms]]
name = "band"
expr = "-(0 < speed) * (speed < 1) * ratio**2 + where(abs(ratio) < 0.9, 0, -1)"
""",
    # Division by zero, logs of 0 and of negatives, roots of negatives, overflow.
    "edges": HEADER.format(name="edges") + """\
x = "obs[0]"
y = "obs[1]"
z = "act[0]"

[[terms]]
name = "reciprocal"
expr = "1 / x + x**-3 - 2 / (y * z) + 1 / sqrt(abs(x))"

[[terms]]
name = "logs"
expr = "log(abs(x)) + log(y)"

[[terms]]
name = "roots"
expr = "sqrt(y) + abs(z)**0.3 + y**0.7 + x**y"

[[terms]]
name = "overflow"
expr = "exp(z) + exp(-z) + sigmoid(100 * z) + z**7 + (0.5 * z)**-5"
""",
    # Names that are keywords or library names in an exported language, and non-ASCII names.
    "names": HEADER.format(name="names: \\\"quoted\\\" */ %") + """\
"θ" = "obs[0]"
double = "act[0]"
numpy = "info.größe"
reward = "next_obs[1] * θ"
n = "obs[2]"

[[terms]]
name = "höhe"
expr = "θ**2 + double"

[[terms]]
name = "int"
expr = "numpy * n - reward"
""",
}


@pytest.fixture(scope="module", params=list(ARTIFACTS))
def artifact(request: pytest.FixtureRequest) -> RewardArtifact:
    return RewardArtifact.loads(ARTIFACTS[request.param], source=f"{request.param}.toml")


@dataclass(frozen=True)
class Transitions:
    """Raw transitions as every export takes them (a ``Dataset`` holds no NaN or infinity)."""

    obs: np.ndarray
    act: np.ndarray
    next_obs: np.ndarray
    infos: dict[str, np.ndarray]

    @property
    def n(self) -> int:
        return len(self.obs)

    def dataset(self) -> Dataset:
        return Dataset(observations=self.obs, actions=self.act, next_observations=self.next_obs,
                       terminals=np.zeros(self.n, bool), timeouts=np.zeros(self.n, bool),
                       infos=self.infos)


def transitions(n: int, seed: int = 0, values: np.ndarray | None = None) -> Transitions:
    """Random transitions (obs and next_obs of width 4, act of width 2, the info fields the
    artifacts read); ``values`` draws every number from a list instead."""
    rng = np.random.default_rng(seed)

    def draw(*shape: int) -> np.ndarray:
        return rng.normal(size=shape) if values is None else rng.choice(values, size=shape)

    return Transitions(draw(n, 4), draw(n, 2), draw(n, 4),
                       {name: draw(n) for name in ("speed", "height", "aaa_unused", "größe")})


def kernel_values(artifact: RewardArtifact, data: Transitions) -> tuple[np.ndarray, np.ndarray]:
    """The rewards and term columns the artifact's kernels compute."""
    kernels = artifact.compile()
    arguments = (data.obs, data.act, data.next_obs,
                 info_matrix(data.infos, kernels.info_names, data.n))
    return kernels.rewards(*arguments), kernels.term_columns(*arguments)


def namespace(code: str) -> dict[str, Any]:
    """The module an exported file defines, run in a fresh namespace."""
    scope: dict[str, Any] = {}
    exec(compile(code, "<export>", "exec"), scope)  # the test runs the code it generated
    return scope


def python_rows(scope: dict[str, Any], data: Transitions, function: str = "reward"
                ) -> list[Any]:
    """The Python export's ``function`` of each transition (as a list, a tuple, a numpy row)."""
    return [scope[function](list(data.obs[i]), tuple(data.act[i]), data.next_obs[i],
                            {name: float(column[i]) for name, column in data.infos.items()})
            for i in range(data.n)]


def c_compiler() -> str:
    compiler = shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if compiler is None:
        pytest.skip("no C compiler (cc, gcc or clang) on PATH to compile the C export")
    return compiler


class CReward:
    """The C export compiled into a shared library: ``reward`` and ``reward_terms`` of every
    transition of a dataset, its info columns in ``info_names`` order."""

    def __init__(self, code: str, directory: Path):
        # A file of its own per code: a process loads a library of a given path once.
        stem = hashlib.sha256(code.encode()).hexdigest()[:16]
        source, library = directory / f"{stem}.c", directory / f"{stem}.so"
        source.write_text(code)
        # -Werror: the export compiles cleanly as strict C99. No -ffast-math; no contraction
        # into fused multiply-adds, as the export's comment says.
        subprocess.run([c_compiler(), "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror",
                        "-O2", "-ffp-contract=off", "-fPIC", "-shared", "-o", str(library),
                        str(source), "-lm"], check=True, capture_output=True, text=True)
        self.library = ctypes.CDLL(str(library))
        self.library.reward.restype = ctypes.c_double
        self.terms = ctypes.c_int.in_dll(self.library, "reward_n_terms").value
        names = (ctypes.c_char_p * self.terms).in_dll(self.library, "reward_term_names")
        self.term_names = [name.decode() for name in names]

    def evaluate(self, data: Transitions, info_names: list[str]
                 ) -> tuple[np.ndarray, np.ndarray]:
        info = np.column_stack([data.infos[name] for name in info_names] or
                               [np.zeros(data.n)])
        pointer = ctypes.POINTER(ctypes.c_double)
        rewards, columns = np.empty(data.n), np.empty((data.n, self.terms))
        for i in range(data.n):
            rows = [np.ascontiguousarray(table[i], dtype=np.float64) for table in
                    (data.obs, data.act, data.next_obs, info)]
            rewards[i] = self.library.reward(*(row.ctypes.data_as(pointer) for row in rows))
            self.library.reward_terms(*(row.ctypes.data_as(pointer) for row in rows),
                                      columns[i].ctypes.data_as(pointer))
        return rewards, columns


def assert_agrees(actual: np.ndarray, expected: np.ndarray, scale: np.ndarray | float) -> None:
    """Within 1e-12 of ``expected``, relative to the larger of |expected| and ``scale``, with the
    same NaN and infinities. ``scale`` is the size of what was added to get ``expected`` (a sum
    that cancels keeps its summands' rounding), at least 1: the inputs are of order 1, and a
    last-bit difference of exp or sin stays of the order of 1e-16 where a result near 0
    cancels."""
    actual = np.asarray(actual, dtype=np.float64)
    assert actual.shape == expected.shape
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected), err_msg="NaN pattern")
    np.testing.assert_array_equal(np.where(np.isinf(expected), expected, 0),
                                  np.where(np.isinf(actual), actual, 0), err_msg="infinities")
    finite = np.isfinite(expected)
    bound = 1e-12 * np.maximum(np.abs(expected), np.maximum(scale, 1.0))[finite]
    error = np.abs(actual[finite] - expected[finite])
    assert np.all(error <= bound), f"worst error {np.max(error / bound):.3g} times the bound"


def check_all(artifact: RewardArtifact, data: Transitions, expected: np.ndarray,
              columns: np.ndarray, tmp_path: Path) -> None:
    """Every code export's rewards and terms against the kernels' ``expected`` and
    ``columns``."""
    with np.errstate(all="ignore"):
        scale = np.nansum(np.abs(np.where(np.isinf(columns), 0, columns)), axis=1)
    arguments = (data.obs, data.act, data.next_obs, data.infos)

    numpy_code = namespace(export(artifact, "numpy"))
    assert_agrees(numpy_code["reward"](*arguments), expected, scale)
    terms = numpy_code["terms"](*arguments)
    assert list(terms) == artifact.term_names
    assert_agrees(np.column_stack(list(terms.values())), columns, 1.0)

    python_code = namespace(export(artifact, "python"))
    assert_agrees(np.array(python_rows(python_code, data)), expected, scale)
    python_terms = python_rows(python_code, data, "terms")
    assert all(list(row) == artifact.term_names for row in python_terms)
    assert_agrees(np.array([list(row.values()) for row in python_terms]), columns, 1.0)

    compiled = CReward(export(artifact, "c"), tmp_path)
    assert compiled.term_names == artifact.term_names
    rewards, c_columns = compiled.evaluate(data, artifact.features.info_names())
    assert_agrees(rewards, expected, scale)
    assert_agrees(c_columns, columns, 1.0)


# -- the exports compute the kernels' reward -------------------------------------------------


def test_exports_agree_with_the_kernels_on_random_transitions(artifact: RewardArtifact,
                                                              tmp_path: Path) -> None:
    data = transitions(400, seed=1)
    evaluation = artifact.evaluate(data.dataset())
    check_all(artifact, data, evaluation.rewards, evaluation.term_columns, tmp_path)


SPECIAL_VALUES = np.array([0.0, -0.0, 1e-300, -1e-8, 0.5, -1.0, 2.0, 3.5, -7.25, 30.0, 710.0,
                           -746.0, 1e6, -1e150, 1e300, np.inf, -np.inf, np.nan])


def test_exports_give_the_kernels_nan_and_infinities(artifact: RewardArtifact,
                                                     tmp_path: Path) -> None:
    """Division by zero, log of 0 and of negatives, overflow, NaN in min/max/where/comparisons:
    the same NaN and infinities everywhere (pure Python's math would raise on most)."""
    data = transitions(300, seed=2, values=SPECIAL_VALUES)
    rewards, columns = kernel_values(artifact, data)
    assert np.isnan(rewards).any() and np.isfinite(rewards).any()  # the inputs reach both
    check_all(artifact, data, rewards, columns, tmp_path)


# -- the property: the same bits, over random formulas --------------------------------------

RAW = ["obs[0]", "obs[1]", "act[0]", "next_obs[1]", "info.v"]
# Floats only: sympy folds a function of a float into the correctly rounded double, the same
# for every export, where a function of an integer (sin(3)) would be left for each compiler to
# fold (gcc correctly rounded, the C library sometimes not).
NUMBERS = ["0.5", "2.5", "-1.25", "3.0", "0.001", "1e6"]


def formulas(names: list[str]) -> st.SearchStrategy[str]:
    def extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        unary = st.sampled_from(["abs", "sqrt", "exp", "log", "sin", "cos", "tanh", "sigmoid"])
        binary = st.sampled_from(["+", "-", "*", "/", "<", "<=", ">", ">=", "min", "max",
                                  "atan2"])
        return st.one_of(
            st.builds("{}({})".format, unary, inner),
            st.builds("-({})".format, inner),
            st.builds(lambda op, a, b: f"{op}({a}, {b})" if op.isalpha() else f"({a}) {op} ({b})",
                      binary, inner, inner),
            st.builds("({})**{}".format, inner, st.integers(-4, 4)),
            st.builds("where({}, {}, {})".format, inner, inner, inner),
            st.builds("clip({}, {}, {})".format, inner, inner, inner),
        )

    return st.recursive(st.sampled_from(names + NUMBERS), extend, max_leaves=6)


@st.composite
def artifact_texts(draw: st.DrawFn) -> str:
    """Features over raw inputs and over an earlier feature, and two to four terms."""
    features = {"p": "obs[0]", "q": "act[0]", "f": draw(formulas(RAW)),
                "g": draw(formulas([*RAW, "f"]))}
    terms = "".join(f'\n[[terms]]\nname = "t{k}"\nexpr = "{draw(formulas(list(features)))}"\n'
                    for k in range(draw(st.integers(2, 4))))
    return HEADER.format(name="drawn") + "".join(
        f'{name} = "{formula}"\n' for name, formula in features.items()) + terms


class _KernelNumpy:
    """numpy with the exp, log, sin, ... the kernels compute (``kernel_math``)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)

    def __init__(self) -> None:
        for name in ("exp", "log", "sin", "cos", "tanh", "arctan", "arctan2"):
            setattr(self, name, kernel_math(name))


@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(text=artifact_texts(),
       table=arrays(np.float64, (16, 5), elements=st.one_of(
           st.sampled_from(list(SPECIAL_VALUES)),
           st.floats(-50, 50, allow_nan=False, allow_subnormal=False))))
def test_exports_compute_the_kernels_bits(text: str, table: np.ndarray, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        artifact = RewardArtifact.loads(text)
    except ArtifactError:  # constants folded out of the language (1/0, a complex sqrt, ...)
        reject()
    # The kernels' scalar math is the C library's: the one C and Python's math call.
    monkeypatch.setattr(vecmath, "VECTOR_MATH", vecmath.VECTOR_MATH_OPTIONS[-1])
    data = Transitions(table[:, :2], table[:, 2:3],
                       np.column_stack([np.zeros(len(table)), table[:, 3]]), {"v": table[:, 4]})
    expected, columns = kernel_values(artifact, data)

    def assert_bits(actual: Any, expected: np.ndarray) -> None:
        assert np.array_equal(np.asarray(actual, dtype=np.float64), expected, equal_nan=True)

    numpy_code = namespace(export(artifact, "numpy"))
    numpy_code["numpy"] = _KernelNumpy()
    arguments = (data.obs, data.act, data.next_obs, data.infos)
    assert_bits(numpy_code["reward"](*arguments), expected)
    assert_bits(np.column_stack(list(numpy_code["terms"](*arguments).values())), columns)
    assert_bits(python_rows(namespace(export(artifact, "python")), data), expected)
    c_rewards, c_columns = CReward(export(artifact, "c"), tmp_path).evaluate(data, ["v"])
    assert_bits(c_rewards, expected)
    assert_bits(c_columns, columns)


# -- what the files hold ----------------------------------------------------------------------


def imported_modules(code: str) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            modules.add(node.module or "")
    return modules


def test_exports_stand_alone(artifact: RewardArtifact) -> None:
    assert imported_modules(export(artifact, "numpy")) == {"numpy"}
    assert imported_modules(export(artifact, "python")) == {"math"}
    c_code = export(artifact, "c")
    assert re.findall(r"^\s*#\s*include.*$", c_code, flags=re.MULTILINE) == ["#include <math.h>"]


def test_every_export_starts_with_the_artifact_and_the_info_order(
        artifact: RewardArtifact) -> None:
    for to in FORMATS:
        code = export(artifact, to)
        comment = {"numpy": "#", "python": "#", "c": " *", "latex": "%"}[to]
        head = code.split("\n\n")[0] if to != "c" else code.split("*/")[0]
        assert artifact.content_hash() in head and f'"{artifact.source}"' in head
        names = artifact.features.info_names()
        order = ", ".join(f"{k}: {name}" for k, name in enumerate(names)) or "none"
        assert f"{comment} Info fields, in order: {order}." in head
        assert export(artifact, to) == code  # the same text every time


def test_unused_features_are_left_out_and_named() -> None:
    artifact = RewardArtifact.loads(ARTIFACTS["piecewise"], source="piecewise.toml")
    for to in FORMATS:
        code = export(artifact, to)
        assert "Features the reward does not use are left out: never." in code
        assert "f_never" not in code and r"\mathrm{never}" not in code


def braces_balance(text: str) -> bool:
    depth = 0
    for char in re.sub(r"\\[{}]", "", text):
        depth += {"{": 1, "}": -1}.get(char, 0)
        if depth < 0:
            return False
    return depth == 0


def test_latex_holds_the_reward_its_terms_and_features(artifact: RewardArtifact) -> None:
    latex = export(artifact, "latex")
    body = latex[latex.index(r"\begin{align*}"):]
    assert body.rstrip().endswith(r"\end{align*}") and braces_balance(body)
    assert body.count(r"\left") == body.count(r"\right")
    assert body.count(r"\begin{cases}") == body.count(r"\end{cases}")
    rows = [row.strip() for row in body.splitlines()[1:-1]]
    names = [name.replace("_", r"\_") for name in artifact.term_names]
    assert rows[0] == "r &= " + " + ".join(rf"r_{{\mathrm{{{name}}}}}" for name in names) + r" \\"
    for name, row in zip(names, rows[1:], strict=False):
        assert row.startswith(rf"r_{{\mathrm{{{name}}}}} &= ")
    used = artifact.features.dependencies(sorted(
        {s.name for expr in artifact.term_exprs() for s in expr.free_symbols}))
    defined = [row.split(" &= ")[0] for row in rows[len(names) + 1:]]
    assert defined == [rf"\mathrm{{{name.replace('_', chr(92) + '_')}}}" for name in used]


def test_latex_of_the_example_reads_as_written() -> None:
    latex = export(RewardArtifact.load(EXAMPLE), "latex")
    assert r"r_{\mathrm{upright}} &= - \mathrm{theta}^{2} \\" in latex
    assert r"\mathrm{theta} &= \operatorname{atan2}\left({s_{1}}, {s_{0}}\right) \\" in latex
    assert r"\mathrm{torque} &= {a_{0}}" in latex


# -- the exported functions' own checks -------------------------------------------------------


def test_the_numpy_and_python_exports_name_missing_info_fields() -> None:
    artifact = RewardArtifact.loads(ARTIFACTS["piecewise"])
    data = transitions(3)
    arguments = (data.obs, data.act, data.next_obs)
    for to, call in (("numpy", lambda f: f(*arguments)),
                     ("python", lambda f: f(*(table[0] for table in arguments)))):
        with pytest.raises(ValueError, match="reads info fields height, speed"):
            call(namespace(export(artifact, to))["reward"])


def test_the_numpy_export_checks_its_tables() -> None:
    reward = namespace(export(RewardArtifact.load(EXAMPLE), "numpy"))["reward"]
    with pytest.raises(ValueError, match="obs must be a 2-D array with at least 3 columns"):
        reward(np.zeros((5, 2)), np.zeros((5, 1)), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="same number of rows"):
        reward(np.zeros((5, 3)), np.zeros((4, 1)), np.zeros((5, 3)))
    assert reward(np.zeros((0, 3)), np.zeros((0, 1)), np.zeros((0, 3))).shape == (0,)


# -- the library's and the command line's errors ----------------------------------------------


def test_export_takes_a_path_and_refuses_other_languages(tmp_path: Path) -> None:
    assert export(EXAMPLE, "python") == export(RewardArtifact.load(EXAMPLE), "python")
    with pytest.raises(OptionError, match="must be one of numpy, python, c, latex"):
        export(EXAMPLE, "fortran")
    with pytest.raises(ArtifactError, match="no such file"):
        export(tmp_path / "missing.toml", "c")


def test_cli_writes_the_file(tmp_path: Path, cli: Callable[..., Any]) -> None:
    result = cli("export", EXAMPLE, "--to", "c", "-o", tmp_path / "reward.c")
    assert result.returncode == 0, result.stderr
    code = (tmp_path / "reward.c").read_text()
    assert code == export(EXAMPLE, "c")
    assert f"wrote {tmp_path / 'reward.c'}: c code of pendulum-v1-true" in result.stdout
    assert [p.name for p in tmp_path.iterdir()] == ["reward.c"]  # no temporary file left


def test_cli_prints_without_output(cli: Callable[..., Any]) -> None:
    result = cli("export", EXAMPLE, "--to", "latex")
    assert result.returncode == 0 and result.stdout == export(EXAMPLE, "latex")


def test_cli_rejects_bad_input(tmp_path: Path, cli: Callable[..., Any]) -> None:
    bad_to = cli("export", EXAMPLE, "--to", "fortran")
    assert bad_to.returncode == 2 and "invalid choice: 'fortran'" in bad_to.stderr
    missing = cli("export", tmp_path / "missing.toml", "--to", "c")
    assert missing.returncode == 2
    assert f"symreward export: error: {tmp_path / 'missing.toml'}: no such file" in missing.stderr
    broken = tmp_path / "broken.toml"
    broken.write_text('schema = "symreward/1"\n[features]\nx = "obs[0]"\n[[terms]]\nname = "t"\n'
                      'expr = "__import__(\'os\')"\n')
    unreadable = cli("export", broken, "--to", "numpy", "-o", tmp_path / "out.py")
    assert unreadable.returncode == 2 and "Traceback" not in unreadable.stderr
    assert str(broken) in unreadable.stderr and not (tmp_path / "out.py").exists()
    folder = cli("export", EXAMPLE, "--to", "c", "-o", tmp_path / "no" / "reward.c")
    assert folder.returncode == 2 and "does not exist" in folder.stderr
