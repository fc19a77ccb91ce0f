"""EPIC distance: the invariances that define it, its estimator's behaviour, and its edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import nonlinear_system

from symreward.audit import canonicalize, epic_distance, pearson_distance
from symreward.audit.epic import _pool_info_rows
from symreward.data import Dataset
from symreward.errors import SymrewardError

GAMMA = 0.99
FAST = settings(max_examples=25, deadline=None)


def make_dataset(seed: int = 0, episodes: int = 5, length: int = 40,
                 dtype: type = np.float64) -> Dataset:
    return nonlinear_system(seed, episodes, length, dtype)


DS = make_dataset()


def features(o: np.ndarray, a: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Nonlinear features mixing s, a and s' jointly, so the mean terms of EPIC matter."""
    return np.stack([
        n[:, 0] ** 2,
        np.abs(n[:, 0] - o[:, 0]),
        o[:, 1] * a[:, 0],
        np.sin(n[:, 1]) * o[:, 2],
        a[:, 1] ** 2,
        np.tanh(o[:, 0] + n[:, 2]),
    ], axis=1)


def linear_reward(w):
    w = np.asarray(w, dtype=np.float64)
    return lambda o, a, n, i: features(o, a, n) @ w


def potential(c):
    return lambda x: c[0] * np.sin(c[1] * x[:, 0]) + c[2] * x[:, 1] * x[:, 2] + c[3] * x[:, 0] ** 2


def shaped(reward, phi, discount=GAMMA):
    return lambda o, a, n, i: reward(o, a, n, i) + discount * phi(n) - phi(o)


R1 = linear_reward([-1.0, 0.0, 0.5, 0.0, -0.1, 0.0])        # -x'^2 and friends
R2 = linear_reward([0.0, -1.0, 0.5, 0.0, -0.1, 0.0])        # -|Δx| instead of -x'^2
R_UNRELATED = linear_reward([0.0, 0.0, 0.0, 1.0, 0.0, 1.0])

weights = st.lists(st.floats(-3.0, 3.0), min_size=6, max_size=6).filter(
    lambda w: max(abs(x) for x in w) > 0.1)
coeffs = st.lists(st.floats(-2.0, 2.0), min_size=4, max_size=4)


# ---------------------------------------------------------------------------- invariances


@FAST
@given(w=weights, scale=st.floats(1e-3, 1e3), offset=st.floats(-100.0, 100.0), c=coeffs)
def test_equivalent_rewards_are_at_distance_zero(w, scale, offset, c):
    r = linear_reward(w)
    phi = potential(c)
    assert epic_distance(r, r, DS, n_mean=64) <= 1e-9
    assert epic_distance(r, lambda *x: scale * r(*x), DS, n_mean=64) <= 1e-9
    assert epic_distance(r, lambda *x: r(*x) + offset, DS, n_mean=64) <= 1e-9
    combined = shaped(lambda *x: scale * r(*x) + offset, phi)
    assert epic_distance(r, combined, DS, n_mean=64) <= 1e-8


def test_reward_with_itself_is_exactly_zero():
    assert epic_distance(R1, R1, DS) == 0.0


@pytest.mark.parametrize("discount", [0.0, 0.5, GAMMA, 1.0])
def test_shaping_cancels_exactly_for_every_sample_size(discount):
    # The mean terms share one sample set, so γΦ(s') − Φ(s) cancels term by term: the distance
    # is zero up to rounding already at n_mean=1 (it does not merely shrink as n_mean grows).
    phi = potential([1.5, 2.0, -0.7, 0.3])
    target = shaped(R1, phi, discount)
    for n_mean in (1, 8, 64, 512):
        assert epic_distance(R1, target, DS, discount=discount, n_mean=n_mean) <= 1e-9


def test_shaping_with_the_wrong_discount_is_not_invisible():
    phi = potential([1.5, 2.0, -0.7, 0.3])
    assert epic_distance(R1, shaped(R1, phi, 0.5), DS, discount=GAMMA) > 0.05


@pytest.mark.parametrize("discount", [0.5, GAMMA, 1.0])
def test_a_nontrivial_equivalence_is_found(discount):
    # -s^2 + γΦ(s') − Φ(s) with Φ = -s^2 is -γ·s'^2: a reward on the state before the step is
    # equivalent to the same reward on the state after it, for any γ > 0.
    before = lambda o, a, n, i: -o[:, 0] ** 2  # noqa: E731
    after = lambda o, a, n, i: -n[:, 0] ** 2  # noqa: E731
    assert epic_distance(before, after, DS, discount=discount) <= 1e-9
    # With γ = 0 any function of s alone is shaping, so it is equivalent to the zero reward.
    with pytest.raises(SymrewardError, match="reward_a is equivalent to a constant"):
        epic_distance(before, after, DS, discount=0.0)


def test_shaping_invariance_holds_for_rewards_that_read_infos():
    r = lambda o, a, n, i: i["x_velocity"] - 0.1 * a[:, 0] ** 2 + o[:, 1] * i["h"]  # noqa: E731
    phi = potential([0.4, 3.0, 1.0, -0.2])
    assert epic_distance(r, shaped(lambda *x: 2.0 * r(*x), phi), DS) <= 1e-9


def test_negation_is_at_distance_one():
    assert epic_distance(R1, lambda *x: -R1(*x), DS) == pytest.approx(1.0, abs=1e-6)
    phi = potential([1.0, 1.0, 1.0, 1.0])
    negated = shaped(lambda *x: -4.0 * R2(*x) + 7.0, phi)
    assert epic_distance(R2, negated, DS) == pytest.approx(1.0, abs=1e-6)


# ---------------------------------------------------------------------------- metric properties


@FAST
@given(wa=weights, wb=weights, seed=st.integers(0, 2**32 - 1))
def test_symmetric_and_bounded(wa, wb, seed):
    ra, rb = linear_reward(wa), linear_reward(wb)
    ab = epic_distance(ra, rb, DS, n_mean=32, n_eval=128, seed=seed)
    ba = epic_distance(rb, ra, DS, n_mean=32, n_eval=128, seed=seed)
    assert 0.0 <= ab <= 1.0
    assert ab == pytest.approx(ba, abs=1e-12)


def test_different_rewards_are_clearly_apart():
    assert epic_distance(R1, R2, DS) > 0.1
    assert epic_distance(R1, R_UNRELATED, DS) > 0.3
    square = lambda o, a, n, i: -n[:, 0] ** 2  # noqa: E731
    absolute = lambda o, a, n, i: -np.abs(n[:, 0])  # noqa: E731
    assert epic_distance(square, absolute, DS) > 0.05


def test_action_only_rewards_reduce_to_pearson_distance_of_the_raw_values():
    # With R(s, a, s') = f(a) the mean terms are constants, so EPIC is exactly the Pearson
    # distance of the raw rewards over the evaluated transitions: an independent check of value.
    fa = lambda o, a, n, i: np.sin(3.0 * a[:, 0]) + a[:, 1]  # noqa: E731
    fb = lambda o, a, n, i: a[:, 0] ** 3 - a[:, 1] ** 2  # noqa: E731
    expected = pearson_distance(fa(None, DS.actions, None, {}), fb(None, DS.actions, None, {}))
    for n_mean in (1, 100):
        assert epic_distance(fa, fb, DS, n_mean=n_mean) == pytest.approx(expected, abs=1e-12)


def test_estimate_converges_as_n_mean_grows():
    # Finite n_mean adds a sampling error between non-equivalent rewards; it must shrink.
    def spread_and_bias(n_mean: int) -> tuple[float, float]:
        values = np.array([epic_distance(R1, R2, DS, n_mean=n_mean, seed=s) for s in range(6)])
        return float(values.std()), float(np.abs(values - reference).mean())

    reference = epic_distance(R1, R2, DS, n_mean=4000, seed=123)
    spread_small, bias_small = spread_and_bias(2)
    spread_large, bias_large = spread_and_bias(512)
    assert spread_large < spread_small / 3
    assert bias_large < bias_small / 3
    assert bias_large < 0.01


def test_deterministic_for_a_seed():
    first = epic_distance(R1, R2, DS, n_mean=16, n_eval=64, seed=7)
    assert epic_distance(R1, R2, DS, n_mean=16, n_eval=64, seed=7) == first
    assert epic_distance(R1, R2, DS, n_mean=16, n_eval=64, seed=8) != first


def test_held_out_and_float32_datasets():
    held_out = make_dataset(seed=99, episodes=3, dtype=np.float32)
    assert held_out.observations.dtype == np.float32
    d = epic_distance(R1, R2, held_out)
    assert 0.1 < d < 1.0
    assert epic_distance(R1, shaped(R1, potential([1, 1, 1, 1])), held_out) <= 1e-6


# ---------------------------------------------------------------------------- canonicalize


def brute_force_canonical(reward, obs, act, nxt, infos, cov_s, cov_a, cov_sp, cov_info, gamma):
    def r(s, a, sp, info):
        return reward(s[None], a[None], sp[None], {k: np.array([v]) for k, v in info.items()})[0]

    def mean_from(x):
        return np.mean([
            r(x, cov_a[j], cov_sp[j], {k: v[j] for k, v in cov_info.items()})
            for j in range(len(cov_a))
        ])

    total = np.mean([mean_from(s) for s in cov_s])
    return np.array([
        r(obs[t], act[t], nxt[t], {k: v[t] for k, v in infos.items()})
        + gamma * mean_from(nxt[t]) - mean_from(obs[t]) - gamma * total
        for t in range(len(obs))
    ])


def test_canonicalize_matches_the_formula_term_by_term():
    rng = np.random.default_rng(3)
    rows = rng.choice(DS.n, size=12, replace=False)
    cov_s, cov_a, cov_sp = rng.choice(DS.n, size=7), rng.choice(DS.n, size=5), rng.choice(
        DS.n, size=5)
    reward = lambda o, a, n, i: features(o, a, n) @ np.arange(1.0, 7.0) + i["h"] * o[:, 0]  # noqa: E731
    args = (
        DS.observations[rows], DS.actions[rows], DS.next_observations[rows],
        {"h": DS.infos["h"][rows]},
    )
    cover = dict(
        coverage_obs=DS.observations[cov_s], coverage_act=DS.actions[cov_a],
        coverage_next_obs=DS.next_observations[cov_sp],
        coverage_infos={"h": DS.infos["h"][cov_sp]},
    )
    got = canonicalize(reward, *args, discount=0.9, **cover)
    expected = brute_force_canonical(
        reward, *args, cover["coverage_obs"], cover["coverage_act"],
        cover["coverage_next_obs"], cover["coverage_infos"], 0.9,
    )
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    chunked = canonicalize(reward, *args, discount=0.9, max_batch_bytes=1, **cover)
    np.testing.assert_allclose(chunked, got, rtol=1e-13, atol=1e-13)


def test_canonicalize_shares_draws_by_default_and_checks_shapes():
    obs, act, nxt = DS.observations[:10], DS.actions[:10], DS.next_observations[:10]
    explicit = canonicalize(R1, obs, act, nxt, coverage_obs=obs, coverage_act=act,
                            coverage_next_obs=obs, discount=GAMMA)
    default = canonicalize(R1, obs, act, nxt, coverage_obs=obs, coverage_act=act, discount=GAMMA)
    np.testing.assert_array_equal(explicit, default)
    with pytest.raises(SymrewardError, match="paired row by row"):
        canonicalize(R1, obs, act, nxt, coverage_obs=obs, coverage_act=act[:3], discount=GAMMA)
    with pytest.raises(SymrewardError, match="same info names"):
        canonicalize(R1, obs, act, nxt, {"h": np.zeros(10)}, coverage_obs=obs,
                     coverage_act=act, discount=GAMMA)


def test_mean_batches_never_exceed_the_memory_budget_and_are_read_only():
    sizes = []

    def recording(o, a, n, i):
        sizes.append(o.shape[0])
        assert not o.flags.writeable or o.shape[0] == 50
        return R1(o, a, n, i)

    obs, act, nxt = DS.observations[:50], DS.actions[:50], DS.next_observations[:50]
    pair_bytes = 8 * (3 + 2 + 3) + 8
    canonicalize(recording, obs, act, nxt, coverage_obs=obs[:20], coverage_act=act[:20],
                 discount=GAMMA, max_batch_bytes=pair_bytes * 20 * 4)
    assert sizes[0] == 50  # the raw rewards
    assert max(sizes[1:]) <= 4 * 20


# ---------------------------------------------------------------------------- infos


def test_drawn_next_states_carry_the_info_of_the_transition_that_ended_there():
    rows = _pool_info_rows(DS)
    n = DS.n
    assert rows.shape == (2 * n,)
    np.testing.assert_array_equal(rows[n:], np.arange(n))  # next_observations[t] -> infos[t]
    starts = set(DS.episode_starts.tolist())
    for t in range(n):
        if t in starts:
            assert rows[t] == t  # no recorded transition reaches an episode's first state
        else:
            assert rows[t] == t - 1
            np.testing.assert_array_equal(DS.observations[t], DS.next_observations[t - 1])


def test_info_that_is_a_function_of_the_next_state_matches_the_state_formula():
    # Exact except at the first state of each episode (one pooled row in 2*length), where the
    # documented approximation substitutes that transition's own info.
    via_info = lambda o, a, n, i: i["h"] * o[:, 1] + a[:, 0]  # noqa: E731
    via_state = lambda o, a, n, i: np.tanh(n[:, 0]) * o[:, 1] + a[:, 0]  # noqa: E731
    assert epic_distance(via_info, via_state, DS) < 0.02


# ---------------------------------------------------------------------------- edge cases


def test_constant_rewards():
    zero = lambda o, a, n, i: np.zeros(o.shape[0])  # noqa: E731
    const = lambda o, a, n, i: np.full(o.shape[0], 3.25)  # noqa: E731
    pure_shaping = shaped(zero, potential([2.0, 1.0, 1.0, 1.0]))
    assert epic_distance(const, zero, DS) == 0.0
    assert epic_distance(const, pure_shaping, DS) == 0.0
    with pytest.raises(SymrewardError, match="reward_b is equivalent to a constant"):
        epic_distance(R1, pure_shaping, DS)
    with pytest.raises(ValueError, match="reward_a is equivalent to a constant"):
        epic_distance(const, R1, DS)


def test_bad_inputs_are_reported():
    with pytest.raises(SymrewardError, match=r"reward_b returned shape \(200, 1\)"):
        epic_distance(R1, lambda o, a, n, i: R1(o, a, n, i)[:, None], DS)
    with np.errstate(invalid="ignore"), pytest.raises(SymrewardError,
                                                      match="reward_a returned nan"):
        epic_distance(lambda o, a, n, i: np.log(o[:, 0]), R1, DS)
    with pytest.raises(SymrewardError, match="discount"):
        epic_distance(R1, R2, DS, discount=1.5)
    with pytest.raises(SymrewardError, match="n_eval"):
        epic_distance(R1, R2, DS, n_eval=1)
    with pytest.raises(SymrewardError, match="n_mean"):
        epic_distance(R1, R2, DS, n_mean=0)


# ---------------------------------------------------------------------------- pearson_distance


@FAST
@given(data=st.lists(st.tuples(st.floats(-1e3, 1e3), st.floats(-1e3, 1e3)), min_size=3,
                     max_size=50))
def test_pearson_distance_matches_the_textbook_formula(data):
    x, y = np.array(data).T
    if np.ptp(x) < 1e-6 or np.ptp(y) < 1e-6:
        return
    rho = np.corrcoef(x, y)[0, 1]
    assert pearson_distance(x, y) == pytest.approx(np.sqrt((1 - rho) / 2), abs=1e-7)


def test_pearson_distance_known_values_and_errors():
    x = np.array([1.0, -1.0, 1.0, -1.0])
    y = np.array([1.0, 1.0, -1.0, -1.0])
    assert pearson_distance(x, x) == 0.0
    assert pearson_distance(x, -x) == pytest.approx(1.0)
    assert pearson_distance(x, y) == pytest.approx(np.sqrt(0.5))
    assert pearson_distance(x * 1e200, y * 1e200) == pytest.approx(np.sqrt(0.5))
    with pytest.raises(SymrewardError, match="y is constant"):
        pearson_distance(x, np.ones(4))
    with pytest.raises(SymrewardError, match="same length"):
        pearson_distance(x, y[:3])
