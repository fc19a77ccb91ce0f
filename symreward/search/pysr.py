"""The optional PySR engine: PySR (Cranmer 2023) searches whole reward formulas under the
objective's own loss, and its hall of fame becomes term sets for the learner to refit.

PySR runs Julia through juliacall, whose LLVM clashes with numba's, so the search runs in a
subprocess (``symreward.search._pysr_worker``): this module writes the inputs as ``.npy`` and
``.json`` into a temporary folder, runs the worker under a wall-clock limit and reads back the
hall-of-fame CSV. Nothing in this process imports pysr.

How each objective becomes a PySR loss (``julia_loss`` writes the Julia text):

* ``preferences`` and ``rankings`` (every ordered pair of ranked segments, label 1): a full
  objective (PySR's ``loss_function``) over segment sums. The pair structure travels in PySR's
  own ``y`` and ``weights``, so the loss text does not depend on the data: the rows are, pair
  after pair, the transitions of segment a (``y`` = the pair's label, in [0, 1]) followed by those
  of segment b (``y`` = -1), and ``weights`` hold each step's discount. Batching stays off, since
  a batch would split segments.
* ``demonstrations``: a full objective, the balanced positive-unlabeled logistic loss with the
  reward as the logit (``y`` = 1 on expert transitions). The non-negative PU risk with a class
  prior is not offered.
* ``rewards``: the elementwise squared error.

Julia is never downloaded: ``check_available`` requires pysr >= 1.0 and an existing Julia >= 1.10
before anything starts, and the worker runs with juliapkg and Julia's package manager offline.
Each hall-of-fame equation is translated from Julia syntax and parsed by ``formula.parse`` (a
whitelist, nothing is evaluated), its top-level sum split into terms without their coefficients
and without constants: the learner refits the weights.
"""

from __future__ import annotations

import csv
import importlib.metadata
import importlib.util
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sympy

import symreward
from symreward import formula, validation
from symreward.errors import EngineUnavailable, FormulaError, OptionError, SymrewardError
from symreward.objectives import (
    DemonstrationObjective,
    Objective,
    PreferenceObjective,
    RankingObjective,
    RewardLabelObjective,
)
from symreward.search._pysr_worker import UNAVAILABLE

SUPPORTED_OBJECTIVES = ("preferences", "rankings", "demonstrations", "rewards")
MIN_JULIA = (1, 10)
MIN_PYSR = (1, 0)
# Operators PySR may use; each has a counterpart in the formula language (see _JULIA_CALLS).
BINARY_OPERATORS = ("+", "-", "*", "/")
UNARY_OPERATORS = ("square", "cube", "abs", "sqrt", "exp", "log", "sin", "cos", "tanh")
MAXSIZE = 20
# PySR evaluates every row for every candidate (no batching), so larger data are subsampled:
# whole pairs for the pair objectives, transitions otherwise. PySR only proposes structure; the
# learner refits and scores it on all the data.
MAX_ROWS = 50_000
DEFAULT_TIME_LIMIT = 600.0
# Julia's start and the compilation of the search take minutes on a first run.
STARTUP_ALLOWANCE = 600.0
VERSION_TIMEOUT = 5.0
RUN_ID = "run"

_HOW_TO_INSTALL = (
    "The pysr engine needs Julia >= 1.10 (the `julia` on PATH, the one named by "
    "PYTHON_JULIAPKG_EXE, or one juliapkg installed earlier) and `pip install 'symreward[pysr]'`, "
    "with PySR's Julia packages installed once while online (`python -c 'import pysr'`); "
    "symreward never downloads them. Or use --engine evolve.")


def check_available() -> None:
    """Raise ``EngineUnavailable`` (within seconds, downloading nothing) unless pysr >= 1.0 is
    installed and a Julia >= 1.10 executable exists."""
    _require_pysr()
    _require_julia()


def _require_pysr() -> None:
    # find_spec and the metadata look at files only: importing pysr would start Julia.
    if importlib.util.find_spec("pysr") is None:
        raise EngineUnavailable(f"the pysr package is not installed. {_HOW_TO_INSTALL}")
    try:
        version = importlib.metadata.version("pysr")
    except importlib.metadata.PackageNotFoundError:
        return  # importable from a source tree, without metadata: its version cannot be told
    if _leading_numbers(version) < MIN_PYSR:
        raise EngineUnavailable(f"pysr {version} is installed; the pysr engine needs pysr >= 1.0. "
                                f"{_HOW_TO_INSTALL}")


def _require_julia() -> str:
    """The Julia executable to run PySR with, once its version is checked."""
    julia = _find_julia()
    if julia is None:
        raise EngineUnavailable(f"no Julia executable was found. {_HOW_TO_INSTALL}")
    found = _julia_version(julia)
    if found < MIN_JULIA:
        raise EngineUnavailable(f"{julia} is Julia {'.'.join(map(str, found))}; PySR needs Julia "
                                f">= 1.10. {_HOW_TO_INSTALL}")
    return julia


def _find_julia() -> str | None:
    """The Julia juliapkg would pick without installing one: ``PYTHON_JULIAPKG_EXE`` if set,
    else one juliapkg installed into its project, else ``julia`` on PATH."""
    override = os.environ.get("PYTHON_JULIAPKG_EXE")
    if override:
        return override
    installed = _juliapkg_julia()
    return installed or shutil.which("julia")


def _juliapkg_julia() -> str | None:
    if importlib.util.find_spec("juliapkg") is None:
        return None
    try:
        # Reading juliapkg's state only looks at environment variables and paths; it raises
        # on a configuration juliapkg itself would refuse.
        from juliapkg.state import STATE
    except Exception:
        return None
    install = STATE.get("install")
    if not install:
        return None
    executable = Path(install, "bin", "julia.exe" if os.name == "nt" else "julia")
    return str(executable) if executable.is_file() else None


def _julia_version(julia: str) -> tuple[int, ...]:
    try:
        result = subprocess.run([julia, "--version"], capture_output=True, text=True,
                                stdin=subprocess.DEVNULL, timeout=VERSION_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise EngineUnavailable(f"{julia} --version did not answer within {VERSION_TIMEOUT:g} s. "
                                f"{_HOW_TO_INSTALL}") from None
    except OSError as exc:
        raise EngineUnavailable(f"{julia} cannot be run ({exc.strerror}). "
                                f"{_HOW_TO_INSTALL}") from None
    match = re.search(r"julia version (\d+)\.(\d+)", result.stdout)
    if result.returncode != 0 or match is None:
        raise EngineUnavailable(f"{julia} --version does not answer like Julia "
                                f"({(result.stdout + result.stderr).strip()[:200]!r}). "
                                f"{_HOW_TO_INSTALL}")
    return int(match[1]), int(match[2])


def _leading_numbers(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:2])


# ------------------------------------------------------------------------------------------
# The Julia losses.

_PAIR_LOSS = """\
function symreward_preference_loss(tree, dataset::Dataset{T,L}, options)::L where {T,L}
    # Rows, pair after pair: segment a (y = the pair's label, in [0, 1]), then segment b
    # (y = -1); weights hold each step's discount. Written by symreward.search.pysr.
    reward, complete = eval_tree_array(tree, dataset.X, options)
    complete || return L(Inf)
    y = dataset.y
    w = dataset.weights
    n = dataset.n
    total = zero(L)
    pairs = 0
    i = 1
    @inbounds while i <= n
        label = y[i]
        z = zero(T)
        while i <= n && y[i] >= 0
            z += w[i] * reward[i]
            i += 1
        end
        while i <= n && y[i] < 0
            z -= w[i] * reward[i]
            i += 1
        end
{pair_loss}
        pairs += 1
    end
    return total / pairs
end
"""

_EXACT_PAIR_LOSS = """\
        # -(p log σ(z) + (1-p) log σ(-z)) = softplus(-z) + (1-p) z, where
        # softplus(x) = max(x, 0) + log1p(exp(-|x|)) is finite for every z
        total += L(max(-z, zero(T)) + log1p(exp(-abs(z))) + (1 - label) * z)"""

_NOISY_PAIR_LOSS = """\
        # P(a preferred) = ε/2 + (1-ε) σ(z), with ε = {noise}; σ(±z) from exp(-|z|) so
        # nothing overflows, and both probabilities stay >= ε/2, so their logs are finite
        e = exp(-abs(z))
        s_a = z >= 0 ? 1 / (1 + e) : e / (1 + e)
        s_b = z >= 0 ? e / (1 + e) : 1 / (1 + e)
        q_a = T({half}) + T({keep}) * s_a
        q_b = T({half}) + T({keep}) * s_b
        total += L(-(label * log(q_a) + (1 - label) * log(q_b)))"""

_DEMONSTRATION_LOSS = """\
function symreward_demonstration_loss(tree, dataset::Dataset{T,L}, options)::L where {T,L}
    # y is 1 on expert transitions and 0 on unlabeled ones; the reward is the logit of the
    # expert-vs-unlabeled classifier, and each class weighs half. Written by symreward.
    logit, complete = eval_tree_array(tree, dataset.X, options)
    complete || return L(Inf)
    expert = zero(L)
    unlabeled = zero(L)
    n_expert = 0
    n_unlabeled = 0
    @inbounds for i in 1:dataset.n
        z = logit[i]
        # -log σ(±z) = softplus(∓z) = max(∓z, 0) + log1p(exp(-|z|)), finite for every z
        if dataset.y[i] > 0.5
            expert += L(max(-z, zero(T)) + log1p(exp(-abs(z))))
            n_expert += 1
        else
            unlabeled += L(max(z, zero(T)) + log1p(exp(-abs(z))))
            n_unlabeled += 1
        end
    end
    return (expert / max(n_expert, 1) + unlabeled / max(n_unlabeled, 1)) / 2
end
"""

_SQUARED_ERROR = "symreward_squared_error(prediction, target) = (prediction - target)^2\n"

# Which PySRRegressor option takes each objective's loss text.
_LOSS_OPTION = {"preferences": "loss_function", "rankings": "loss_function",
                "demonstrations": "loss_function", "rewards": "elementwise_loss"}


def julia_loss(objective: str, *, noise: float = 0.0) -> str:
    """The Julia text of the loss PySR minimises for ``objective``: a full objective
    ``(tree, dataset::Dataset{T,L}, options)`` for the pair objectives and demonstrations, an
    elementwise ``(prediction, target)`` loss for rewards. ``noise`` is the preference label
    noise ε: P(a preferred) = ε/2 + (1-ε) σ(z)."""
    if objective not in SUPPORTED_OBJECTIVES:
        raise SymrewardError(f"the pysr engine supports the objectives "
                             f"{', '.join(SUPPORTED_OBJECTIVES)}, not {objective!r}")
    validation.number("noise", noise, 0.0, 1.0, high_open=True)
    if noise and objective != "preferences":
        raise OptionError("noise", noise, f"label noise applies to preferences, not to "
                                          f"{objective}")
    if objective == "demonstrations":
        return _DEMONSTRATION_LOSS
    if objective == "rewards":
        return _SQUARED_ERROR
    pair_loss = (_NOISY_PAIR_LOSS.format(noise=repr(float(noise)), half=repr(noise / 2),
                                         keep=repr(1.0 - noise))
                 if noise else _EXACT_PAIR_LOSS)
    return _PAIR_LOSS.replace("{pair_loss}", pair_loss)


# ------------------------------------------------------------------------------------------
# Reading the hall of fame.

# PySR operators whose names are not in the formula language: the text written before the
# argument and after it. ``safe_*`` is how older SymbolicRegression.jl releases print them.
_JULIA_CALLS = {
    "square": ("((", ")**2)"),
    "cube": ("((", ")**3)"),
    "neg": ("(-(", "))"),
    "safe_sqrt": ("sqrt(", ")"),
    "safe_log": ("log(", ")"),
}
_CALL_OR_PARENTHESIS = re.compile(r"\b([A-Za-z_]\w*)\s*\(|[()]")


def julia_to_formula(equation: str) -> str:
    """PySR's equation text in the formula language's syntax: ``^`` becomes ``**`` and PySR's
    operator names become formulas (``square(x)`` → ``((x)**2)``). Purely textual; the result
    still has to pass ``formula.parse``."""
    pieces: list[str] = []
    closers: list[str] = []
    last = 0
    for match in _CALL_OR_PARENTHESIS.finditer(equation):
        pieces.append(equation[last:match.start()])
        last = match.end()
        if match[0] == ")":
            # An unmatched parenthesis is copied, for the parser to report.
            pieces.append(closers.pop() if closers else ")")
            continue
        name = match[1]
        opening, closing = (("(", ")") if name is None
                            else _JULIA_CALLS.get(name, (f"{name}(", ")")))
        pieces.append(opening)
        closers.append(closing)
    pieces.append(equation[last:])
    return "".join(pieces).replace("^", "**")


def hall_of_fame_terms(path: str | Path, feature_names: Sequence[str]) -> list[list[sympy.Expr]]:
    """The additive terms of each equation in a PySR hall-of-fame CSV (columns Complexity,
    Loss, Equation), simplest equation first; duplicates and equations without a term (a
    constant) are left out.

    Terms are sympy expressions over ``formula.symbol(name)`` without their numeric
    coefficients; pure constants are dropped. An equation outside the formula language is an
    error naming the file and line; nothing in the file is evaluated."""
    path = Path(path)
    names = list(feature_names)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SymrewardError(f"{path}: cannot read the PySR hall of fame ({exc})") from None
    reader = csv.DictReader(io.StringIO(text))
    equations: list[tuple[int, list[sympy.Expr]]] = []
    try:
        missing = {"Complexity", "Equation"} - set(reader.fieldnames or ())
        if missing:
            raise SymrewardError(f"{path}: not a PySR hall of fame: no column "
                                 f"{', '.join(sorted(missing))} (expected "
                                 "Complexity,Loss,Equation)")
        for row in reader:
            equations.append((_complexity(path, reader.line_num, row["Complexity"]),
                              _terms(path, reader.line_num, row["Equation"] or "", names)))
    except csv.Error as exc:
        raise SymrewardError(f"{path}: line {reader.line_num}: {exc}") from None
    equations.sort(key=lambda entry: entry[0])
    result: list[list[sympy.Expr]] = []
    for _, terms in equations:
        if terms and terms not in result:
            result.append(terms)
    return result


def _complexity(path: Path, line: int, value: str | None) -> int:
    try:
        return int(value or "")
    except ValueError:
        raise SymrewardError(f"{path}: line {line}: Complexity {value!r} is not an "
                             "integer") from None


def _terms(path: Path, line: int, equation: str, names: list[str]) -> list[sympy.Expr]:
    if len(equation) > formula.MAX_LENGTH:
        raise SymrewardError(f"{path}: line {line}: the equation is {len(equation)} characters "
                             f"long; the limit is {formula.MAX_LENGTH}")
    translated = julia_to_formula(equation)
    try:
        expr = formula.parse(translated, names)
    except FormulaError as exc:
        read_as = f" (read as {translated!r})" if translated != equation else ""
        raise SymrewardError(f"{path}: line {line}: equation {equation!r}{read_as} is not in "
                             f"the formula language: {exc}") from None
    # PySR's ``x ^ 2.0`` reads as a float power; the learner's terms use integer powers.
    expr = expr.replace(_integral_float_power, lambda p: sympy.Pow(p.base, int(p.exp)))
    terms: list[sympy.Expr] = []
    for part in sympy.Add.make_args(expr):
        _, term = part.as_coeff_Mul()
        if term.free_symbols:
            terms.append(term)
    return terms


def _integral_float_power(expr: sympy.Basic) -> bool:
    return (isinstance(expr, sympy.Pow) and isinstance(expr.exp, sympy.Float)
            and float(expr.exp).is_integer())


# ------------------------------------------------------------------------------------------
# Running a search.

@dataclass
class Layout:
    """What PySR sees: ``rows`` of the feature matrix (all when None), ``y`` and ``weights``."""

    rows: np.ndarray | None
    y: np.ndarray
    weights: np.ndarray | None = None


def propose(objective: Objective, matrix: np.ndarray, feature_names: Sequence[str], *,
            seed: int = 0, time_limit: float | None = None, population: int | None = None,
            generations: int | None = None, units: np.ndarray | None = None
            ) -> list[list[sympy.Expr]]:
    """Term sets proposed by a PySR search under ``objective``: the hall of fame, simplest first.

    ``matrix`` holds the features (one row per transition of ``objective.dataset``, one column
    per name); the search sees only the objective's ``units`` (all by default), so the others
    can judge what it proposes. ``time_limit`` bounds the search in seconds
    (``DEFAULT_TIME_LIMIT`` when None); ``population`` is PySR's ``population_size``,
    ``generations`` its ``niterations``. The run is serial and deterministic for a seed when it
    ends by generations rather than by time.
    Raises ``EngineUnavailable`` when pysr or Julia is missing."""
    _require_pysr()
    julia = _require_julia()
    names = list(feature_names)
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.shape != (objective.dataset.n, len(names)):
        raise ValueError(f"the feature matrix has shape {matrix.shape}; expected "
                         f"({objective.dataset.n}, {len(names)}) for the dataset and names")
    validation.number("time_limit", time_limit, 0.0, low_open=True, optional=True)
    seen = layout(objective, np.random.default_rng(seed), units)
    X = matrix if seen.rows is None else matrix[seen.rows]
    bad = ~np.isfinite(X).all(axis=0)
    if bad.any():
        raise SymrewardError(f"feature {names[int(np.argmax(bad))]!r} is not finite on every "
                             "transition PySR would see")
    # PySR gets neutral names: feature names may clash with Julia or sympy names.
    neutral = [f"x{k}" for k in range(len(names))]
    search_seconds = DEFAULT_TIME_LIMIT if time_limit is None else float(time_limit)
    with tempfile.TemporaryDirectory(prefix="symreward-pysr-") as tmp:
        folder = Path(tmp)
        np.save(folder / "X.npy", X)
        np.save(folder / "y.npy", seen.y)
        if seen.weights is not None:
            np.save(folder / "weights.npy", seen.weights)
        noise = objective.noise if isinstance(objective, PreferenceObjective) else 0.0
        options = _pysr_options(objective.name, julia_loss(objective.name, noise=noise), folder,
                                seed=seed, search_seconds=search_seconds, population=population,
                                generations=generations)
        config = {"options": options, "variable_names": neutral}
        (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
        _run_worker(folder, julia, search_seconds + STARTUP_ALLOWANCE)
        hall_of_fame = folder / RUN_ID / "hall_of_fame.csv"
        if not hall_of_fame.is_file():
            raise SymrewardError("the PySR search finished without writing a hall of fame")
        proposals = hall_of_fame_terms(hall_of_fame, neutral)
    rename = {formula.symbol(n): formula.symbol(name) for n, name in zip(neutral, names,
                                                                       strict=True)}
    return [[term.xreplace(rename) for term in terms] for terms in proposals]


def _pysr_options(objective: str, loss: str, folder: Path, *, seed: int, search_seconds: float,
                  population: int | None, generations: int | None) -> dict[str, object]:
    options: dict[str, object] = {
        "binary_operators": list(BINARY_OPERATORS),
        "unary_operators": list(UNARY_OPERATORS),
        "maxsize": MAXSIZE,
        _LOSS_OPTION[objective]: loss,
        # A batch would split segments, and the pair losses read the rows in order.
        "batching": False,
        "precision": 64,
        "timeout_in_seconds": search_seconds,
        # PySR is reproducible only serially, with a fixed seed.
        "parallelism": "serial",
        "deterministic": True,
        "random_state": seed,
        "verbosity": 0,
        "progress": False,
        # The worker has no terminal; PySR would otherwise poll stdin for a 'q'.
        "input_stream": "devnull",
        "output_directory": str(folder),
        "run_id": RUN_ID,
    }
    if population is not None:
        options["population_size"] = population
    if generations is not None:
        options["niterations"] = generations
    return options


def layout(objective: Objective, rng: np.random.Generator,
           units: np.ndarray | None = None) -> Layout:
    """The rows PySR sees for ``objective`` on its ``units`` (all by default), as the loss
    ``julia_loss`` writes reads them (see the module doc): larger data are subsampled with
    ``rng`` to at most ``MAX_ROWS`` rows, by whole pairs for the pair objectives. Raises
    ``SymrewardError`` for an objective PySR has no loss for."""
    if isinstance(objective, PreferenceObjective):
        prefs = objective.dataset.preferences
        pairs = objective.members(units)
        return _pair_layout(prefs.a[pairs], prefs.b[pairs], prefs.label[pairs],
                            objective.discount, rng)
    if isinstance(objective, RankingObjective):
        ranked = objective.members(units)
        scores = objective.scores[ranked]
        better, worse = np.nonzero(scores[:, None] > scores[None, :])
        segments = np.asarray(objective.dataset.rankings.segments, dtype=np.int64)[ranked]
        return _pair_layout(segments[better], segments[worse], np.ones(len(better)),
                            objective.discount, rng)
    if isinstance(objective, DemonstrationObjective):
        if objective.class_prior is not None:
            raise SymrewardError("the pysr engine has no non-negative PU loss for "
                                 "demonstrations with a class prior; leave the class prior out "
                                 "or use --engine evolve")
        return _row_layout(objective.target, rng, objective.members(units))
    if isinstance(objective, RewardLabelObjective):
        return _row_layout(objective.target, rng, objective.members(units))
    raise SymrewardError(f"the pysr engine supports the objectives "
                         f"{', '.join(SUPPORTED_OBJECTIVES)}, not {objective.name!r}")


def _pair_layout(a: np.ndarray, b: np.ndarray, labels: np.ndarray, discount: float,
                 rng: np.random.Generator) -> Layout:
    """Rows for the pair loss: each pair's segment a then its segment b (see the module doc)."""
    a = np.asarray(a, dtype=np.int64).reshape(-1, 2)
    b = np.asarray(b, dtype=np.int64).reshape(-1, 2)
    labels = np.asarray(labels, dtype=np.float64)
    length_a, length_b = a[:, 1] - a[:, 0], b[:, 1] - b[:, 0]
    if (length_a <= 0).any() or (length_b <= 0).any():
        # An empty segment would merge its pair with the next one in the loss's reading.
        raise SymrewardError("a preference segment is empty (stop <= start)")
    total = int((length_a + length_b).sum())
    if total > MAX_ROWS:
        keep = max(1, len(labels) * MAX_ROWS // total)
        chosen = np.sort(rng.choice(len(labels), keep, replace=False))
        a, b, labels = a[chosen], b[chosen], labels[chosen]
    segments = np.empty((2 * len(labels), 2), dtype=np.int64)
    segments[0::2], segments[1::2] = a, b
    lengths = segments[:, 1] - segments[:, 0]
    steps = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    rows = np.repeat(segments[:, 0], lengths) + steps
    side_a = np.repeat(np.arange(len(segments)) % 2 == 0, lengths)
    y = np.where(side_a, np.repeat(np.repeat(labels, 2), lengths), -1.0)
    return Layout(rows, y, np.power(float(discount), steps))


def _row_layout(target: np.ndarray, rng: np.random.Generator, rows: np.ndarray) -> Layout:
    target = np.asarray(target, dtype=np.float64)
    if len(rows) == len(target) <= MAX_ROWS:
        return Layout(None, target)
    if len(rows) > MAX_ROWS:
        rows = np.sort(rng.choice(rows, MAX_ROWS, replace=False))
    return Layout(rows, target[rows])


def _run_worker(folder: Path, julia: str, wall_clock: float) -> None:
    env = dict(os.environ)
    # Pin the Julia that was checked, and keep juliapkg and Julia's package manager from
    # downloading anything: a missing piece is an error, never a silent install.
    env.setdefault("PYTHON_JULIAPKG_EXE", julia)
    env["PYTHON_JULIAPKG_OFFLINE"] = "yes"
    env["JULIA_PKG_OFFLINE"] = "true"
    package_root = str(Path(symreward.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    log_path = folder / "worker.log"
    with log_path.open("wb") as log, subprocess.Popen(
            [sys.executable, "-m", "symreward.search._pysr_worker", str(folder)], env=env,
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True) as process:
        try:
            status = process.wait(timeout=wall_clock)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            raise SymrewardError(f"the PySR search did not finish within {wall_clock:g} s and "
                                 "was stopped") from None
        except BaseException:
            # Ctrl-C reaches only this process: the worker leads its own session.
            _kill_group(process)
            raise
    tail = _tail(log_path)
    if status == UNAVAILABLE:
        raise EngineUnavailable(f"PySR could not start Julia or its packages: {tail}\n"
                                f"{_HOW_TO_INSTALL}")
    if status != 0:
        raise SymrewardError(f"the PySR search failed (exit status {status}); its last "
                             f"output:\n{tail}")


def _kill_group(process: subprocess.Popen) -> None:
    # The worker leads its own session, so this also stops anything Julia started.
    if hasattr(os, "killpg"):
        os.killpg(process.pid, signal.SIGKILL)
    else:
        process.kill()
    process.wait()


def _tail(path: Path, lines: int = 20, limit: int = 3000) -> str:
    text = path.read_text(encoding="utf-8", errors="replace").strip()
    return "\n".join(text.splitlines()[-lines:])[-limit:]
