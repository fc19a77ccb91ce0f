"""Constraints of the fit: the constrained refit of a linear problem, the sign bounds that
invariants put on terms' weights (decided by interval proofs, checked here against sampled
values), and the evolutionary engine's feasibility filter."""

import math

import numpy as np
import pytest
import sympy
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize, nnls
from support import random_walk, true_reward

from symreward import formula
from symreward.constraints import Constraints, ShapeRules, read_invariants
from symreward.data import bradley_terry_preferences
from symreward.invariants import check
from symreward.learner import SymbolicRewardLearner
from symreward.objectives import LinearProblem, make_objective
from symreward.objectives.fitting import fit
from symreward.objectives.linear import LinearConstraints
from symreward.objectives.rounding import rounded_weights
from symreward.search.evolve import EvolutionarySearch
from symreward.search.evolve.selection import update_archive
from symreward.search.library import TermLibrary
from symreward.search.trees import FEATURE, from_sympy

NAMES = ["x", "y", "z"]
X, Y, Z = (formula.symbol(n) for n in NAMES)
FREE = (-math.inf, math.inf)
BOX = {"x": (-2.0, 3.0), "y": (-1.5, 2.5), "z": (-1.0, 1.0)}


def rules(*tables: dict, box: dict = BOX) -> ShapeRules:
    return ShapeRules(read_invariants(list(tables), NAMES, box, "test"), NAMES)


def term(text: str) -> sympy.Expr:
    return formula.parse(text, NAMES)


def squared_problem(seed: int = 0, n: int = 300) -> tuple[LinearProblem, np.ndarray]:
    rng = np.random.default_rng(seed)
    X_ = rng.normal(size=(n, 3))
    target = X_ @ np.array([1.0, -2.0, 0.5]) + rng.normal(scale=0.1, size=n)
    return LinearProblem("squared", X_, target, np.zeros(n), np.ones(n)), X_


def preference_problem() -> LinearProblem:
    walk = random_walk(n=1200)
    walk = walk.replace(preferences=bradley_terry_preferences(walk, true_reward(walk), 300, 10,
                                                              seed=1))
    obs = walk.observations
    columns = np.column_stack([obs[:, 0] ** 2, obs[:, 1], obs[:, 2]])
    return make_objective("preferences", walk).problem(columns)


# ------------------------------------------------------------------------ constrained refits


def test_bounds_on_weights_give_the_nonnegative_least_squares_solution() -> None:
    problem, design = squared_problem()
    lower, upper = np.zeros(3), np.full(3, math.inf)
    bounded = fit(problem.__class__(**{**problem.__dict__,
                                       "constraints": LinearConstraints.bounds_only(lower,
                                                                                     upper)}))
    expected, _ = nnls(design, problem.target)
    np.testing.assert_allclose(bounded.coef, expected, rtol=1e-5, atol=1e-7)
    assert bounded.coef[1] == 0.0 and bounded.feasible


def test_constraints_the_unconstrained_fit_meets_leave_it_bit_for_bit() -> None:
    problem = preference_problem()
    free = fit(problem)
    loose = LinearConstraints(np.full(3, -10.0), np.full(3, 10.0), np.array([[0.0, 1.0, 0.0]]),
                              np.zeros(1), np.array([100.0]))
    constrained = fit(LinearProblem(**{**problem.__dict__, "constraints": loose}))
    assert constrained.coef.tobytes() == free.coef.tobytes()


def test_a_row_the_data_contradict_holds_and_costs_loss() -> None:
    problem = preference_problem()
    free = fit(problem)
    assert free.coef[1] > 0.3  # the data reward y
    # R(y = 1) <= R(y = 0) - 0.1: the weight of y at most -0.1
    row = LinearConstraints(np.full(3, -math.inf), np.full(3, math.inf),
                            np.array([[0.0, 1.0, 0.0]]), np.zeros(1), np.array([-0.1]),
                            ("y below",))
    constrained = LinearProblem(**{**problem.__dict__, "constraints": row})
    fitted = fit(constrained)
    assert fitted.feasible and row.satisfied(fitted.coef)
    assert fitted.coef[1] == pytest.approx(-0.1, abs=1e-7)  # the constraint is active
    assert problem.loss(fitted.coef) > problem.loss(free.coef)
    coefficients, intercept = rounded_weights(constrained, fitted, 1e-3)
    assert row.satisfied(coefficients, intercept)


@pytest.mark.parametrize("seed", range(4))
def test_the_constrained_fit_is_the_minimum_a_general_solver_finds(seed: int) -> None:
    """Random rows and bounds, some active: the fit meets them, and SLSQP from scipy on the
    same loss (without the tiny ridge) finds no lower loss."""
    problem = preference_problem()
    rng = np.random.default_rng(seed)
    free = fit(problem).coef
    rows = rng.normal(size=(3, 3))
    limits = rows @ free - rng.uniform(0.05, 0.5, size=3) * np.abs(rows).sum(axis=1)
    lower = np.array([-math.inf, -math.inf, 0.0]) if seed % 2 else np.full(3, -math.inf)
    constraints = LinearConstraints(lower, np.full(3, math.inf), rows, np.zeros(3), limits)
    fitted = fit(LinearProblem(**{**problem.__dict__, "constraints": constraints}))
    assert fitted.feasible and constraints.satisfied(fitted.coef)
    reference = minimize(lambda w: problem.loss(w), free, method="SLSQP",
                         bounds=list(zip(lower, [None] * 3, strict=True)),
                         constraints=[{"type": "ineq", "fun": lambda w: limits - rows @ w}],
                         options={"ftol": 1e-14, "maxiter": 1000})
    assert constraints.satisfied(reference.x)
    assert problem.loss(fitted.coef) <= problem.loss(reference.x) + 1e-9
    np.testing.assert_allclose(fitted.coef, reference.x, rtol=1e-3, atol=1e-4)


def test_rows_no_weights_can_meet_are_reported_infeasible() -> None:
    problem = preference_problem()
    # the weight of y at least 1 and at most -1
    rows = LinearConstraints(np.full(3, -math.inf), np.full(3, math.inf),
                             np.array([[0.0, 1.0, 0.0], [0.0, -1.0, 0.0]]), np.zeros(2),
                             np.array([-1.0, -1.0]), ("low", "high"))
    fitted = fit(LinearProblem(**{**problem.__dict__, "constraints": rows}))
    assert not fitted.feasible
    assert rows.unmet(fitted.coef) in (["low"], ["high"], ["low", "high"])
    empty = fit(LinearProblem(**{**problem.__dict__, "constraints": rows}), ())
    assert not empty.feasible


def test_fixing_columns_moves_their_reward_into_offset_and_limits() -> None:
    problem, _ = squared_problem()
    rows = LinearConstraints(np.full(3, -math.inf), np.full(3, math.inf),
                             np.array([[1.0, 2.0, 3.0]]), np.ones(1), np.array([4.0]))
    problem = LinearProblem(**{**problem.__dict__, "constraints": rows, "fit_intercept": True})
    rest = problem.with_fixed([0, 2], [0.5, 1.0], 0.25)
    assert rest.X.shape[1] == 1 and not rest.fit_intercept
    np.testing.assert_allclose(rest.offset, problem.X[:, [0, 2]] @ [0.5, 1.0] + 0.25)
    assert rest.constraints.limits[0] == pytest.approx(4.0 - 0.5 - 3.0 - 0.25)
    assert rest.constraints.rows.tolist() == [[2.0]]


# ----------------------------------------------------------------------------- sign bounds


@pytest.mark.parametrize("text, expected", [
    ("x**2", (-math.inf, 0.0)),          # rises with abs(x) on both branches
    ("abs(x)", (-math.inf, 0.0)),
    ("(x > 0.5)", (-math.inf, 0.0)),     # a step up where abs(x) rises
    ("(x > -0.5)", (0.0, math.inf)),     # a step up in x where abs(x) falls
    ("-x**4", (0.0, math.inf)),
    ("x", FREE),                         # rises on one branch, falls on the other
    ("max(0, x + 0.1)", FREE),
    ("y**2", FREE),                      # does not read x
    ("x*y", FREE),                       # the sign of y decides
])
def test_decreasing_in_a_magnitude_bounds_the_terms_whose_shape_is_proved(text, expected):
    assert rules({"rule": "decreasing", "of": "abs(x)"}).bounds(term(text)) == expected


def test_increasing_is_the_mirror_and_where_narrows_the_proof() -> None:
    increasing = rules({"rule": "increasing", "of": "y"})
    assert increasing.bounds(term("y**3")) == (0.0, math.inf)
    assert increasing.bounds(term("exp(-y)")) == (-math.inf, 0.0)
    assert increasing.bounds(term("y**2")) == FREE
    # y**2 rises with y where y >= 1. (Where y >= 0 the proof of 2*y >= 0 is tight at the
    # condition's edge, which interval bounds never close: undecided, see invariants.)
    assert rules({"rule": "increasing", "of": "y", "where": "y >= 1"}).bounds(
        term("y**2")) == (0.0, math.inf)


@pytest.mark.parametrize("table, text, expected", [
    ({"rule": "bounded", "hi": 0}, "x**2", (-math.inf, 0.0)),
    ({"rule": "bounded", "hi": 0}, "-abs(z)", (0.0, math.inf)),
    ({"rule": "bounded", "hi": 0}, "(y > 1)", (-math.inf, 0.0)),
    ({"rule": "bounded", "hi": 0}, "y", FREE),
    ({"rule": "bounded", "hi": 1}, "x**2", FREE),       # room on both sides: no sign
    ({"rule": "bounded", "lo": 0}, "x**2", (0.0, math.inf)),
    ({"rule": "sign", "is": "negative"}, "z**2", (-math.inf, 0.0)),
    ({"rule": "sign", "is": "nonnegative", "when": "x > 1"}, "x", (0.0, math.inf)),
    ({"rule": "independent", "of": "y"}, "x*y", (0.0, 0.0)),
    ({"rule": "independent", "of": "y"}, "x", FREE),
    ({"rule": "prefers", "better": "x < 0", "worse": "x > 1"}, "x", FREE),
])
def test_bounds_and_signs_bound_the_terms_of_proved_sign(table, text, expected):
    assert rules(table).bounds(term(text)) == expected


def test_intercept_bounds_and_conflicting_signs() -> None:
    both = rules({"rule": "bounded", "hi": -0.5}, {"rule": "sign", "is": "nonnegative"})
    assert both.intercept_bounds() == (0.0, -0.5)
    assert both.bounds(term("x**2")) == (0.0, 0.0)  # <= 0 and >= 0: left out


CANDIDATES, _ = TermLibrary().build(NAMES, np.random.default_rng(3).uniform(
    [lo for lo, _ in BOX.values()], [hi for _, hi in BOX.values()], size=(400, 3)))
MONOTONE = [{"rule": "decreasing", "of": "abs(x)"}, {"rule": "increasing", "of": "y"},
            {"rule": "decreasing", "of": "x", "where": "z > 0"}]
DECIDED = [(invariant, candidate) for invariant in MONOTONE for candidate in CANDIDATES
           if rules(invariant).bounds(candidate.expr) != FREE]


def test_the_library_has_terms_of_either_decided_sign() -> None:
    signs = {rules(i).bounds(c.expr) for i, c in DECIDED}
    assert (-math.inf, 0.0) in signs and (0.0, math.inf) in signs


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.sampled_from(DECIDED), st.floats(0, 1), st.floats(0, 1), st.floats(0, 1),
       st.floats(0, 1))
def test_a_decided_sign_keeps_the_monotone_invariant_on_sampled_segments(case, a, b, c, d):
    """Soundness: where a weight's sign is decided, the weighted term does not move against
    the invariant between two states that differ in its feature only, on a segment where
    ``of`` is strictly monotone and ``where`` holds."""
    table, candidate = case
    invariant = read_invariants([table], NAMES, BOX, "test")[0]
    weight = 1.0 if rules(table).bounds(candidate.expr)[0] == 0 else -1.0
    f = invariant.feature
    lo, hi = BOX[f]
    first, second = sorted((lo + a * (hi - lo), lo + b * (hi - lo)))
    state = {n: BOX[n][0] + v * (BOX[n][1] - BOX[n][0]) for n, v in zip(NAMES, (c, d, a),
                                                                        strict=False)}
    if table.get("where") and not state["z"] > 0:
        return
    of_first, of_second = (float(invariant.of.subs(formula.symbol(f), v))
                           for v in (first, second))
    if table["of"] == "abs(x)" and first < 0 < second:
        return  # abs(x) is not monotone across 0: the rule does not compare these states
    at = sympy.lambdify([formula.symbol(n) for n in NAMES], candidate.expr,
                        modules=[formula.NUMPY_FUNCTIONS, "numpy"])
    r_first = weight * float(at(*(state | {f: first}).values()))
    r_second = weight * float(at(*(state | {f: second}).values()))
    sense = -1 if table["rule"] == "decreasing" else 1
    change = (r_second - r_first) * np.sign(of_second - of_first)
    assert change * sense >= -1e-9 * (1 + abs(r_first) + abs(r_second)), (candidate.text,
                                                                          first, second)


# ----------------------------------------------------------------- evolve: feasibility filter


def test_the_evolutionary_archive_keeps_no_model_that_breaks_a_weight_bound() -> None:
    walk = random_walk(n=1200)
    walk = walk.replace(preferences=bradley_terry_preferences(walk, true_reward(walk), 300, 10,
                                                              seed=1))
    objective = make_objective("preferences", walk)
    matrix = np.ascontiguousarray(walk.observations)

    def no_rise_in_y(expr: sympy.Expr) -> tuple[float, float]:
        return (-math.inf, 0.0) if expr == Y else FREE

    search = EvolutionarySearch(population=30, generations=4, time_limit=None, seed=0)
    run = search.prepare(objective, matrix, NAMES, weight_bounds=no_rise_in_y)
    rising = run.fitness.individual([from_sympy(Y, NAMES), from_sympy(X**2, NAMES)])
    assert rising.weights[0] > 0  # the data reward y
    assert not run.feasible(rising)
    archive: dict = {}
    update_archive(archive, [rising], run.fitness.floor, run.fitness.resolution, run.feasible)
    assert archive == {}
    result = run.evolve([[Y, X**2], [X**2]])
    assert result.archive and all(run.feasible(i) for i in result.archive)
    assert not any(t == (FEATURE, 1.0) and w > 0 for i in result.archive
                   for t, w in zip(i.terms, i.weights, strict=True))


def test_the_learner_with_the_evolutionary_engine_meets_the_constraints() -> None:
    walk = random_walk(n=1200)
    walk = walk.replace(preferences=bradley_terry_preferences(walk, true_reward(walk), 300, 10,
                                                              seed=1))
    invariant = {"rule": "decreasing", "of": "y"}
    learner = SymbolicRewardLearner(engine="evolve", population=20, generations=3, seed=0,
                                    constraints=Constraints(invariants=[invariant]))
    artifact = learner.fit(walk, {"x": "obs[0]", "y": "obs[1]"}).artifact_
    assert artifact.provenance["search"]["generations"] == 3
    assert artifact.invariants == [invariant]
    assert not any(r.status == "violated" for r in check(artifact, walk))


def test_invariants_that_exclude_each_other_are_reported_unmet() -> None:
    walk = random_walk(n=600)
    walk = walk.replace(rewards=true_reward(walk))
    contradictory = Constraints(invariants=[{"rule": "bounded", "hi": -0.5},
                                            {"rule": "sign", "is": "nonnegative"}])
    artifact = SymbolicRewardLearner("rewards", constraints=contradictory).fit(
        walk, {"x": "obs[0]", "y": "obs[1]"}).artifact_
    assert artifact.provenance["constraints"]["unmet"] == ["bounds on the intercept"]
    # every term of proved sign has its weight bounded to 0 on both sides: none is used
    shapes = ShapeRules(read_invariants(contradictory.invariants, ["x", "y"], {
        "x": (-5.0, 5.0), "y": (-5.0, 5.0)}, "test"), ["x", "y"])
    for t in artifact.terms:
        _, shape = formula.parse(t.expr, ["x", "y"]).as_coeff_Mul()
        assert shape == 1 or shapes.bounds(shape) != (0.0, 0.0), t.expr
