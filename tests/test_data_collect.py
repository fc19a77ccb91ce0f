"""Collecting datasets from real gymnasium environments."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from symreward.data import collect
from symreward.errors import DataError


class CounterEnv(gym.Env):
    """A tiny real env: the state counts steps, episodes terminate after 3 steps.

    Its infos exercise the rules for which infos become columns: ``always`` (scalar on every
    step) is kept; ``sometimes`` (missing on odd steps), ``vector`` (not scalar), ``label``
    (not numeric) and ``spiky`` (NaN once) are not.
    """

    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float64)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self):
        self.t = 0
        self.total = 0  # steps over all episodes

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.array([0.0, -1.0]), {"reset_only": 1.0}

    def step(self, action):
        self.t += 1
        self.total += 1
        info = {
            "always": np.float32(self.t),
            "vector": np.ones(2),
            "label": "x",
            "spiky": np.nan if self.total == 4 else 1.0,
            "flag": bool(self.t % 2),
        }
        if self.t % 2 == 0:
            info["sometimes"] = 1.0
        obs = np.array([float(self.t), float(action[0])])
        return obs, float(self.t), self.t >= 3, False, info


if "SymrewardTest/Counter-v0" not in gym.registry:
    gym.register("SymrewardTest/Counter-v0", entry_point=CounterEnv)


def pendulum_reward(ds) -> np.ndarray:
    cos, sin, theta_dot = ds.observations.astype(np.float64).T
    torque = np.clip(ds.actions[:, 0], -2.0, 2.0)
    return -(np.arctan2(sin, cos) ** 2 + 0.1 * theta_dot**2 + 0.001 * torque**2)


def test_pendulum_random_episodes_and_alignment():
    ds = collect("Pendulum-v1", "random", 250, seed=0, max_episode_steps=100)
    assert ds.n == 250 and (ds.obs_dim, ds.act_dim) == (3, 1)
    assert ds.observations.dtype == np.float32
    assert ds.episode_ends.tolist() == [100, 200, 250]
    assert np.flatnonzero(ds.timeouts).tolist() == [99, 199, 249]
    assert not ds.terminals.any()
    # rewards belong to the (obs, action) on the same row
    np.testing.assert_allclose(ds.rewards, pendulum_reward(ds), rtol=1e-5, atol=1e-5)
    for s, e in zip(ds.episode_starts, ds.episode_ends, strict=True):
        np.testing.assert_array_equal(ds.next_observations[s:e - 1], ds.observations[s + 1:e])
    # at an episode end next_observations is the stepped-to state, not the next reset state
    assert not np.array_equal(ds.next_observations[99], ds.observations[100])
    assert ds.infos == {}
    assert "Pendulum-v1" in ds.source


def test_same_seed_same_data_other_seed_other_data():
    a = collect("Pendulum-v1", "random", 60, seed=3, max_episode_steps=25)
    b = collect("Pendulum-v1", "random", 60, seed=3, max_episode_steps=25)
    c = collect("Pendulum-v1", "random", 60, seed=4, max_episode_steps=25)
    for key, value in a.to_arrays().items():
        np.testing.assert_array_equal(value, b.to_arrays()[key], err_msg=key)
    assert not np.array_equal(a.observations, c.observations)
    assert not np.array_equal(a.actions, c.actions)


def test_callable_policy_gets_obs_and_a_seeded_rng():
    seen = []

    def policy(obs, rng):
        assert isinstance(rng, np.random.Generator)
        seen.append(np.array(obs))
        return np.array([-2.0 * obs[2] / 8.0 + rng.uniform(-0.1, 0.1)], dtype=np.float32)

    ds = collect("Pendulum-v1", policy, 30, seed=1)
    ds2 = collect("Pendulum-v1", policy, 30, seed=1)
    assert len(seen) == 60
    np.testing.assert_array_equal(np.array(seen[:30]), ds.observations)
    np.testing.assert_array_equal(ds.actions, ds2.actions)
    # default time limit (200) not reached: the cut episode is closed by a timeout on the last row
    assert np.flatnonzero(ds.timeouts).tolist() == [29]


def test_scalar_infos_present_on_every_step_are_kept():
    ds = collect("SymrewardTest/Counter-v0", "random", 8, seed=0)
    assert set(ds.infos) == {"always", "flag"}
    np.testing.assert_array_equal(ds.infos["always"], [1, 2, 3, 1, 2, 3, 1, 2])
    np.testing.assert_array_equal(ds.infos["flag"], [1, 0, 1, 1, 0, 1, 1, 0])
    # terminations every 3 steps; the cut final episode ends with a timeout
    assert np.flatnonzero(ds.terminals).tolist() == [2, 5]
    assert np.flatnonzero(ds.timeouts).tolist() == [7]
    # the terminal next observation is the state stepped to
    assert ds.next_observations[2, 0] == 3.0 and ds.observations[3, 0] == 0.0
    np.testing.assert_array_equal(ds.next_observations[:, 1], ds.actions[:, 0])


def test_terminal_last_row_is_not_also_a_timeout():
    ds = collect("SymrewardTest/Counter-v0", "random", 6, seed=0)
    assert ds.terminals[-1] and not ds.timeouts[-1]


def test_mujoco_infos_become_columns(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # MuJoCo writes MUJOCO_LOG.TXT into the working directory
    ds = collect("HalfCheetah-v5", "random", 20, seed=0)
    assert {"x_position", "x_velocity", "reward_forward", "reward_ctrl"} <= set(ds.infos)
    np.testing.assert_allclose(
        ds.rewards, ds.infos["reward_forward"] + ds.infos["reward_ctrl"], rtol=1e-6, atol=1e-6
    )
    assert (ds.obs_dim, ds.act_dim) == (17, 6)


def test_discrete_actions_are_one_float_column():
    ds = collect("CartPole-v1", "random", 40, seed=0)
    assert ds.actions.shape == (40, 1) and ds.actions.dtype == np.float64
    assert set(np.unique(ds.actions)) <= {0.0, 1.0}
    assert ds.terminals.any()  # random CartPole falls within 40 steps


def test_errors():
    with pytest.raises(DataError, match=r"environment 'NoSuchEnv-v0': cannot be created"):
        collect("NoSuchEnv-v0", "random", 5, seed=0)
    with pytest.raises(ValueError, match="policy must be a callable or 'random'"):
        collect("Pendulum-v1", "greedy", 5, seed=0)
    with pytest.raises(ValueError, match="n_steps must be a positive integer"):
        collect("Pendulum-v1", "random", 0, seed=0)
    with pytest.raises(DataError, match=r"policy returned an action with 2 values at step 0; the "
                                        r"action space .* needs 1"):
        collect("Pendulum-v1", lambda obs, rng: np.zeros(2), 5, seed=0)


class FullPrecisionPendulum(gym.ObservationWrapper):
    """Pendulum observations computed in float64 from the env's own (float64) state.

    With ``declare_space`` the observation space says float64, as a well-behaved wrapper's
    should; without it the space still says float32 and only the observations are float64.
    """

    def __init__(self, env, declare_space: bool):
        super().__init__(env)
        if declare_space:
            space = env.observation_space
            self.observation_space = gym.spaces.Box(
                space.low.astype(np.float64), space.high.astype(np.float64), dtype=np.float64
            )
        self.closed = False

    def observation(self, observation):
        th, thdot = self.unwrapped.state
        return np.array([np.cos(th), np.sin(th), thdot], dtype=np.float64)

    def close(self):
        self.closed = True
        super().close()


@pytest.mark.parametrize("declare_space", [True, False])
def test_collect_from_an_env_instance_keeps_float64_observations(declare_space):
    env = FullPrecisionPendulum(gym.make("Pendulum-v1", max_episode_steps=20), declare_space)
    seen = []

    def policy(obs, rng):
        seen.append(obs)
        return rng.uniform(-2.0, 2.0, size=1).astype(np.float32)

    ds = collect(env, policy, 30, seed=2)
    assert ds.observations.dtype == np.float64 and ds.next_observations.dtype == np.float64
    np.testing.assert_array_equal(ds.observations, np.array(seen))
    # the values really use float64 precision: a float32 round trip would change them
    assert not np.array_equal(ds.observations, ds.observations.astype(np.float32))
    assert ds.episode_ends.tolist() == [20, 30]
    # float64 observations give the reward to float64 accuracy
    np.testing.assert_allclose(ds.rewards, pendulum_reward(ds), rtol=1e-9, atol=1e-12)
    assert "Pendulum-v1" in ds.source
    # the caller owns the env: it is not closed and can still be used
    assert not env.closed
    env.step(np.zeros(1, np.float32))
    env.close()


def test_env_instances_are_named_by_spec_id_or_class():
    ds = collect(CounterEnv(), "random", 4, seed=0)
    assert "CounterEnv" in ds.source
    assert np.flatnonzero(ds.terminals).tolist() == [2]
    blackjack = gym.make("Blackjack-v1")
    with pytest.raises(DataError, match=r"^environment 'Blackjack-v1': observation space Tuple"):
        collect(blackjack, "random", 5, seed=0)
    blackjack.close()


def test_env_instance_errors():
    env = gym.make("Pendulum-v1")
    with pytest.raises(ValueError, match="max_episode_steps applies only when env is an id"):
        collect(env, "random", 5, seed=0, max_episode_steps=3)
    env.close()
    with pytest.raises(TypeError, match="env must be an environment id or a gymnasium.Env"):
        collect(object(), "random", 5, seed=0)
