"""Peer symbolic-regression engines for ``benchmarks/evolve.py``: gplearn and pyoperon.

    pip install -e ".[bench]"        # gplearn>=0.4.3, pyoperon>=0.6
    PYTHONPATH=. python benchmarks/evolve_peers.py     # smoke run on synthetic data

* :func:`run_gplearn` — gplearn's ``SymbolicRegressor`` searching the *same* Bradley–Terry
  objective as ``symreward.search.evolve``, through a custom ``make_fitness``: a program's output
  over all N rows is the per-transition reward r, ``z = difference @ r`` are the segment-return
  differences and the loss is ``mean(softplus(-z) + (1 - p) * z)``. Reports candidate
  evaluations per second and the time at which a target loss was first reached.
* :func:`gplearn_tree` — a gplearn program as a symreward expression tree, so that the *same*
  candidates can be timed in both engines' evaluators (``benchmarks/evolve.py peers``).
* :func:`run_pyoperon` — pyoperon's scikit-learn ``SymbolicRegressor`` on the ``rewards``
  objective (plain regression of reward labels): time to solution and R².

Operators, in symreward's names, and what each peer runs for them:

=========  =================================  ==========================================
ours       gplearn                            pyoperon
=========  =================================  ==========================================
add sub    add sub                            add sub
mul        mul                                mul
div        div (x/y; 1 where abs(y) <= 1e-3)  div (plain; non-finite fitness = worst)
sqrt       sqrt (sqrt(abs(x)))                sqrtabs (sqrt(abs(x)), as gplearn)
abs        abs                                abs
exp        exp = exp(min(x, 50)) (ours)       exp
log        log (log(abs(x)); 0 if <= 1e-3)    logabs (log(abs(x)), as gplearn)
sin cos    sin cos                            sin cos
tanh       tanh = numpy.tanh (ours)           tanh
min max    min max                            fmin fmax
neg        neg                                (sub)
=========  =================================  ==========================================

gplearn has no exp or tanh, so they are built with ``make_function``; exp is clipped because
gplearn requires closed (finite) functions and an unclipped exp overflows on deep programs.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from importlib import metadata
from typing import Any

import numpy as np
import scipy.sparse as sp

FUNCTION_SET = ("add", "sub", "mul", "div", "sqrt", "abs", "exp", "log", "sin", "cos", "tanh")

# A program whose reward is NaN/inf, or whose loss is, gets this loss: finite (gplearn's
# tournament compares with argmin, where NaN would win) and worse than any real loss.
BAD_LOSS = 1e12

# exp's argument is clipped here: exp(50) ~ 5e21 keeps sums of many rows finite.
EXP_CLIP = 50.0

_GPLEARN_BUILTIN = {"add", "sub", "mul", "div", "sqrt", "abs", "log", "sin", "cos", "tan",
                    "neg", "inv", "max", "min"}
_PYOPERON_SYMBOL = {"add": "add", "sub": "sub", "mul": "mul", "div": "div", "sqrt": "sqrtabs",
                    "abs": "abs", "exp": "exp", "log": "logabs", "sin": "sin", "cos": "cos",
                    "tan": "tan", "tanh": "tanh", "min": "fmin", "max": "fmax"}


def bradley_terry_loss(difference: sp.csr_matrix, labels: np.ndarray, r: np.ndarray) -> float:
    """Mean Bradley–Terry cross-entropy of per-transition rewards ``r``.

    ``softplus(-z) + (1 - p) z`` equals ``-p log σ(z) - (1 - p) log(1 - σ(z))`` without
    evaluating log σ of a large negative z.
    """
    z = difference @ r
    return float(np.mean(np.logaddexp(0.0, -z) + (1.0 - labels) * z))


def _version(distribution: str) -> str:
    return f"{distribution} {metadata.version(distribution)}"


def _protected_exp(x: np.ndarray) -> np.ndarray:
    return np.exp(np.minimum(x, EXP_CLIP))


def _gplearn_functions(function_set: Sequence[str]) -> list[Any]:
    """gplearn function objects (builtin names, or ``make_function`` ones) for our names."""
    from gplearn.functions import make_function

    custom = {
        # wrap=False: the run is single-process (n_jobs=1), so nothing is pickled, and
        # joblib's cloudpickle wrapper would add a call layer to every node evaluation.
        "exp": make_function(function=_protected_exp, name="exp", arity=1, wrap=False),
        "tanh": make_function(function=np.tanh, name="tanh", arity=1, wrap=False),
    }
    functions: list[Any] = []
    for name in function_set:
        if name in custom:
            functions.append(custom[name])
        elif name in _GPLEARN_BUILTIN:
            functions.append(name)
        else:
            raise ValueError(f"operator {name!r} has no gplearn equivalent")
    return functions


def run_gplearn(X: np.ndarray, difference: sp.csr_matrix, labels: np.ndarray, *,
                population: int, generations: int, seed: int,
                function_set: Sequence[str] = FUNCTION_SET,
                target_loss: float | None = None, time_limit: float | None = None,
                stop_at_target: bool = False, parsimony: float = 0.001,
                feature_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Evolve a reward with gplearn under the Bradley–Terry loss; time it.

    Every fitness call is one candidate program evaluated on all N rows (``max_samples=1.0``,
    so gplearn neither subsamples rows nor makes a second, out-of-bag call). ``time_limit``
    (seconds) is checked between generations — gplearn has no time limit of its own — so a run
    can overshoot it by one generation. ``stop_at_target`` ends the run after the generation
    in which ``target_loss`` was reached (as gplearn's ``stopping_criteria`` would).
    """
    try:
        from gplearn.fitness import make_fitness
        from gplearn.genetic import SymbolicRegressor
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise RuntimeError(f"gplearn is not installed: {error}") from error

    X = np.ascontiguousarray(X, dtype=np.float64)
    difference = sp.csr_matrix(difference, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    n_rows = X.shape[0]
    if difference.shape != (labels.shape[0], n_rows):
        raise ValueError(f"difference must have shape (pairs, N) = ({labels.shape[0]}, "
                         f"{n_rows}), got {difference.shape}")

    # Time-stamping each call (one perf_counter and two appends, ~0.2 µs against ~1 ms for a
    # program on 20k rows) gives the time to target at the candidate that reached it, without
    # changing how gplearn runs.
    stamps: list[float] = []
    losses: list[float] = []

    def bradley_terry(y: np.ndarray, y_pred: np.ndarray, sample_weight: np.ndarray) -> float:
        if y_pred.shape[0] != n_rows:
            # make_fitness probes the function once on length-2 arrays; that is not a
            # candidate and cannot be multiplied by `difference`.
            return 0.0
        if not np.all(np.isfinite(y_pred)):
            loss = BAD_LOSS
        else:
            with np.errstate(all="ignore"):
                loss = bradley_terry_loss(difference, labels, y_pred)
            if not math.isfinite(loss):
                loss = BAD_LOSS
        stamps.append(time.perf_counter())
        losses.append(loss)
        return loss

    # wrap=False: no pickling at n_jobs=1 (see _gplearn_functions).
    metric = make_fitness(function=bradley_terry, greater_is_better=False, wrap=False)
    estimator = SymbolicRegressor(
        population_size=population, generations=1, function_set=_gplearn_functions(function_set),
        metric=metric, parsimony_coefficient=parsimony, max_samples=1.0,
        feature_names=list(feature_names) if feature_names is not None else None,
        # low_memory: keep only the last generation instead of every program's lineage, the
        # bookkeeping cost of which grows with generations and has nothing to do with search.
        warm_start=True, low_memory=True, n_jobs=1, random_state=seed, verbose=0)
    dummy_y = np.zeros(n_rows)  # the fitness ignores y: the labels live in the closure

    # One generation per fit() call with warm_start: measured on 20k rows x 500 programs x 10
    # generations it costs the same as one fit(generations=10) (5.55 s vs 5.60 s), and it lets
    # us stop on the wall clock between generations.
    start = time.perf_counter()
    for generation in range(1, generations + 1):
        estimator.set_params(generations=generation)
        estimator.fit(X, dummy_y)
        if time_limit is not None and time.perf_counter() - start >= time_limit:
            break
        if stop_at_target and target_loss is not None and min(losses) <= target_loss:
            break
    seconds = time.perf_counter() - start

    time_to_target = None
    if target_loss is not None:
        reached = np.flatnonzero(np.asarray(losses) <= target_loss)
        if reached.size:
            time_to_target = stamps[reached[0]] - start
    # gplearn keeps no elite: its model is the best program of the *last* generation, which
    # can be worse than the best one ever evaluated (``best_loss``); report both.
    with np.errstate(all="ignore"):
        formula_loss = bradley_terry_loss(difference, labels, estimator._program.execute(X))
    return {
        "evaluations": len(losses),
        "seconds": seconds,
        "evaluations_per_second": len(losses) / seconds if seconds > 0 else float("nan"),
        "best_loss": float(min(losses)),
        "time_to_target": time_to_target,
        "generations": len(estimator.run_details_["generation"]),
        "formula": str(estimator._program),
        "formula_loss": formula_loss,
        "library": _version("gplearn"),
        # Not JSON: the programs of the last generation, to time the same candidates elsewhere.
        "last_generation": list(estimator._programs[-1]),
    }


def gplearn_tree(program: Any) -> tuple:
    """gplearn's program (prefix list of functions, feature indices and constants) as a tree
    of ``symreward.search.trees`` that runs the same operations: ``sqrt`` and ``log`` of the
    absolute value and ``exp`` of ``min(x, EXP_CLIP)``, as gplearn's functions do. gplearn's
    division and log also return 1 and 0 where the argument is within 1e-3 of zero; the tree
    does not, so the two agree except on programs that divide by, or take the log of, a value
    that small on some row."""
    from symreward.search import trees

    direct = {"add": trees.ADD, "sub": trees.SUB, "mul": trees.MUL, "div": trees.DIV,
              "max": trees.MAX, "min": trees.MIN, "abs": trees.ABS, "sin": trees.SIN,
              "cos": trees.COS, "tanh": trees.TANH}
    nodes = iter(program.program)

    def build() -> tuple:
        node = next(nodes)
        if isinstance(node, (int, np.integer)):
            return (trees.FEATURE, int(node))
        if isinstance(node, (float, np.floating)):
            return (trees.CONST, float(node))
        args = [build() for _ in range(node.arity)]
        if node.name == "sqrt":
            return (trees.SQRT, 0.0, (trees.ABS, 0.0, args[0]))
        if node.name == "log":
            return (trees.LOG, 0.0, (trees.ABS, 0.0, args[0]))
        if node.name == "exp":
            return (trees.EXP, 0.0, (trees.MIN, 0.0, args[0], (trees.CONST, EXP_CLIP)))
        if node.name == "neg":
            return (trees.SUB, 0.0, (trees.CONST, 0.0), args[0])
        if node.name not in direct:
            raise ValueError(f"gplearn function {node.name!r} has no symreward operator")
        return (direct[node.name], 0.0, *args)

    return build()


def _r2(y: np.ndarray, y_pred: np.ndarray) -> float:
    residual = float(np.sum((y - y_pred) ** 2))
    total = float(np.sum((y - np.mean(y)) ** 2))
    return 1.0 - residual / total if total > 0 else float("nan")


def run_pyoperon(X: np.ndarray, y: np.ndarray, *, population: int, generations: int, seed: int,
                 time_limit: float | None = None, function_set: Sequence[str] = FUNCTION_SET,
                 X_test: np.ndarray | None = None, y_test: np.ndarray | None = None,
                 feature_names: Sequence[str] | None = None,
                 n_threads: int = 1) -> dict[str, Any]:
    """Fit reward labels ``y`` by pyoperon's ``SymbolicRegressor``; time it and score R².

    Library defaults otherwise (objective R² with linear scaling, no coefficient optimisation:
    ``optimizer_iterations=0``). ``max_evaluations`` is lifted so ``generations`` (or
    ``time_limit``) is what ends the run. pyoperon's ``max_time`` is whole seconds, so
    ``time_limit`` is rounded up. ``n_threads=1`` by default, like the single-process gplearn run.
    """
    try:
        from pyoperon.sklearn import SymbolicRegressor
    except ImportError as error:
        raise RuntimeError(f"pyoperon is not installed or does not import: {error}") from error

    try:
        symbols = [_PYOPERON_SYMBOL[name] for name in function_set]
    except KeyError as error:
        raise ValueError(f"operator {error.args[0]!r} has no pyoperon equivalent") from None
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    estimator = SymbolicRegressor(
        allowed_symbols=",".join([*symbols, "constant", "variable"]),
        population_size=population, generations=generations,
        max_evaluations=population * (generations + 1) * 10,
        max_time=None if time_limit is None else max(1, math.ceil(time_limit)),
        random_state=seed, n_threads=n_threads)

    start = time.perf_counter()
    estimator.fit(X, y)
    seconds = time.perf_counter() - start

    result: dict[str, Any] = {
        "seconds": seconds,
        "evaluations": int(estimator.stats_["evaluation_count"]),
        "generations": int(estimator.stats_["generations"]),
        "r2": _r2(y, estimator.predict(X)),
        "r2_test": None,
        "formula": estimator.get_model_string(
            estimator.model_, precision=4,
            names=list(feature_names) if feature_names is not None else None),
        "library": _version("pyoperon"),
    }
    result["evaluations_per_second"] = result["evaluations"] / seconds if seconds > 0 else None
    if X_test is not None and y_test is not None:
        result["r2_test"] = _r2(np.asarray(y_test, dtype=np.float64),
                                estimator.predict(np.asarray(X_test, dtype=np.float64)))
    return result


def _synthetic(n_rows: int = 5000, n_pairs: int = 300, length: int = 20,
               seed: int = 0) -> tuple[np.ndarray, np.ndarray, sp.csr_matrix, np.ndarray]:
    """Features, true reward ``-x0**2 - 0.5*abs(x1)`` (x2 is a distractor), the (pairs x N)
    difference matrix of random length-``length`` segments and Bernoulli labels drawn from the
    Bradley–Terry probabilities of the true segment returns."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-2.0, 2.0, size=(n_rows, 3))
    reward = -X[:, 0] ** 2 - 0.5 * np.abs(X[:, 1])
    starts = rng.integers(0, n_rows - length + 1, size=(n_pairs, 2))
    offsets = np.arange(length)
    rows = np.repeat(np.arange(n_pairs), 2 * length)
    cols = np.concatenate([starts[:, :1] + offsets, starts[:, 1:] + offsets], axis=1).ravel()
    signs = np.tile(np.repeat([1.0, -1.0], length), n_pairs)
    # coo -> csr sums duplicates, so rows shared by both segments of a pair cancel.
    difference = sp.coo_matrix((signs, (rows, cols)), shape=(n_pairs, n_rows)).tocsr()
    probability = 1.0 / (1.0 + np.exp(-(difference @ reward)))
    labels = (rng.random(n_pairs) < probability).astype(np.float64)
    return X, reward, difference, labels


def main() -> None:
    X, reward, difference, labels = _synthetic()
    true_loss = bradley_terry_loss(difference, labels, reward)
    print(f"true reward's Bradley–Terry loss: {true_loss:.4f}")
    gplearn_result = run_gplearn(X, difference, labels, population=200, generations=5, seed=0,
                                 function_set=FUNCTION_SET, target_loss=true_loss + 0.05,
                                 feature_names=["x0", "x1", "x2"])
    gplearn_result.pop("last_generation")
    print("gplearn :", gplearn_result)
    split = len(X) * 4 // 5
    try:
        operon_result: Any = run_pyoperon(X[:split], reward[:split], population=200,
                                          generations=5, seed=0, X_test=X[split:],
                                          y_test=reward[split:], feature_names=["x0", "x1", "x2"])
    except RuntimeError as error:
        operon_result = f"unavailable: {error}"
    print("pyoperon:", operon_result)


if __name__ == "__main__":
    main()
