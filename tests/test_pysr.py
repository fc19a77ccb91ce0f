"""The PySR engine without Julia: the generated Julia losses, the row layout they read, the
hall-of-fame reader, the availability checks and the worker plumbing (with a stand-in pysr
package). Where Julia is installed the losses are also run; where PySR is, a tiny search."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
import support
import sympy
from support import true_reward

from symreward.data import (
    Dataset,
    bradley_terry_preferences,
    rankings_from_rewards,
)
from symreward.errors import EngineUnavailable, SymrewardError
from symreward.formula import symbol
from symreward.objectives import (
    DemonstrationObjective,
    PreferenceObjective,
    RankingObjective,
    RewardLabelObjective,
)
from symreward.search import pysr as engine

posix_only = pytest.mark.skipif(os.name != "posix", reason="uses POSIX shell scripts")
SLEEP = shutil.which("sleep")


def random_walk(seed: int = 0) -> Dataset:
    return support.random_walk(n=400, seed=seed, obs_dim=2)


def preference_objective(noise=0.0, discount=1.0, seed=0, n_pairs=60):
    dataset = random_walk(seed=seed)
    prefs = bradley_terry_preferences(dataset, true_reward(dataset), n_pairs, 8, seed=seed,
                                      soft=True)
    return PreferenceObjective(dataset.replace(preferences=prefs), noise=noise,
                               discount=discount)


def features(dataset):
    return dataset.observations.copy()


def read_pairs(layout, reward):
    """Segment-sum differences and labels, read from the rows exactly as the Julia loss does."""
    y, w = layout.y, layout.weights
    z_all, labels = [], []
    i = 0
    while i < len(y):
        label, z = y[i], 0.0
        while i < len(y) and y[i] >= 0:
            z += w[i] * reward[i]
            i += 1
        while i < len(y) and y[i] < 0:
            z -= w[i] * reward[i]
            i += 1
        z_all.append(z)
        labels.append(label)
    return np.array(z_all), np.array(labels)


def bernoulli_loss(z, p, noise):
    q = noise / 2 + (1 - noise) / (1 + np.exp(-z))
    return float(np.mean(-(p * np.log(q) + (1 - p) * np.log(1 - q))))


# -- the Julia losses --------------------------------------------------------------------------

def test_preference_loss_is_a_batch_free_full_objective():
    text = engine.julia_loss("preferences")
    assert text.startswith("function symreward_preference_loss(tree, dataset::Dataset{T,L}, "
                           "options)::L where {T,L}")
    # Three arguments: with batching on, PySR would pass a fourth (the batch indices).
    assert "idx" not in text
    assert "eval_tree_array(tree, dataset.X, options)" in text
    assert "complete || return L(Inf)" in text
    assert "dataset.weights" in text and "dataset.y" in text
    # softplus(-z) + (1 - p) z from exp(-|z|): no exp of an unbounded argument, no log(0).
    assert "max(-z, zero(T)) + log1p(exp(-abs(z))) + (1 - label) * z" in text
    assert "exp(z)" not in text and "exp(-z)" not in text and "log(" not in text
    assert text.count("function") == 1 and text.rstrip().endswith("end")


def test_noisy_preference_loss_mixes_in_the_label_noise():
    text = engine.julia_loss("preferences", noise=0.1)
    assert "q_a = T(0.05) + T(0.9) * s_a" in text
    assert "q_b = T(0.05) + T(0.9) * s_b" in text
    assert "-(label * log(q_a) + (1 - label) * log(q_b))" in text
    assert "e = exp(-abs(z))" in text and "exp(z)" not in text
    assert engine.julia_loss("rankings") == engine.julia_loss("preferences")


def test_other_objectives_losses():
    rewards = engine.julia_loss("rewards")
    assert rewards.strip() == ("symreward_squared_error(prediction, target) = "
                               "(prediction - target)^2")
    demonstrations = engine.julia_loss("demonstrations")
    assert "function symreward_demonstration_loss(tree, dataset::Dataset{T,L}, options)::L" in (
        demonstrations)
    assert "log1p(exp(-abs(z)))" in demonstrations and "exp(z)" not in demonstrations


def test_loss_arguments_are_checked():
    with pytest.raises(SymrewardError, match="preferences, rankings, demonstrations, rewards"):
        engine.julia_loss("returns")
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        engine.julia_loss("preferences", noise=1.0)
    with pytest.raises(ValueError, match="applies to preferences"):
        engine.julia_loss("rankings", noise=0.1)


# -- the rows the losses read ------------------------------------------------------------------

@pytest.mark.parametrize("noise, discount", [(0.0, 1.0), (0.1, 0.9)])
def test_pair_rows_reproduce_the_preference_objective(noise, discount):
    objective = preference_objective(noise=noise, discount=discount)
    layout = engine.layout(objective, np.random.default_rng(0))
    reward = np.random.default_rng(1).normal(size=objective.dataset.n)
    z, labels = read_pairs(layout, reward[layout.rows])
    np.testing.assert_allclose(z, objective.difference @ reward, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(labels, objective.labels)
    assert bernoulli_loss(z, labels, noise) == pytest.approx(
        objective.loss_and_grad(reward)[0], rel=1e-10)


def test_ranking_rows_hold_every_ordered_pair():
    dataset = random_walk()
    ranks = rankings_from_rewards(dataset, true_reward(dataset), 12, 8, seed=0)
    objective = RankingObjective(dataset.replace(rankings=ranks))
    layout = engine.layout(objective, np.random.default_rng(0))
    reward = np.random.default_rng(2).normal(size=dataset.n)
    z, labels = read_pairs(layout, reward[layout.rows])
    assert (labels == 1).all()
    assert bernoulli_loss(z, labels, 0.0) == pytest.approx(objective.loss_and_grad(reward)[0],
                                                           rel=1e-10)


def test_large_pair_data_are_subsampled_by_whole_pairs(monkeypatch):
    monkeypatch.setattr(engine, "MAX_ROWS", 200)
    objective = preference_objective(n_pairs=60)      # 60 pairs of 2 x 8 transitions
    layout = engine.layout(objective, np.random.default_rng(0))
    assert len(layout.y) <= 200
    reward = np.random.default_rng(3).normal(size=objective.dataset.n)
    z, _ = read_pairs(layout, reward[layout.rows])
    all_z = objective.difference @ reward
    assert len(z) == 200 // 16
    assert all(np.isclose(all_z, value).any() for value in z)


def test_transition_objectives_use_their_targets(monkeypatch):
    dataset = random_walk()
    rewards = RewardLabelObjective(dataset.replace(rewards=true_reward(dataset)))
    layout = engine.layout(rewards, np.random.default_rng(0))
    assert layout.rows is None and layout.weights is None
    np.testing.assert_array_equal(layout.y, true_reward(dataset))
    expert = np.arange(dataset.n) % 3 == 0
    demonstrations = DemonstrationObjective(dataset.replace(expert=expert))
    monkeypatch.setattr(engine, "MAX_ROWS", 100)
    layout = engine.layout(demonstrations, np.random.default_rng(0))
    assert len(layout.rows) == 100
    np.testing.assert_array_equal(layout.y, expert[layout.rows].astype(float))
    with pytest.raises(SymrewardError, match="class prior.*--engine evolve"):
        engine.layout(DemonstrationObjective(dataset.replace(expert=expert), class_prior=0.3),
                      np.random.default_rng(0))


def test_the_search_reads_only_the_units_it_is_given():
    """The learner keeps some units out of a search to judge its proposals: PySR's rows hold
    only the pairs, ranked segments or transitions of the units it searches."""
    objective = preference_objective()
    units = np.arange(0, objective.n_units, 2)
    pairs = objective.members(units)
    layout = engine.layout(objective, np.random.default_rng(0), units)
    reward = np.random.default_rng(1).normal(size=objective.dataset.n)
    z, labels = read_pairs(layout, reward[layout.rows])
    np.testing.assert_allclose(z, objective.difference[pairs] @ reward, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(labels, objective.labels[pairs])
    dataset = random_walk()
    ranks = rankings_from_rewards(dataset, true_reward(dataset), 12, 8, seed=0)
    ranking = RankingObjective(dataset.replace(rankings=ranks))
    some = np.array([0, 3, 4, 7, 9])
    z, _ = read_pairs(engine.layout(ranking, np.random.default_rng(0), some),
                      reward[engine.layout(ranking, np.random.default_rng(0), some).rows])
    assert len(z) == int(sum(ranks.scores[i] > ranks.scores[j] for i in some for j in some))
    rewards = RewardLabelObjective(dataset.replace(rewards=true_reward(dataset)))
    episodes = np.array([0, 2])
    layout = engine.layout(rewards, np.random.default_rng(0), episodes)
    np.testing.assert_array_equal(layout.rows, rewards.members(episodes))


JULIA_STUBS = """
# The two things the loss takes from SymbolicRegression.jl, reduced to what it reads.
struct Dataset{T,L}
    X::Matrix{T}
    y::Vector{T}
    weights::Union{Vector{T},Nothing}
    n::Int
end
eval_tree_array(tree, X, options) = (tree(X), true)
folder = ARGS[1]
function load(name)
    path = joinpath(folder, name)
    return read!(path, Vector{Float64}(undef, filesize(path) ÷ 8))
end
X = load("X.bin")
y = load("y.bin")
weights = isfile(joinpath(folder, "w.bin")) ? load("w.bin") : nothing
n = length(y)
loss = include_string(Main, read(joinpath(folder, "loss.jl"), String))
first_feature(X) = X[1, :]
dataset = Dataset{Float64,Float64}(reshape(X, :, n), y, weights, n)
println(repr(loss(first_feature, dataset, nothing)))
"""


@pytest.mark.skipif(shutil.which("julia") is None, reason="no julia executable on PATH")
@pytest.mark.parametrize("objective_name, noise", [("preferences", 0.0), ("preferences", 0.2),
                                                   ("demonstrations", 0.0)])
def test_julia_runs_the_generated_loss(tmp_path, objective_name, noise):
    if objective_name == "preferences":
        objective = preference_objective(noise=noise, discount=0.95)
    else:
        dataset = random_walk()
        objective = DemonstrationObjective(dataset.replace(expert=np.arange(dataset.n) % 4 == 0))
    layout = engine.layout(objective, np.random.default_rng(0))
    matrix = features(objective.dataset)
    X = matrix if layout.rows is None else matrix[layout.rows]
    # A huge reward scale checks that the loss stays finite where exp(z) would overflow.
    for scale in (1.0, 1e4):
        (tmp_path / "X.bin").write_bytes(np.ascontiguousarray(X * scale).tobytes())
        (tmp_path / "y.bin").write_bytes(layout.y.tobytes())
        if layout.weights is not None:
            (tmp_path / "w.bin").write_bytes(layout.weights.tobytes())
        (tmp_path / "loss.jl").write_text(engine.julia_loss(objective_name, noise=noise))
        (tmp_path / "run.jl").write_text(JULIA_STUBS)
        result = subprocess.run(["julia", "--startup-file=no", str(tmp_path / "run.jl"),
                                 str(tmp_path)], capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        expected = objective.loss_and_grad(matrix[:, 0] * scale)[0]
        assert float(result.stdout.strip()) == pytest.approx(expected, rel=1e-9)


# -- the hall of fame --------------------------------------------------------------------------

NAMES = ["theta", "theta_dot", "torque"]

HALL_OF_FAME = """\
Complexity,Loss,Equation
1,0.6931471805599453,"0.12093"
5,0.21308,"((theta ^ 2.0) * -0.7703) + 0.51"
3,0.40915,"(theta ^ 2.0) * -0.7703"
9,0.0512,"(square(theta) * -1.0217) + ((theta_dot * theta_dot) * -0.10218)"
14,0.04998,"(((cube(theta) - (torque * 0.3)) * (theta_dot + -0.5)) * 2.0) + \
neg(safe_sqrt(abs(torque)))"
"""


def test_hall_of_fame_equations_become_term_lists(tmp_path):
    path = tmp_path / "hall_of_fame.csv"
    path.write_text(HALL_OF_FAME)
    theta, theta_dot, torque = (symbol(name) for name in NAMES)
    proposals = engine.hall_of_fame_terms(path, NAMES)
    # The constant is no proposal; complexity 5 repeats complexity 3's term once its constant
    # and coefficient are gone.
    assert proposals[0] == [theta**2]
    assert set(proposals[1]) == {theta**2, theta_dot**2}
    assert set(proposals[2]) == {(theta**3 - 0.3 * torque) * (theta_dot - 0.5),
                                 sympy.sqrt(sympy.Abs(torque))}
    assert len(proposals) == 3
    for terms in proposals:
        for term in terms:
            assert term.free_symbols <= {theta, theta_dot, torque}
            assert term.as_coeff_Mul()[0] == 1


def test_julia_syntax_translation():
    assert engine.julia_to_formula("x0 ^ 2.0") == "x0 ** 2.0"
    assert engine.julia_to_formula("square(cube(x0) + neg(x1))") == "((((x0)**3) + (-(x1)))**2)"
    assert engine.julia_to_formula("safe_log(abs (x0))") == "log(abs(x0))"


def test_a_hostile_equation_is_refused_not_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "hall_of_fame.csv"
    path.write_text('Complexity,Loss,Equation\n1,0.5,"theta"\n'
                    "3,0.1,\"__import__('os').system('touch pwned')\"\n")
    with pytest.raises(SymrewardError, match=r"hall_of_fame.csv: line 3: .*not in the formula "
                                             r"language.*__import__"):
        engine.hall_of_fame_terms(path, NAMES)
    assert not (tmp_path / "pwned").exists()


def test_unknown_names_and_malformed_files_are_errors(tmp_path):
    path = tmp_path / "hall_of_fame.csv"
    path.write_text('Complexity,Loss,Equation\n3,0.1,"theta * omega"\n')
    with pytest.raises(SymrewardError, match="line 2.*unknown name 'omega'"):
        engine.hall_of_fame_terms(path, NAMES)
    path.write_text("complexity,loss\n1,0.1\n")
    with pytest.raises(SymrewardError, match="no column Complexity, Equation"):
        engine.hall_of_fame_terms(path, NAMES)
    path.write_text('Complexity,Loss,Equation\nseven,0.1,"theta"\n')
    with pytest.raises(SymrewardError, match="line 2: Complexity 'seven' is not an integer"):
        engine.hall_of_fame_terms(path, NAMES)
    with pytest.raises(SymrewardError, match="cannot read"):
        engine.hall_of_fame_terms(tmp_path / "missing.csv", NAMES)


# -- availability ------------------------------------------------------------------------------

def test_check_available_fails_fast_and_points_to_evolve(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *args: None if name == "pysr" else real_find_spec(name, *args))
    start = time.monotonic()
    with pytest.raises(EngineUnavailable) as caught:
        engine.check_available()
    assert time.monotonic() - start < 10
    message = str(caught.value)
    assert "pysr package is not installed" in message
    assert "--engine evolve" in message and "Julia >= 1.10" in message
    assert "pip install 'symreward[pysr]'" in message


def _unavailable_reason():
    try:
        engine.check_available()
    except EngineUnavailable as exc:
        return str(exc)
    return None


UNAVAILABLE_REASON = _unavailable_reason()


@pytest.mark.skipif(UNAVAILABLE_REASON is None, reason="pysr and Julia are installed here")
def test_check_available_here_raises_within_ten_seconds():
    start = time.monotonic()
    with pytest.raises(EngineUnavailable, match="--engine evolve"):
        engine.check_available()
    assert time.monotonic() - start < 10


def fake_julia(folder, body):
    path = folder / "julia"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def only_this_path(monkeypatch, tmp_path):
    """Julia is looked for on a PATH holding only ``tmp_path``."""
    monkeypatch.delenv("PYTHON_JULIAPKG_EXE", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(engine, "_juliapkg_julia", lambda: None)
    return tmp_path


def test_no_julia_is_unavailable(only_this_path):
    with pytest.raises(EngineUnavailable, match="no Julia executable was found"):
        engine._require_julia()


@posix_only
def test_julia_version_is_checked(only_this_path):
    fake_julia(only_this_path, 'echo "julia version 1.9.4"')
    with pytest.raises(EngineUnavailable, match=r"is Julia 1\.9; PySR needs Julia >= 1\.10"):
        engine._require_julia()
    julia = fake_julia(only_this_path, 'echo "julia version 1.10.2"')
    assert engine._require_julia() == str(julia)


@posix_only
def test_a_julia_that_hangs_is_abandoned(only_this_path, monkeypatch):
    monkeypatch.setattr(engine, "VERSION_TIMEOUT", 0.5)
    fake_julia(only_this_path, f"exec {SLEEP} 30")
    start = time.monotonic()
    with pytest.raises(EngineUnavailable, match="did not answer within 0.5 s"):
        engine._require_julia()
    assert time.monotonic() - start < 10


def test_pysr_juliapkg_exe_is_used_as_given(monkeypatch, tmp_path):
    monkeypatch.setenv("PYTHON_JULIAPKG_EXE", str(tmp_path / "no-julia-here"))
    with pytest.raises(EngineUnavailable, match="no-julia-here cannot be run"):
        engine._require_julia()


# -- the worker, with a stand-in pysr package --------------------------------------------------

FAKE_PYSR = """\
import json, os, time
from pathlib import Path

import numpy as np

if os.environ.get("FAKE_PYSR_IMPORT_ERROR"):
    raise RuntimeError("could not find Julia")


class PySRRegressor:
    def __init__(self, **options):
        self.options = options

    def fit(self, X, y, weights=None, variable_names=None):
        if os.environ.get("FAKE_PYSR_FIT") == "fail":
            raise ValueError("the loss function does not compile")
        if os.environ.get("FAKE_PYSR_FIT") == "hang":
            time.sleep(60)
        record = {"options": self.options, "variable_names": variable_names,
                  "X_shape": list(X.shape), "y": np.asarray(y).tolist(),
                  "weights": None if weights is None else np.asarray(weights).tolist(),
                  "env": {key: os.environ.get(key) for key in (
                      "PYTHON_JULIAPKG_EXE", "PYTHON_JULIAPKG_OFFLINE", "JULIA_PKG_OFFLINE")}}
        Path(os.environ["FAKE_PYSR_RECORD"]).write_text(json.dumps(record))
        run = Path(self.options["output_directory"], self.options["run_id"])
        run.mkdir(parents=True)
        (run / "hall_of_fame.csv").write_text(
            "Complexity,Loss,Equation\\n"
            '1,0.69,"0.3"\\n'
            '4,0.3,"square(x0) * -1.5"\\n'
            '8,0.1,"(square(x0) * -1.5) + (x1 * 0.8)"\\n')
"""


@pytest.fixture
def fake_pysr(monkeypatch, tmp_path):
    package = tmp_path / "site" / "pysr"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(FAKE_PYSR)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        filter(None, [str(package.parent), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("FAKE_PYSR_RECORD", str(tmp_path / "record.json"))
    monkeypatch.delenv("PYTHON_JULIAPKG_EXE", raising=False)
    monkeypatch.setattr(engine, "_require_pysr", lambda: None)
    monkeypatch.setattr(engine, "_require_julia", lambda: "/opt/julia/bin/julia")
    return tmp_path / "record.json"


def test_propose_runs_the_worker_and_renames_the_terms(fake_pysr):
    objective = preference_objective(discount=0.9)
    matrix = features(objective.dataset)
    proposals = engine.propose(objective, matrix, ["angle", "speed"], seed=7, time_limit=30,
                               population=20, generations=3)
    angle, speed = symbol("angle"), symbol("speed")
    assert [set(terms) for terms in proposals] == [{angle**2}, {angle**2, speed}]
    record = json.loads(fake_pysr.read_text())
    options = record["options"]
    assert options["loss_function"] == engine.julia_loss("preferences")
    assert "elementwise_loss" not in options
    assert options["batching"] is False and options["deterministic"] is True
    assert options["parallelism"] == "serial" and options["random_state"] == 7
    assert options["timeout_in_seconds"] == 30 and options["niterations"] == 3
    assert options["population_size"] == 20 and options["input_stream"] == "devnull"
    assert record["variable_names"] == ["x0", "x1"]
    layout = engine.layout(objective, np.random.default_rng(7))
    assert record["X_shape"] == [len(layout.y), 2]
    assert record["y"] == layout.y.tolist() and record["weights"] == layout.weights.tolist()
    assert record["env"] == {"PYTHON_JULIAPKG_EXE": "/opt/julia/bin/julia",
                             "PYTHON_JULIAPKG_OFFLINE": "yes", "JULIA_PKG_OFFLINE": "true"}


def test_rewards_use_an_elementwise_loss_without_weights(fake_pysr):
    dataset = random_walk()
    objective = RewardLabelObjective(dataset.replace(rewards=true_reward(dataset)))
    engine.propose(objective, features(dataset), ["angle", "speed"], time_limit=30)
    record = json.loads(fake_pysr.read_text())
    assert record["options"]["elementwise_loss"] == engine.julia_loss("rewards")
    assert record["weights"] is None and record["X_shape"] == [dataset.n, 2]


def test_a_worker_that_cannot_start_julia_is_unavailable(fake_pysr, monkeypatch):
    monkeypatch.setenv("FAKE_PYSR_IMPORT_ERROR", "1")
    objective = preference_objective()
    with pytest.raises(EngineUnavailable, match=r"(?s)could not find Julia.*--engine evolve"):
        engine.propose(objective, features(objective.dataset), ["a", "b"], time_limit=30)


def test_a_failed_search_reports_its_output(fake_pysr, monkeypatch):
    monkeypatch.setenv("FAKE_PYSR_FIT", "fail")
    objective = preference_objective()
    with pytest.raises(SymrewardError, match="(?s)exit status 1.*does not compile"):
        engine.propose(objective, features(objective.dataset), ["a", "b"], time_limit=30)


def test_a_search_over_its_time_is_stopped(fake_pysr, monkeypatch):
    monkeypatch.setenv("FAKE_PYSR_FIT", "hang")
    monkeypatch.setattr(engine, "STARTUP_ALLOWANCE", 2.0)
    objective = preference_objective()
    start = time.monotonic()
    with pytest.raises(SymrewardError, match="did not finish within 3 s"):
        engine.propose(objective, features(objective.dataset), ["a", "b"], time_limit=1)
    assert time.monotonic() - start < 20


def test_propose_checks_its_inputs(fake_pysr):
    objective = preference_objective()
    with pytest.raises(ValueError, match="expected"):
        engine.propose(objective, features(objective.dataset), ["a"])
    matrix = features(objective.dataset)
    matrix[objective.dataset.preferences.a[0, 0], 1] = np.nan
    with pytest.raises(SymrewardError, match="feature 'b' is not finite"):
        engine.propose(objective, matrix, ["a", "b"])


def test_the_worker_does_not_load_numba():
    code = ("import sys, symreward.search._pysr_worker; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numba', 'llvmlite')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True)
    assert result.stdout.strip() == "[]"


# -- a real search -----------------------------------------------------------------------------

@pytest.mark.skipif(UNAVAILABLE_REASON is not None, reason=str(UNAVAILABLE_REASON))
def test_a_tiny_pysr_search_on_preferences():
    objective = preference_objective(n_pairs=150)
    proposals = engine.propose(objective, features(objective.dataset), ["x", "y"], seed=0,
                               time_limit=120, population=20, generations=5)
    assert proposals
    x, y = symbol("x"), symbol("y")
    for terms in proposals:
        assert terms and all(isinstance(term, sympy.Expr) for term in terms)
        assert set().union(*(term.free_symbols for term in terms)) <= {x, y}

