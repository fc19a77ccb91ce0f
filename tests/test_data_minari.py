"""Reading real Minari datasets, written by Minari itself into a temporary MINARI_DATASETS_PATH.

Every dataset is recorded the way users record theirs: real gymnasium envs stepped through
Minari's ``DataCollector`` wrapper (HDF5 format, infos recorded) and saved with its
``create_dataset``. What the env returned on each step is kept alongside, so the flattened
transition table can be checked against it row by row.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from minari import DataCollector
from minari.data_collector.callbacks import StepDataCallback

from symreward.data import Dataset, load_dataset
from symreward.errors import DataError

pytestmark = [
    # minari nags about metadata a real published dataset should have; irrelevant here.
    pytest.mark.filterwarnings("ignore::UserWarning:minari.utils"),
    # the collector warns when a step's data is outside the declared spaces: a broken recording
    pytest.mark.filterwarnings("error::UserWarning:minari.data_collector"),
]

META = {
    "author": "symreward tests",
    "author_email": "tests@example.invalid",
    "code_permalink": "https://example.invalid/symreward",
    "algorithm_name": "seeded random",
    "description": "tiny test dataset",
}

RESET_TICK = -1.0


@pytest.fixture
def minari_root(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "minari"
    root.mkdir()
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return root


class TickInfos(StepDataCallback):
    """Adds two infos to what the env returns: ``tick`` (scalar, ``10 * episode + step``, and
    ``RESET_TICK`` on the reset info, which must be dropped) and ``vec`` (a vector: skipped)."""

    def __init__(self):
        self.episode, self.t = -1, 0

    def __call__(self, env, obs, info, action=None, **kwargs):
        step_data = super().__call__(env, obs, info, action=action, **kwargs)
        if action is None:  # called from reset
            self.episode, self.t, tick = self.episode + 1, 0, RESET_TICK
        else:
            tick = float(10 * self.episode + self.t)
            self.t += 1
        step_data["info"] = {**info, "tick": tick, "vec": np.full(2, tick)}
        return step_data


@dataclass
class Recorded:
    """The flattened transitions as the env produced them while the DataCollector recorded."""

    observations: np.ndarray
    actions: np.ndarray
    next_observations: np.ndarray
    rewards: np.ndarray
    terminals: np.ndarray
    timeouts: np.ndarray  # env truncations, plus the last step of every cut episode
    ticks: np.ndarray
    episode_ends: list[int]


def record(dataset_id: str, env_id: str, max_steps: list[int], seed: int = 0, **make_kwargs):
    """Run a seeded random policy in ``gym.make(env_id)`` wrapped by Minari's DataCollector.

    Episode i runs until the env terminates or truncates it, or is cut (by the next reset, or
    by ``create_dataset`` for the last one) after ``max_steps[i]`` steps.
    """
    env = DataCollector(
        gym.make(env_id, **make_kwargs),
        step_data_callback=TickInfos,
        record_infos=True,
        data_format="hdf5",
    )
    rng = np.random.default_rng(seed)
    space = env.action_space
    rows: dict[str, list] = {k: [] for k in ("obs", "act", "next", "rew", "term", "out", "tick")}
    ends = []
    for i, limit in enumerate(max_steps):
        obs, _ = env.reset(seed=seed + i)
        for t in range(limit):
            if isinstance(space, gym.spaces.Discrete):
                action = int(rng.integers(space.n))
            else:
                action = rng.uniform(space.low, space.high).astype(space.dtype)
            next_obs, reward, terminated, truncated, _ = env.step(action)
            rows["obs"].append(obs)
            rows["act"].append(action)
            rows["next"].append(next_obs)
            rows["rew"].append(float(reward))
            rows["term"].append(terminated)
            rows["out"].append(truncated or (t == limit - 1 and not terminated))
            rows["tick"].append(10 * i + t)  # what TickInfos adds to this step's info
            obs = next_obs
            if terminated or truncated:
                break
        ends.append(len(rows["rew"]))
    env.create_dataset(dataset_id, **META)
    env.close()
    return Recorded(
        observations=np.array(rows["obs"]),
        actions=np.array(rows["act"], dtype=np.float64).reshape(len(rows["act"]), -1),
        next_observations=np.array(rows["next"]),
        rewards=np.array(rows["rew"]),
        terminals=np.array(rows["term"]),
        timeouts=np.array(rows["out"]),
        ticks=np.array(rows["tick"], dtype=np.float64),
        episode_ends=ends,
    )


def make_pendulum_dataset(dataset_id: str = "test/pendulum-v0") -> Recorded:
    # time limit 6: episode 0 is truncated by the env, episode 1 cut by the next reset after 4
    # steps, episode 2 cut by create_dataset after 3
    return record(dataset_id, "Pendulum-v1", [10, 4, 3], max_episode_steps=6)


def assert_matches(ds, rec: Recorded) -> None:
    np.testing.assert_array_equal(ds.observations, rec.observations)
    np.testing.assert_array_equal(ds.actions, rec.actions)
    np.testing.assert_array_equal(ds.next_observations, rec.next_observations)
    np.testing.assert_array_equal(ds.rewards, rec.rewards)
    np.testing.assert_array_equal(ds.terminals, rec.terminals)
    np.testing.assert_array_equal(ds.timeouts, rec.timeouts)
    assert ds.episode_ends.tolist() == rec.episode_ends


def test_read_by_id_flattens_episodes(minari_root):
    rec = make_pendulum_dataset()
    ds = load_dataset("test/pendulum-v0")
    assert ds.source == "minari:test/pendulum-v0"
    assert (ds.n, ds.obs_dim, ds.act_dim) == (13, 3, 1)
    assert ds.observations.dtype == np.float32
    assert_matches(ds, rec)
    assert ds.episode_starts.tolist() == [0, 6, 10]
    assert ds.episode_ends.tolist() == [6, 10, 13]
    # within an episode, next_observations[t] is observations[t + 1]
    for s, e in zip(ds.episode_starts, ds.episode_ends, strict=True):
        np.testing.assert_array_equal(ds.next_observations[s:e - 1], ds.observations[s + 1:e])
    # at an episode end, next_observations is the state stepped to, not the next reset state
    assert not np.array_equal(ds.next_observations[5], ds.observations[6])
    # flags: env-truncated end, end cut by a reset, end cut by create_dataset; no terminations
    assert np.flatnonzero(ds.timeouts).tolist() == [5, 9, 12]
    assert not ds.terminals.any()
    # scalar info aligned to the step that produced it (reset info dropped); vector info skipped
    assert set(ds.infos) == {"tick"}
    expected_tick = [*range(0, 6), *range(10, 14), *range(20, 23)]
    np.testing.assert_array_equal(ds.infos["tick"], expected_tick)
    np.testing.assert_array_equal(ds.infos["tick"], rec.ticks)


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
    # episode 0 runs until the pole falls (terminated), episode 1 is cut after 6 steps
    rec = record("cartpole/test-v1", "CartPole-v1", [200, 6])
    n0 = rec.episode_ends[0]
    assert rec.terminals[n0 - 1] and n0 < 200 and rec.episode_ends == [n0, n0 + 6]
    ds = load_dataset("cartpole/test-v1")
    assert ds.actions.shape == (n0 + 6, 1) and ds.actions.dtype == np.float64
    assert set(np.unique(ds.actions)) == {0.0, 1.0}
    assert_matches(ds, rec)
    assert np.flatnonzero(ds.terminals).tolist() == [n0 - 1]
    assert np.flatnonzero(ds.timeouts).tolist() == [n0 + 5]


@pytest.mark.filterwarnings("ignore:env_spec is not serializable:UserWarning")
def test_dict_observation_space_is_rejected(minari_root):
    obs_space = gym.spaces.Dict({"pos": gym.spaces.Box(-1, 1, (2,), np.float32)})
    env = DataCollector(
        gym.wrappers.TransformObservation(
            gym.make("Pendulum-v1"), lambda obs: {"pos": obs[:2]}, obs_space
        ),
        data_format="hdf5",
    )
    env.reset(seed=0)
    for _ in range(2):
        env.step(np.zeros(1, np.float32))
    env.create_dataset("test/dict-v0", **META)
    env.close()
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


# ---------------------------------------------------------------------- read lazily (dask)
TICK_REWARD = """schema = "symreward/1"
name = "ticks"

[features]
theta = "atan2(obs[1], obs[0])"
tick = "info.tick"

[[terms]]
name = "pose"
expr = "-theta**2 + 0.01*tick"
"""


def test_a_minari_dataset_read_lazily_is_the_one_read_in_memory(minari_root):
    """Chunks of whole episodes, read from the data file a chunk at a time, hold the rows and
    flags the in-memory reader flattens, and eval over them (dask tasks) gives its rewards."""
    dask = pytest.importorskip("dask")
    from symreward.artifact import RewardArtifact
    from symreward.blocks import lazy_rewards
    from symreward.data.lazy import LazyDataset

    make_pendulum_dataset()
    record("cartpole/test-v1", "CartPole-v1", [200, 6, 9])
    root = minari_root / "test" / "pendulum-v0"
    for source in ("minari:test/pendulum-v0", str(root), str(root / "data" / "main_data.hdf5"),
                   "minari:cartpole/test-v1"):
        in_memory = load_dataset(source, lazy=False)
        lazy = load_dataset(source, lazy=True)
        assert isinstance(lazy, LazyDataset) and lazy.source == source
        chunked = LazyDataset(source, chunk_rows=4)
        assert len(chunked.chunks) > 1
        expected = in_memory.to_arrays()
        for read in (lazy, chunked):
            # read chunk by chunk from the data file (to_dataset would read it in memory)
            from_chunks = Dataset.concatenate([read.chunk(k) for k in range(len(read.chunks))])
            for got in (from_chunks.to_arrays(), read.take(np.arange(read.n)).to_arrays()):
                assert sorted(got) == sorted(expected)
                for key, values in expected.items():
                    assert got[key].dtype == values.dtype, key
                    np.testing.assert_array_equal(got[key], values, err_msg=key)
            np.testing.assert_array_equal(read.observations.compute(), in_memory.observations)
            for name, values in in_memory.infos.items():
                np.testing.assert_array_equal(read.infos[name].compute(), values)
            assert read.episode_ends.tolist() == in_memory.episode_ends.tolist()
    reward = RewardArtifact.loads(TICK_REWARD)
    data = LazyDataset("minari:test/pendulum-v0", chunk_rows=4)
    with dask.config.set(scheduler="threads"):
        rewards = lazy_rewards(reward, data).compute()
    in_memory = load_dataset("minari:test/pendulum-v0", lazy=False)
    np.testing.assert_array_equal(rewards, reward.evaluate(in_memory).rewards)


def test_eval_of_a_minari_dataset_on_a_scheduler(minari_root, tmp_path):
    pytest.importorskip("dask")
    from symreward.artifact import RewardArtifact
    from symreward.cli import main

    make_pendulum_dataset()
    artifact = tmp_path / "r.toml"
    artifact.write_text(TICK_REWARD, encoding="utf-8")
    out = tmp_path / "rewards.npy"
    assert main(["eval", str(artifact), "minari:test/pendulum-v0", "-o", str(out),
                 "--scheduler", "threads"]) == 0
    expected = RewardArtifact.load(artifact).evaluate(load_dataset("test/pendulum-v0")).rewards
    np.testing.assert_array_equal(np.load(out), expected)


def test_a_bad_episode_read_lazily_is_the_in_memory_error(minari_root):
    h5py = pytest.importorskip("h5py")
    make_pendulum_dataset()
    data_file = minari_root / "test" / "pendulum-v0" / "data" / "main_data.hdf5"
    with h5py.File(data_file, "r+") as f:
        observations = f["episode_1/observations"][()]
        del f["episode_1/observations"]
        f["episode_1/observations"] = observations[:-1]
    message = (r"^minari:test/pendulum-v0: episode 1 has 4 observations for 4 steps; Minari "
               r"episodes have one more observation than steps")
    with pytest.raises(DataError, match=message):
        load_dataset("minari:test/pendulum-v0", lazy=False)
    with pytest.raises(DataError, match=message):
        load_dataset("minari:test/pendulum-v0", lazy=True)


def test_learning_from_a_minari_dataset_read_lazily_gives_the_in_memory_artifact(minari_root):
    pytest.importorskip("dask")
    from symreward.learner import SymbolicRewardLearner

    record("test/pendulum-long-v0", "Pendulum-v1", [60] * 6, max_episode_steps=60)
    features = {"theta": "atan2(obs[1], obs[0])", "theta_dot": "obs[2]", "torque": "act[0]"}

    def learned(lazy: bool) -> str:
        data = load_dataset("minari:test/pendulum-long-v0", lazy=lazy)
        learner = SymbolicRewardLearner(objective="rewards", seed=0).fit(data, features)
        return learner.artifact_.dumps()

    in_memory = learned(False)
    assert "theta**2" in in_memory
    assert learned(True) == in_memory


def test_a_minari_dataset_larger_than_lazy_bytes_is_read_lazily(minari_root, monkeypatch):
    """Its size is told from the metadata alone (steps, spaces), as the header counts it but
    for the infos, which the metadata does not describe."""
    pytest.importorskip("dask")
    from symreward.data import lazy
    from symreward.data.minari_lazy import minari_table_bytes, read_minari_header

    make_pendulum_dataset()
    size = minari_table_bytes("minari:test/pendulum-v0")
    members = read_minari_header("minari:test/pendulum-v0").members
    assert size == sum(m.nbytes for key, m in members.items() if not key.startswith("infos/"))
    assert not isinstance(load_dataset("minari:test/pendulum-v0"), lazy.LazyDataset)
    monkeypatch.setattr(lazy, "LAZY_BYTES", size - 1)
    assert isinstance(load_dataset("minari:test/pendulum-v0"), lazy.LazyDataset)
    assert not isinstance(load_dataset("minari:test/pendulum-v0", lazy=False), lazy.LazyDataset)


def test_an_episode_without_its_actions_is_a_clear_error_lazily(minari_root, tmp_path, capsys):
    h5py = pytest.importorskip("h5py")
    pytest.importorskip("dask")
    from symreward.cli import main

    make_pendulum_dataset()
    data_file = minari_root / "test" / "pendulum-v0" / "data" / "main_data.hdf5"
    with h5py.File(data_file, "r+") as f:
        del f["episode_2/actions"]
    artifact = tmp_path / "r.toml"
    artifact.write_text(TICK_REWARD, encoding="utf-8")
    out = tmp_path / "rewards.npy"
    assert main(["eval", str(artifact), "minari:test/pendulum-v0", "-o", str(out),
                 "--scheduler", "threads"]) == 2
    assert ("minari:test/pendulum-v0: episode 2 has no 'actions' array"
            in capsys.readouterr().err)
    assert not out.exists()


def test_an_episode_changed_after_opening_is_named_when_its_rows_are_read(minari_root):
    h5py = pytest.importorskip("h5py")
    pytest.importorskip("dask")
    make_pendulum_dataset()
    lazy = load_dataset("minari:test/pendulum-v0", lazy=True)
    data_file = minari_root / "test" / "pendulum-v0" / "data" / "main_data.hdf5"
    with h5py.File(data_file, "r+") as f:
        del f["episode_1/truncations"]
    with pytest.raises(DataError, match=r"episode 'episode_1' has changed since the dataset "
                                        r"was opened: reopen the dataset"):
        lazy.chunk(0)
    with pytest.raises(DataError, match=r"^minari:test/pendulum-v0: cannot read the Minari "
                                        r"dataset's episodes: .*truncations"):
        load_dataset("minari:test/pendulum-v0", lazy=False)


def test_an_episode_that_stops_without_a_flag_ends_in_a_truncation_lazily_too(minari_root):
    h5py = pytest.importorskip("h5py")
    pytest.importorskip("dask")
    from symreward.data.lazy import LazyDataset

    make_pendulum_dataset()
    data_file = minari_root / "test" / "pendulum-v0" / "data" / "main_data.hdf5"
    with h5py.File(data_file, "r+") as f:
        f["episode_1/truncations"][-1] = False  # as a collector that stopped without a flag
    in_memory = load_dataset("minari:test/pendulum-v0", lazy=False)
    assert np.flatnonzero(in_memory.timeouts).tolist() == [5, 9, 12]
    lazy = LazyDataset("minari:test/pendulum-v0", chunk_rows=4)
    from_chunks = Dataset.concatenate([lazy.chunk(k) for k in range(len(lazy.chunks))])
    np.testing.assert_array_equal(from_chunks.timeouts, in_memory.timeouts)
    assert lazy.episode_ends.tolist() == [6, 10, 13]
