"""Reading real Minari datasets (written by minari itself into a temporary MINARI_DATASETS_PATH).

Minari's ``DataCollector`` wrapper needs jax (``minari[create]``) to append steps, which the
test environment does not have, so episodes are recorded from real gymnasium rollouts into
Minari's own ``EpisodeBuffer`` and written with ``minari.create_dataset_from_buffers`` — the same
HDF5 storage code the collector uses, with the same layout (T+1 observations and infos per
episode, the first info being the reset info).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import minari
import numpy as np
import pytest
from minari.data_collector import EpisodeBuffer

from symreward.data import load_dataset
from symreward.errors import DataError

# minari nags about metadata a real published dataset should have; irrelevant here.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:minari.utils")

META = {
    "author": "symreward tests",
    "author_email": "tests@example.invalid",
    "code_permalink": "https://example.invalid/symreward",
    "algorithm_name": "random",
    "description": "tiny test dataset",
}


@pytest.fixture
def minari_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "minari"
    root.mkdir()
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


def rollout(env_id: str, lengths, flags, seed: int = 0):
    """Real env episodes as Minari EpisodeBuffers, plus the rewards and step observations seen.

    ``flags[i]`` says how episode i ends: "terminated", "truncated" or "none" (cut without a flag).
    """
    env = gym.make(env_id)
    env.action_space.seed(seed)
    buffers, env_rewards, step_obs = [], [], []
    for i, (length, flag) in enumerate(zip(lengths, flags, strict=True)):
        obs, _ = env.reset(seed=seed + i)
        observations, actions, rewards, infos_t, infos_v = [obs], [], [], [0.0], [np.zeros(2)]
        for t in range(length):
            action = env.action_space.sample()
            obs, reward, _, _, _ = env.step(action)
            observations.append(obs)
            actions.append(action)
            rewards.append(float(reward))
            step_obs.append(obs)
            infos_t.append(float(10 * i + t))  # a scalar info: step counter
            infos_v.append(np.full(2, t, dtype=float))  # a vector info: must be skipped
        last = [False] * (length - 1)
        buffers.append(EpisodeBuffer(
            id=i,
            observations=observations,
            actions=actions,
            rewards=rewards,
            terminations=[*last, flag == "terminated"],
            truncations=[*last, flag == "truncated"],
            infos={"tick": infos_t, "vec": infos_v},
        ))
        env_rewards.extend(rewards)
    return env, buffers, np.array(env_rewards), np.array(step_obs)


def make_pendulum_dataset(dataset_id: str = "test/pendulum-v0"):
    env, buffers, rewards, step_obs = rollout(
        "Pendulum-v1", lengths=[5, 7, 4], flags=["truncated", "none", "terminated"]
    )
    minari.create_dataset_from_buffers(dataset_id, buffers, env=env, data_format="hdf5", **META)
    return rewards, step_obs


def test_read_by_id_flattens_episodes(minari_root):
    rewards, step_obs = make_pendulum_dataset()
    ds = load_dataset("test/pendulum-v0")
    assert ds.source == "minari:test/pendulum-v0"
    assert (ds.n, ds.obs_dim, ds.act_dim) == (16, 3, 1)
    assert ds.observations.dtype == np.float32
    np.testing.assert_allclose(ds.rewards, rewards, rtol=0, atol=0)
    np.testing.assert_array_equal(ds.next_observations, step_obs)
    assert ds.episode_starts.tolist() == [0, 5, 12]
    assert ds.episode_ends.tolist() == [5, 12, 16]
    # within an episode, next_observations[t] is observations[t + 1]
    for s, e in zip(ds.episode_starts, ds.episode_ends, strict=True):
        np.testing.assert_array_equal(ds.next_observations[s:e - 1], ds.observations[s + 1:e])
    # flags: truncated end, unflagged end forced to a timeout, terminated end
    assert np.flatnonzero(ds.timeouts).tolist() == [4, 11]
    assert np.flatnonzero(ds.terminals).tolist() == [15]
    # scalar info aligned to the step that produced it (reset info dropped); vector info skipped
    assert set(ds.infos) == {"tick"}
    expected_tick = [0, 1, 2, 3, 4, *range(10, 17), *range(20, 24)]
    np.testing.assert_array_equal(ds.infos["tick"], expected_tick)


def test_pendulum_rewards_match_observations(minari_root):
    """Rewards are those of the (obs, action) on the same row: checks the row alignment."""
    make_pendulum_dataset()
    ds = load_dataset("test/pendulum-v0")
    cos, sin, theta_dot = ds.observations.astype(np.float64).T
    torque = np.clip(ds.actions[:, 0].astype(np.float64), -2, 2)
    expected = -(np.arctan2(sin, cos) ** 2 + 0.1 * theta_dot**2 + 0.001 * torque**2)
    np.testing.assert_allclose(ds.rewards, expected, rtol=1e-5, atol=1e-5)


def test_read_by_directory_and_by_main_data_file(minari_root):
    make_pendulum_dataset()
    root = minari_root / "test" / "pendulum-v0"
    by_id = load_dataset("test/pendulum-v0")
    for path in (root, root / "data", root / "data" / "main_data.hdf5"):
        ds = load_dataset(path)
        assert ds.source == str(path)
        np.testing.assert_array_equal(ds.observations, by_id.observations)
        np.testing.assert_array_equal(ds.timeouts, by_id.timeouts)


def test_discrete_actions_become_one_float_column(minari_root):
    env, buffers, rewards, _ = rollout("CartPole-v1", lengths=[6, 6], flags=["none", "none"])
    minari.create_dataset_from_buffers("cartpole/test-v1", buffers, env=env, **META)
    ds = load_dataset("cartpole/test-v1")
    assert ds.actions.shape == (12, 1) and ds.actions.dtype == np.float64
    assert set(np.unique(ds.actions)) <= {0.0, 1.0}
    np.testing.assert_array_equal(ds.rewards, rewards)
    assert np.flatnonzero(ds.timeouts).tolist() == [5, 11]


def test_dict_observation_space_is_rejected(minari_root):
    obs_space = gym.spaces.Dict({"pos": gym.spaces.Box(-1, 1, (2,), np.float32)})
    act_space = gym.spaces.Box(-1, 1, (1,), np.float32)
    buffer = EpisodeBuffer(
        id=0,
        observations={"pos": [np.zeros(2, np.float32)] * 3},
        actions=[np.zeros(1, np.float32)] * 2,
        rewards=[0.0, 0.0],
        terminations=[False, True],
        truncations=[False, False],
        infos={},
    )
    minari.create_dataset_from_buffers(
        "test/dict-v0", [buffer], observation_space=obs_space, action_space=act_space, **META
    )
    with pytest.raises(DataError, match=r"^minari:test/dict-v0: observation space Dict\(.*only "
                                        r"Box observation spaces are"):
        load_dataset("test/dict-v0")


def test_missing_minari_id_and_non_minari_directory(minari_root, tmp_path):
    with pytest.raises(DataError, match=r"^test/absent-v3: no such file, and no local Minari "
                                        r"dataset with that id"):
        load_dataset("test/absent-v3")
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(DataError, match=rf"^{plain}: is a directory but not a Minari dataset"):
        load_dataset(plain)


def test_importing_symreward_data_is_lazy():
    code = (
        "import sys, symreward.data\n"
        "heavy = [m for m in ('minari', 'gymnasium', 'h5py') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                         check=True, env={"PYTHONPATH": str(root)})
    assert out.stdout.strip() == ""
