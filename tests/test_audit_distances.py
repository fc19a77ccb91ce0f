"""DARD, the STARC family and their bootstrap intervals: the invariances that define them, what
the intervals promise, the front's runners-up and disagreement, and bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import nonlinear_system

from symreward.artifact import RewardArtifact, Term
from symreward.audit import (
    MEASURES,
    Counterpart,
    compare_rewards,
    dard_distance,
    default_comparisons,
    disagreement,
    epic_distance,
    find_parent,
    front_members,
    front_uncertainty,
    runners_up,
    starc_distance,
)
from symreward.audit.canonical import Canonicalizer
from symreward.audit.transitions import TransitionGraph
from symreward.data import Dataset
from symreward.errors import FeatureError, SymrewardError
from symreward.features import FeatureSet

GAMMA = 0.99
FAST = settings(max_examples=20, deadline=None)
# Small enough for a property test to run every measure in well under a second.
SMALL = {"n_eval": 256, "n_mean": 64, "n_pool": 512, "bootstrap": 20}


def trajectories(seed: int = 0, episodes: int = 8, length: int = 50) -> Dataset:
    """Episodes of a noisy, mildly nonlinear 3-D system driven by 2-D actions
    (``support.nonlinear_system``)."""
    return nonlinear_system(seed, episodes, length)


DS = trajectories()


def features(o: np.ndarray, a: np.ndarray, n: np.ndarray, i: dict) -> np.ndarray:
    return np.stack([n[:, 0] ** 2, np.abs(n[:, 0] - o[:, 0]), o[:, 1] * a[:, 0],
                     np.sin(n[:, 1]) * o[:, 2], a[:, 1] ** 2, i["h"] * o[:, 2]], axis=1)


def linear_reward(w):
    w = np.asarray(w, dtype=np.float64)
    return lambda o, a, n, i: features(o, a, n, i) @ w


def potential(c):
    return lambda x: c[0] * np.sin(c[1] * x[:, 0]) + c[2] * x[:, 1] * x[:, 2] + c[3] * x[:, 0] ** 2


def equivalent(reward, scale, offset, phi, discount=GAMMA):
    return lambda o, a, n, i: scale * reward(o, a, n, i) + offset + discount * phi(n) - phi(o)


R1 = linear_reward([-1.0, 0.0, 0.5, 0.0, -0.1, 0.0])
R2 = linear_reward([0.0, -1.0, 0.5, 0.0, -0.1, 0.3])

weights = st.lists(st.floats(-3.0, 3.0), min_size=6, max_size=6).filter(
    lambda w: max(abs(x) for x in w) > 0.1)
coeffs = st.lists(st.floats(-2.0, 2.0), min_size=4, max_size=4)


def values(distances):
    return {m.name: m.value for m in distances[0].measures}


# ---------------------------------------------------------------------------- invariances

# Every canonicalisation evaluates a reward and its shaping on one set of samples, so the
# shaping cancels term by term and only rounding is left: a few ulps of the largest value
# involved (|R|, |Φ| up to ~10 here, and the value function, ~|R|/(1 − γ) = 100x that) against
# canonical rewards of order 1. The distances are linear in that error (the Pearson distance is
# ‖u − v‖/2), so 1e-8 holds with margins of several orders of magnitude.
TOLERANCE = 1e-8


@FAST
@given(w=weights, scale=st.floats(1e-3, 1e3), offset=st.floats(-100.0, 100.0), c=coeffs)
def test_every_measure_is_invariant_to_shaping_scale_and_offset(w, scale, offset, c):
    reward = linear_reward(w)
    others = {"shaped": equivalent(reward, 1.0, 0.0, potential(c)),
              "scaled": equivalent(reward, scale, 0.0, potential([0, 0, 0, 0])),
              "offset": equivalent(reward, 1.0, offset, potential([0, 0, 0, 0])),
              "all": equivalent(reward, scale, offset, potential(c))}
    for distance in compare_rewards(reward, others, DS, measures=MEASURES, **SMALL):
        for measure in distance.measures:
            assert measure.value <= TOLERANCE, (distance.against, measure)
            assert measure.ci is not None and measure.ci[1] <= TOLERANCE


@FAST
@given(w=weights, c=coeffs, discount=st.sampled_from([0.0, 0.5, GAMMA, 1.0]))
def test_dard_is_invariant_to_shaping_at_any_discount(w, c, discount):
    reward = linear_reward(w)
    shaped = equivalent(reward, 1.0, 0.0, potential(c), discount)
    assert dard_distance(reward, shaped, DS, discount=discount, n_eval=256,
                         n_pool=512) <= TOLERANCE


@pytest.mark.parametrize("neighbours", [1, 4, 16])
def test_dard_shaping_cancels_for_any_number_of_neighbours(neighbours):
    shaped = equivalent(R1, 2.5, -3.0, potential([1.5, 2.0, -0.7, 0.3]))
    assert dard_distance(R1, shaped, DS, neighbours=neighbours) <= TOLERANCE


def test_a_reward_before_the_step_is_equivalent_to_it_after_the_step():
    # -s^2 + γΦ(s') − Φ(s) with Φ = -s^2 is -γ s'^2: equivalent for every γ > 0.
    before = lambda o, a, n, i: -o[:, 0] ** 2  # noqa: E731
    after = lambda o, a, n, i: -n[:, 0] ** 2  # noqa: E731
    for value in values(compare_rewards(before, {"after": after}, DS,
                                        measures=MEASURES)).values():
        assert value <= TOLERANCE


def test_identical_rewards_are_at_distance_zero_with_a_zero_interval():
    for measure in compare_rewards(R1, {"same": R1}, DS, measures=MEASURES)[0].measures:
        assert measure.value == 0.0
        assert measure.ci == (0.0, 0.0)
        assert measure.resamples == 200


def test_negation_is_as_far_as_each_measure_goes():
    negated = equivalent(R1, -2.0, 1.0, potential([1.0, 1.0, 1.0, 1.0]))
    got = values(compare_rewards(R1, {"negated": negated}, DS, measures=MEASURES))
    for name, value in got.items():
        assert value == pytest.approx(1.0 if name in ("EPIC", "DARD") else 2.0, abs=1e-9), name


# ---------------------------------------------------------------------------- the measures


def test_epic_is_epic_distance_and_the_standalone_functions_agree():
    got = values(compare_rewards(R1, {"R2": R2}, DS, measures=MEASURES, seed=3))
    assert got["EPIC"] == pytest.approx(epic_distance(R1, R2, DS, seed=3), abs=1e-12)
    assert got["DARD"] == dard_distance(R1, R2, DS, seed=3)
    for canon in ("epic", "value"):
        for norm in ("L1", "L2", "Linf"):
            name = f"STARC-{canon}-{norm}"
            assert got[name] == starc_distance(R1, R2, DS, canonicalization=canon, norm=norm,
                                               seed=3), name


def test_different_rewards_are_apart_by_every_measure():
    got = values(compare_rewards(R1, {"R2": R2}, DS, measures=MEASURES))
    assert 0.1 < got["EPIC"] < 1.0 and 0.1 < got["DARD"] < 1.0
    for name, value in got.items():
        assert value > 0.1, name
        assert value <= (1.0 if name in ("EPIC", "DARD") else 2.0)


def test_starc_l2_of_centred_canonical_rewards_is_twice_the_pearson_distance():
    # An independent check of the STARC arithmetic: for canonical rewards with mean zero over
    # the evaluated transitions, ‖u/‖u‖ − v/‖v‖‖₂ = 2·sqrt((1 − ρ)/2). Action-only rewards of
    # zero mean have constant EPIC mean terms, which cancel: their canonical rewards are the raw
    # rewards minus a constant (zero up to the sample's mean).
    fa = lambda o, a, n, i: np.sin(3.0 * a[:, 0])  # noqa: E731
    fb = lambda o, a, n, i: a[:, 0] ** 3 - 0.5 * a[:, 1]  # noqa: E731
    got = values(compare_rewards(fa, {"b": fb}, DS, measures=("EPIC", "STARC-epic-L2"),
                                 n_mean=4096))
    assert got["STARC-epic-L2"] == pytest.approx(2.0 * got["EPIC"], rel=0.05)


def test_dard_evaluates_only_recorded_transitions_moved_to_a_neighbour():
    # Every (s, A, S') DARD's state means evaluate is a recorded (act, next_obs) row of one of
    # the k recorded states nearest s: a reward that records its calls sees nothing else.
    seen = []

    def recording(o, a, n, i):
        seen.append((o.copy(), a.copy(), n.copy()))
        return R1(o, a, n, i)

    canonicalizer = Canonicalizer(DS, discount=GAMMA, canonicalizations=("dard",), n_eval=64,
                                  neighbours=4, n_pool=DS.n)
    canonicalizer(recording)
    recorded = {tuple(np.concatenate([a, n])) for a, n in zip(DS.actions, DS.next_observations,
                                                                 strict=True)}
    for _, act, nxt in seen[1:]:
        for row in np.concatenate([act, nxt], axis=1):
            assert tuple(row) in recorded


def test_the_transition_graph_finds_the_nearest_recorded_states():
    rows = np.arange(0, DS.n, 7)
    graph = TransitionGraph(DS, rows, neighbours=5, n_pool=DS.n, closed=True,
                            rng=np.random.default_rng(0))
    pooled = np.concatenate([DS.observations, DS.next_observations])
    z = (DS.observations - pooled.mean(0)) / pooled.std(0)
    for node in range(0, graph.n_nodes, 37):
        q = (graph.nodes[node] - pooled.mean(0)) / pooled.std(0)
        brute = np.argsort(np.linalg.norm(z - q, axis=1), kind="stable")[:5]
        np.testing.assert_array_equal(np.sort(graph.neighbour_rows[node]), np.sort(brute))
    # a closed graph: every successor's next state is a node
    np.testing.assert_array_equal(graph.nodes[graph.successor_node],
                                  DS.next_observations[graph.neighbour_rows])


def test_the_value_function_solves_the_bellman_equation_of_the_chain():
    graph = TransitionGraph(DS, np.arange(DS.n), neighbours=8, n_pool=DS.n, closed=True,
                            rng=np.random.default_rng(0))
    means = np.random.default_rng(1).normal(size=graph.n_nodes)
    level, rest = graph.values(means, 0.95)
    assert level == pytest.approx(np.mean(means))
    value = level / 0.05 + rest
    backup = means + 0.95 * value[graph.successor_node].mean(axis=1)
    np.testing.assert_allclose(backup, value, rtol=0, atol=1e-9 * np.abs(value).max())


# ---------------------------------------------------------------------------- intervals


def test_a_known_non_equivalent_pair_lies_inside_its_interval():
    for measure in compare_rewards(R1, {"R2": R2}, DS, measures=MEASURES)[0].measures:
        low, high = measure.ci
        assert low < high, measure.name
        if measure.name.endswith("Linf"):
            continue   # the bootstrap of a maximum is known to sit below it (module docs)
        assert low <= measure.value <= high, measure.name
        assert measure.level == 0.95 and measure.resamples == 200
        assert measure.transitions == DS.n


def test_intervals_are_deterministic_given_a_seed_and_move_with_it():
    first = [d.as_dict() for d in compare_rewards(R1, {"R2": R2}, DS, **SMALL, seed=4)]
    again = [d.as_dict() for d in compare_rewards(R1, {"R2": R2}, DS, **SMALL, seed=4)]
    other = [d.as_dict() for d in compare_rewards(R1, {"R2": R2}, DS, **SMALL, seed=5)]
    assert json.dumps(first) == json.dumps(again)
    assert json.dumps(first) != json.dumps(other)


def test_more_resamples_do_not_move_the_evaluated_transitions():
    few = compare_rewards(R1, {"R2": R2}, DS, bootstrap=10)[0].measures
    many = compare_rewards(R1, {"R2": R2}, DS, bootstrap=300)[0].measures
    assert [m.value for m in few] == [m.value for m in many]
    assert [m.resamples for m in few] == [10] * len(few)


def test_intervals_narrow_with_more_transitions():
    # The width of a percentile interval shrinks as 1/sqrt(n): 4x the transitions, half the
    # width, asserted with a wide margin (0.75).
    small = trajectories(seed=1, episodes=8)
    large = trajectories(seed=1, episodes=32)
    measures = ("EPIC", "DARD", "STARC-epic-L1", "STARC-epic-L2", "STARC-value-L1",
                "STARC-value-L2")
    widths = {}
    for name, data in (("small", small), ("large", large)):
        result = compare_rewards(R1, {"R2": R2}, data, measures=measures, n_eval=data.n)
        widths[name] = {m.name: m.ci[1] - m.ci[0] for m in result[0].measures}
    for measure in measures:
        assert widths["large"][measure] < 0.75 * widths["small"][measure], measure


def test_a_reward_constant_on_most_transitions_keeps_its_defined_resamples():
    # Non-zero on two transitions only: a resample misses both with probability ~e^-2, and
    # there the Pearson distance is undefined; those resamples are left out and counted.
    threshold = np.sort(DS.next_observations[:, 0])[-3]
    rare = lambda o, a, n, i: (n[:, 0] > threshold).astype(float)  # noqa: E731
    measure = compare_rewards(rare, {"R1": R1}, DS, measures=("EPIC",),
                              bootstrap=100)[0].measures[0]
    assert 50 < measure.resamples < 100
    assert measure.ci is not None


# ---------------------------------------------------------------------------- artifacts


def artifact(terms: dict[str, str], **provenance) -> RewardArtifact:
    feats = FeatureSet({"x": "next_obs[0]", "y": "obs[1]", "u": "act[0]", "h": "info.h"})
    terms = [Term(n, e, locked=n.startswith("locked")) for n, e in terms.items()]
    return RewardArtifact(name="toy", features=feats, terms=terms, provenance=provenance)


FRONT = [
    {"complexity": 0, "heldout_loss": 0.69, "heldout_accuracy": 0.5, "formula": "0"},
    {"complexity": 4, "heldout_loss": 0.36, "heldout_accuracy": 0.81, "formula": "-0.74*abs(x)"},
    {"complexity": 9, "heldout_loss": 0.30, "heldout_accuracy": 0.84,
     "formula": "0.45*u - 1.24*x**2", "chosen": True},
    {"complexity": 13, "heldout_loss": 0.29, "heldout_accuracy": 0.85,
     "formula": "0.1*y + 0.43*u - 1.27*x**2"},
    {"complexity": 15, "heldout_loss": 0.31, "heldout_accuracy": 0.8, "formula": "oops(x)"},
]


def test_artifacts_are_compared_as_their_compiled_rewards():
    a = artifact({"locked_effort": "-0.1*u**2", "main": "0.45*u - 1.24*x**2"})
    fn = a.batch_reward()
    got = compare_rewards(a, {"itself": fn}, DS, measures=MEASURES)[0].measures
    assert all(m.value == 0.0 for m in got)


def test_the_front_is_rebuilt_with_the_locked_terms_and_runners_up_ordered_by_loss():
    a = artifact({"locked_effort": "-0.1*u**2", "main": "0.45*u - 1.24*x**2"}, front=FRONT)
    members = front_members(a)
    assert [m.index for m in members] == [0, 1, 2, 3, 4]
    assert members[4].artifact is None and "oops" in members[4].problem
    assert members[2].chosen
    rebuilt = members[3].artifact
    assert [t.expr for t in rebuilt.terms] == ["-0.1*u**2", "0.1*y + 0.43*u - 1.27*x**2"]
    # "0" is the locked terms alone: a reward; without locked terms, a constant
    assert [t.expr for t in members[0].artifact.terms] == ["-0.1*u**2", "0"]
    unlocked = front_members(artifact({"main": "0.45*u - 1.24*x**2"}, front=FRONT))
    assert unlocked[0].artifact is None and "constant" in unlocked[0].problem
    assert [m.index for m in runners_up(a)] == [3, 1, 0]
    assert [m.index for m in runners_up(a, 1)] == [3]
    comparisons = default_comparisons(a, limit=2)
    assert list(comparisons) == ["front #3 (complexity 13)", "front #1 (complexity 4)"]
    assert all(c.source == "front" and c.path is None for c in comparisons.values())
    entries = compare_rewards(a, comparisons, DS, **SMALL)
    record = json.loads(json.dumps([e.as_dict() for e in entries]))
    assert record[0]["source"] == "front" and record[0]["path"] is None
    assert "x**2" in record[0]["formula"]
    assert [m["name"] for m in record[0]["measures"]][:2] == ["EPIC", "DARD"]
    assert artifact({"main": "x"}).provenance == {} and front_members(artifact({"main": "x"})) == []


def test_the_parent_is_found_by_its_content_hash_beside_the_artifact(tmp_path):
    parent = artifact({"main": "0.45*u - 1.24*x**2"})
    parent.save(tmp_path / "v1.toml")
    (tmp_path / "notes.toml").write_text("not an artifact = [\n")
    artifact({"main": "u"}).save(tmp_path / "unrelated.toml")
    child = artifact({"main": "0.3*u - 1.24*x**2"})
    child.record_change("set main", parent.content_hash())
    child.save(tmp_path / "v2.toml")
    child = RewardArtifact.load(tmp_path / "v2.toml")
    assert find_parent(child) == tmp_path / "v1.toml"
    comparisons = default_comparisons(child)
    assert list(comparisons) == ["parent (v1.toml)"]
    assert comparisons["parent (v1.toml)"].path == str(tmp_path / "v1.toml")
    # elsewhere: found only when its place is searched
    other = tmp_path / "elsewhere"
    other.mkdir()
    (tmp_path / "v1.toml").rename(other / "v1.toml")
    assert find_parent(child) is None
    assert find_parent(child, [other]) == other / "v1.toml"
    assert find_parent(parent) is None   # no recorded parent


# ---------------------------------------------------------------------------- disagreement


def test_disagreement_is_zero_among_equivalent_members_and_finds_where_they_differ():
    shaped = equivalent(R1, 3.0, -1.0, potential([1.0, 0.5, 0.2, -0.3]))
    same = disagreement([R1, shaped, R1], DS)
    assert same.max <= 1e-7 and same.members == 3
    # Two members that differ only on the 5% of transitions with the largest obs[0], by twice
    # the reward's spread: the spread is largest there.
    threshold = np.quantile(DS.observations[:, 0], 0.95)
    size = 2.0 * np.std(R1(DS.observations, DS.actions, DS.next_observations, DS.infos))
    bump = lambda o, a, n, i: R1(o, a, n, i) + size * (o[:, 0] > threshold)  # noqa: E731
    differ = disagreement([R1, bump], DS, canonicalization="none", top=5)
    assert differ.max > 0.5
    assert all(DS.observations[i, 0] > threshold for i, _ in differ.most_uncertain)
    spreads = [s for _, s in differ.most_uncertain]
    assert spreads == sorted(spreads, reverse=True) and spreads[0] == differ.max
    record = json.loads(json.dumps(differ.as_dict()))
    assert set(record) >= {"members", "mean", "p90", "max", "most_uncertain"}
    assert record["most_uncertain"][0].keys() == {"index", "spread"}
    assert differ.p90 < 0.2 < differ.max   # 95% of the transitions agree closely


def test_front_uncertainty_uses_the_artifact_and_its_runners_up():
    a = artifact({"main": "0.45*u - 1.24*x**2"}, front=FRONT)
    result = front_uncertainty(a, DS, n_eval=256, n_mean=64)
    assert result.members == 3 and result.transitions == 256
    assert front_uncertainty(artifact({"main": "x"}), DS) is None


# ---------------------------------------------------------------------------- bad input


def test_constant_rewards_are_named():
    zero = lambda o, a, n, i: np.zeros(o.shape[0])  # noqa: E731
    pure_shaping = equivalent(zero, 1.0, 2.0, potential([1.0, 1.0, 1.0, 1.0]))
    for measure in compare_rewards(zero, {"shaping": pure_shaping}, DS,
                                   measures=MEASURES)[0].measures:
        assert measure.value == 0.0
    with pytest.raises(SymrewardError, match="'shaping' is equivalent to a constant"):
        compare_rewards(R1, {"shaping": pure_shaping}, DS)
    with pytest.raises(SymrewardError, match="reward_a is equivalent to a constant"):
        dard_distance(zero, R1, DS)
    with pytest.raises(SymrewardError, match="STARC-value-L1 distance is undefined"):
        starc_distance(zero, R1, DS, canonicalization="value", norm="L1")
    with pytest.raises(SymrewardError, match="member 1 is equivalent to a constant"):
        disagreement([R1, zero], DS)


def test_an_artifact_that_does_not_fit_the_dataset_is_named_before_anything_runs():
    wide = RewardArtifact(name="wide", features=FeatureSet({"far": "obs[7]"}),
                          terms=[Term("main", "far")])
    with pytest.raises(FeatureError, match=r"reads obs\[7\] but .* width 3"):
        compare_rewards(R1, {"wide": wide}, DS)
    needs_info = RewardArtifact(name="v", features=FeatureSet({"v": "info.y_velocity"}),
                                terms=[Term("main", "v")])
    with pytest.raises(FeatureError, match="no key 'infos/y_velocity'"):
        compare_rewards(needs_info, {"R1": R1}, DS)


def test_bad_options_and_rewards_are_reported():
    with pytest.raises(SymrewardError, match="unknown measure"):
        compare_rewards(R1, {"R2": R2}, DS, measures=("EPIC", "STARC-minimal-L2"))
    with pytest.raises(SymrewardError, match="resamples must be a positive integer"):
        compare_rewards(R1, {"R2": R2}, DS, bootstrap=0)
    with pytest.raises(SymrewardError, match="confidence level"):
        compare_rewards(R1, {"R2": R2}, DS, level=95)
    with pytest.raises(SymrewardError, match="value-adjusted canonicalisation needs discount"):
        compare_rewards(R1, {"R2": R2}, DS, discount=1.0)
    assert compare_rewards(R1, {"R2": R2}, DS, discount=1.0, measures=("EPIC", "DARD"))
    with pytest.raises(SymrewardError, match="others must map labels"):
        compare_rewards(R1, [R2], DS)
    with pytest.raises(SymrewardError, match="a path"):
        compare_rewards(R1, {"file": "other.toml"}, DS)
    with pytest.raises(SymrewardError, match=r"'bad' returned shape \(400, 1\)"):
        compare_rewards(R1, {"bad": lambda o, a, n, i: R1(o, a, n, i)[:, None]}, DS)
    with pytest.raises(SymrewardError, match="n_pool"):
        dard_distance(R1, R2, DS, neighbours=32, n_pool=16)
    with pytest.raises(SymrewardError, match="fewer than the 500 neighbours"):
        dard_distance(R1, R2, DS, neighbours=500, n_pool=1000)
    with pytest.raises(SymrewardError, match="source"):
        Counterpart(R2, source="sibling")
    with pytest.raises(SymrewardError, match="at least 2 members"):
        disagreement([R1], DS)
    with pytest.raises(SymrewardError, match="built for dard, not epic"):
        Canonicalizer(DS, discount=GAMMA, canonicalizations=("dard",))(R1, "r", ("epic",))
    with pytest.raises(SymrewardError, match="unknown canonicalisation"):
        Canonicalizer(DS, discount=GAMMA, canonicalizations=("minimal",))
    assert not math.isnan(values(compare_rewards(R1, {"R2": R2}, DS, **SMALL))["EPIC"])
