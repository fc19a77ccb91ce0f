"""``symreward relabel`` and ``symreward.data.relabel``: a copy of a dataset whose rewards are an
artifact's, everything else kept, the old rewards and the artifact recorded.

Every check runs the real thing: files written by numpy, h5py and Minari (from a real gymnasium
environment), rewards from the compiled kernels compared with ``RewardArtifact.evaluate`` on the
input as ``load_dataset`` reads it.
"""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from support import run_cli

from symreward.artifact import RewardArtifact
from symreward.data import Dataset, load_dataset
from symreward.data.relabel import METADATA_KEYS, ORIGINAL_REWARDS, relabel, to_d3rlpy
from symreward.errors import DataError, FeatureError

ARTIFACT = """\
schema = "symreward/1"
name = "{name}"

[features]
x = "obs[0]"
step = "next_obs[1] - obs[1]"
effort = "act[0]"
height = "info.h"

[[terms]]
name = "main"
expr = "{weight} * x**2 + 0.5 * step - 0.1 * effort**2 + sin(height)"
"""


def write_artifact(directory: Path, name: str = "first", weight: float = -1.0) -> Path:
    path = directory / f"{name}.toml"
    path.write_text(ARTIFACT.format(name=name, weight=weight))
    return path


def transitions(n: int = 500, seed: int = 0, dtype: type = np.float32) -> dict[str, np.ndarray]:
    """D4RL keys of a random walk in episodes of 50 steps, float32 like real data, with a
    scalar info the reward reads, a vector info and a metadata string it does not."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n, 3)).astype(dtype)
    return {
        "observations": obs,
        "actions": rng.normal(size=(n, 2)).astype(dtype),
        "next_observations": (obs + rng.normal(scale=0.1, size=obs.shape)).astype(dtype),
        "terminals": np.arange(n) == n - 1,
        "timeouts": np.arange(n) % 50 == 49,
        "rewards": rng.normal(size=n).astype(np.float32),
        "infos/h": rng.normal(size=n),
        "infos/qpos": rng.normal(size=(n, 4)),
        "metadata/policy": np.array("seeded random"),
    }


def write_npz(path: Path, arrays: dict[str, np.ndarray], deflated: set[str] = frozenset()) -> Path:
    """An npz as numpy writes one, but with the members in ``deflated`` compressed and the
    others stored (a file ``np.savez`` cannot make: it has one compression for all)."""
    with zipfile.ZipFile(path, "w", allowZip64=True) as archive:
        for key, array in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED if key in deflated else zipfile.ZIP_STORED
            with archive.open(info, "w", force_zip64=True) as member:
                np.lib.format.write_array(member, array, allow_pickle=False)
    return path


def members(path: Path) -> dict[str, tuple[bytes, int]]:
    with zipfile.ZipFile(path) as archive:
        return {info.filename: (archive.read(info), info.compress_type)
                for info in archive.infolist()}


def expected_rewards(artifact_path: Path, data: str | Path) -> np.ndarray:
    return RewardArtifact.load(artifact_path).evaluate(load_dataset(data)).rewards


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


# ---------------------------------------------------------------------- npz


def test_npz_keeps_every_other_member_byte_for_byte_with_its_compression(tmp_path):
    artifact = write_artifact(tmp_path)
    source = write_npz(tmp_path / "data.npz", transitions(),
                       deflated={"actions", "rewards", "infos/qpos"})
    with zipfile.ZipFile(source, "a") as archive:  # a member that is no array: kept too
        archive.writestr("README.txt", "made by the tests")
    result = relabel(artifact, source, tmp_path / "out.npz")

    before, after = members(source), members(tmp_path / "out.npz")
    for name, (payload, compression) in before.items():
        if name == "rewards.npy":
            assert after[f"{ORIGINAL_REWARDS}.npy"] == (payload, compression)
            assert after[name][1] == compression
        else:
            assert after[name] == (payload, compression), name
    assert set(after) == {*before, f"{ORIGINAL_REWARDS}.npy", *(f"{k}.npy" for k in METADATA_KEYS)}
    with zipfile.ZipFile(tmp_path / "out.npz") as archive:
        assert archive.testzip() is None  # every member's CRC

    expected = expected_rewards(artifact, source)
    with np.load(tmp_path / "out.npz", allow_pickle=False) as out:
        assert out["rewards"].dtype == np.float64
        np.testing.assert_allclose(out["rewards"], expected, rtol=0, atol=1e-12)
        assert out["original_rewards"].dtype == np.float32
        loaded = RewardArtifact.load(artifact)
        assert str(out["symreward_artifact_hash"]) == loaded.content_hash()
        assert str(out["symreward_artifact_formula"]) == loaded.formula_text()
        assert str(out["symreward_artifact_source"]) == str(artifact)
        assert str(out["symreward_artifact_name"]) == "first"
    # symreward reads it back: the new keys are no data-contract keys and load as plain arrays
    back = load_dataset(tmp_path / "out.npz")
    np.testing.assert_array_equal(back.rewards, expected)
    assert set(back.infos) == {"h"}
    assert (result.rows, result.artifact_hash) == (500, loaded.content_hash())
    assert (result.minimum, result.maximum) == (expected.min(), expected.max())
    assert result.original_rewards == "kept as key 'original_rewards'"


def test_chunks_do_not_change_a_byte_and_runs_are_deterministic(tmp_path):
    artifact = write_artifact(tmp_path)
    source = write_npz(tmp_path / "data.npz", transitions(n=300))
    relabel(artifact, source, tmp_path / "a.npz")
    relabel(artifact, source, tmp_path / "b.npz", chunk_rows=7)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()


def test_members_copied_through_a_buffer_where_the_kernel_cannot(tmp_path, monkeypatch):
    """Without ``os.copy_file_range`` (not Linux, or another file system) the same bytes."""
    artifact = write_artifact(tmp_path)
    source = write_npz(tmp_path / "data.npz", transitions(), deflated={"actions"})
    relabel(artifact, source, tmp_path / "kernel.npz")
    monkeypatch.delattr("os.copy_file_range", raising=False)
    relabel(artifact, source, tmp_path / "buffer.npz")
    assert (tmp_path / "kernel.npz").read_bytes() == (tmp_path / "buffer.npz").read_bytes()


def test_float64_input_and_a_file_without_rewards(tmp_path):
    artifact = write_artifact(tmp_path)
    arrays = transitions(dtype=np.float64)
    del arrays["rewards"]
    source = write_npz(tmp_path / "data.npz", arrays, deflated=set(arrays))
    result = relabel(artifact, source, tmp_path / "out.npz")
    after = members(tmp_path / "out.npz")
    assert f"{ORIGINAL_REWARDS}.npy" not in after
    assert after["rewards.npy"][1] == zipfile.ZIP_DEFLATED  # as the observations are
    np.testing.assert_allclose(load_dataset(tmp_path / "out.npz").rewards,
                               expected_rewards(artifact, source), rtol=0, atol=1e-12)
    assert result.original_rewards == "none: the input had no rewards"


def test_relabelling_twice_keeps_the_first_rewards_and_names_the_last_artifact(tmp_path):
    first, second = write_artifact(tmp_path), write_artifact(tmp_path, "second", weight=-3.0)
    source = write_npz(tmp_path / "data.npz", transitions())
    relabel(first, source, tmp_path / "once.npz")
    result = relabel(second, tmp_path / "once.npz", tmp_path / "twice.npz")
    assert result.original_rewards.startswith("replaced; key 'original_rewards' still holds")
    with np.load(source) as raw, np.load(tmp_path / "twice.npz") as out:
        np.testing.assert_array_equal(out["original_rewards"], raw["rewards"])
        assert str(out["symreward_artifact_name"]) == "second"
        np.testing.assert_allclose(out["rewards"], expected_rewards(second, source),
                                   rtol=0, atol=1e-12)
        assert sorted(out.files) == sorted([*raw.files, ORIGINAL_REWARDS, *METADATA_KEYS])


def test_relabel_in_place(tmp_path):
    artifact = write_artifact(tmp_path)
    source = write_npz(tmp_path / "data.npz", transitions())
    expected = expected_rewards(artifact, source)
    relabel(artifact, source, source)
    np.testing.assert_allclose(load_dataset(source).rewards, expected, rtol=0, atol=1e-12)
    assert leftovers(tmp_path) == []


# ---------------------------------------------------------------------- bad input


def corrupt(path: Path, key: str) -> None:
    """Flip a byte in the middle of a stored member's data (its CRC no longer matches)."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(f"{key}.npy")
    data = bytearray(path.read_bytes())
    local = data[info.header_offset:info.header_offset + 30]  # the member's local header
    start = info.header_offset + 30 + int.from_bytes(local[26:28], "little") + int.from_bytes(
        local[28:30], "little")
    data[start + info.file_size // 2] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("key", ["observations", "infos/qpos", "rewards"])
def test_a_corrupt_member_names_the_file_and_key_and_leaves_nothing(tmp_path, key):
    """Whether the member is read for the kernel, or only copied (the failure then comes
    mid-write), or is the rewards being replaced."""
    source = write_npz(tmp_path / "data.npz", transitions())
    corrupt(source, key)
    with pytest.raises(DataError, match=rf"data\.npz: key '{key}' cannot be read: .*CRC"):
        relabel(write_artifact(tmp_path), source, tmp_path / "out.npz")
    assert not (tmp_path / "out.npz").exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize(("change", "message"), [
    (lambda a: a.pop("next_observations"), r"missing required key 'next_observations'"),
    (lambda a: a.__setitem__("infos/h", np.full(500, np.nan)),
     r"key 'infos/h': row 0 is nan"),
    (lambda a: a["observations"].__setitem__((7, 2), np.inf),
     r"key 'observations': row 7 has NaN or inf"),
    (lambda a: a.__setitem__("actions", a["actions"][:-1]), r"key 'actions' has 499 rows"),
    (lambda a: a.__setitem__("pref_a", np.array([[0, 60]])), r"key 'pref_b' is missing"),
])
def test_data_symreward_would_refuse_is_refused_the_same_way(tmp_path, change, message):
    arrays = transitions()
    change(arrays)
    source = write_npz(tmp_path / "data.npz", arrays)
    with pytest.raises(DataError, match=message) as caught:
        relabel(write_artifact(tmp_path), source, tmp_path / "out.npz")
    assert str(caught.value).startswith(str(source))
    with pytest.raises(DataError, match=message):
        load_dataset(source)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.npz", "first.toml"]


def test_a_pickled_member_is_refused_unread(tmp_path):
    source = tmp_path / "data.npz"
    np.savez(source, **transitions(), notes=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError, match=r"key 'notes' holds Python objects"):
        relabel(write_artifact(tmp_path), source, tmp_path / "out.npz")
    assert not (tmp_path / "out.npz").exists()


def test_features_the_data_cannot_feed_and_rewards_that_are_not_finite(tmp_path):
    source = write_npz(tmp_path / "data.npz", transitions())
    arrays = transitions()
    del arrays["infos/h"]
    no_info = write_npz(tmp_path / "no_info.npz", arrays)
    with pytest.raises(FeatureError, match=r"reads info\.h but .*no_info\.npz has no key"):
        relabel(write_artifact(tmp_path), no_info, tmp_path / "out.npz")
    log = tmp_path / "log.toml"
    log.write_text(ARTIFACT.format(name="log", weight=-1.0).replace(
        "sin(height)", "log(height)"))
    first_negative = int(np.argmax(transitions()["infos/h"] < 0))
    with pytest.raises(DataError, match=rf"is nan at row {first_negative} "):
        relabel(log, source, tmp_path / "out.npz")
    assert not (tmp_path / "out.npz").exists() and leftovers(tmp_path) == []


def test_output_of_another_format_is_refused_before_any_work(tmp_path):
    source = write_npz(tmp_path / "data.npz", transitions())
    (tmp_path / "folder.npz").mkdir()
    for output, message in ((tmp_path / "out.h5", "keeps the input's format"),
                            ("minari:x-v0", "keeps the input's format"),
                            (tmp_path / "missing" / "out.npz", "does not exist"),
                            (tmp_path / "folder.npz", "is a folder")):
        with pytest.raises(DataError, match=message):
            relabel(write_artifact(tmp_path), source, output)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.npz", "first.toml", "folder.npz"]


# ---------------------------------------------------------------------- HDF5


def write_d4rl_hdf5(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    """The D4RL layout: top-level arrays, an ``infos`` group and a ``metadata`` group."""
    with h5py.File(path, "w") as f:
        for key, value in arrays.items():
            options = {"compression": "gzip", "chunks": True} if value.ndim else {}
            f.create_dataset(key, data=value.item() if value.dtype.kind == "U" else value,
                             **options)
        f.attrs["author"] = "tests"
    return path


def read_all(path: Path) -> dict[str, np.ndarray]:
    found = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: found.__setitem__(name, obj[()])
                     if isinstance(obj, h5py.Dataset) else None)
    return found


def test_hdf5_d4rl_layout(tmp_path):
    artifact, second = write_artifact(tmp_path), write_artifact(tmp_path, "second", weight=2.0)
    source = write_d4rl_hdf5(tmp_path / "data.hdf5", transitions())
    result = relabel(artifact, source, tmp_path / "out.hdf5")
    before, after = read_all(source), read_all(tmp_path / "out.hdf5")
    assert set(after) == {*before, ORIGINAL_REWARDS}
    for key, value in before.items():
        np.testing.assert_array_equal(after[ORIGINAL_REWARDS if key == "rewards" else key],
                                      value)
    np.testing.assert_allclose(after["rewards"], expected_rewards(artifact, source),
                               rtol=0, atol=1e-12)
    with h5py.File(tmp_path / "out.hdf5", "r") as f:
        assert f["rewards"].dtype == np.float64 and f["rewards"].compression == "gzip"
        assert f.attrs["author"] == "tests"
        assert f.attrs["symreward_artifact_hash"] == result.artifact_hash
        assert f.attrs["symreward_artifact_formula"] == (
            RewardArtifact.load(artifact).formula_text())
    assert result.original_rewards == "kept as dataset 'original_rewards'"

    relabel(second, tmp_path / "out.hdf5", tmp_path / "twice.h5")
    twice = read_all(tmp_path / "twice.h5")
    np.testing.assert_array_equal(twice[ORIGINAL_REWARDS], before["rewards"])
    np.testing.assert_allclose(load_dataset(tmp_path / "twice.h5").rewards,
                               expected_rewards(second, source), rtol=0, atol=1e-12)


def test_hdf5_bad_input_leaves_nothing(tmp_path):
    arrays = transitions()
    arrays["next_observations"] = arrays["next_observations"][:, :2]
    source = write_d4rl_hdf5(tmp_path / "data.h5", arrays)
    with pytest.raises(DataError, match=r"data\.h5: key 'next_observations' has shape"):
        relabel(write_artifact(tmp_path), source, tmp_path / "out.h5")
    assert not (tmp_path / "out.h5").exists() and leftovers(tmp_path) == []


# ---------------------------------------------------------------------- command line


def test_cli_prints_a_summary_and_exits_2_on_bad_input(tmp_path):
    artifact = write_artifact(tmp_path)
    source = write_npz(tmp_path / "data.npz", transitions())
    done = run_cli("relabel", artifact, source, "-o", tmp_path / "out.npz")
    assert done.returncode == 0, done.stderr
    expected = expected_rewards(artifact, source)
    assert f"500 rewards from {artifact}" in done.stdout
    assert f"mean {expected.mean():.6g}  min {expected.min():.6g}" in done.stdout
    assert "old rewards: kept as key 'original_rewards'" in done.stdout
    assert RewardArtifact.load(artifact).content_hash() in done.stdout

    corrupt(source, "actions")
    failed = run_cli("relabel", artifact, source, "-o", tmp_path / "bad.npz")
    assert failed.returncode == 2
    assert "key 'actions' cannot be read" in failed.stderr and "Traceback" not in failed.stderr
    assert not (tmp_path / "bad.npz").exists() and leftovers(tmp_path) == []


# ---------------------------------------------------------------------- Minari

PENDULUM = """\
schema = "symreward/1"
name = "pendulum"

[features]
theta = "atan2(obs[1], obs[0])"
speed = "next_obs[2]"
torque = "act[0]"
tick = "info.tick"

[[terms]]
name = "main"
expr = "-theta**2 - 0.1 * speed**2 - 0.001 * torque**2 + 0.01 * tick"
"""


@pytest.fixture
def pendulum_minari(tmp_path, monkeypatch) -> str:
    """A Minari dataset recorded from Pendulum-v1 by Minari's DataCollector: 3 seeded episodes
    (two cut by the time limit, one by create_dataset), with a scalar info ``tick``."""
    gym = pytest.importorskip("gymnasium")
    minari = pytest.importorskip("minari")
    from minari.data_collector.callbacks import StepDataCallback

    class Ticks(StepDataCallback):
        t = 0

        def __call__(self, env, obs, info, action=None, **kwargs):
            step = super().__call__(env, obs, info, action=action, **kwargs)
            self.t = 0 if action is None else self.t + 1
            step["info"] = {**info, "tick": float(self.t)}
            return step

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    env = minari.DataCollector(gym.make("Pendulum-v1", max_episode_steps=12),
                               step_data_callback=Ticks, record_infos=True, data_format="hdf5")
    rng = np.random.default_rng(0)
    for episode, steps in enumerate((12, 12, 5)):
        env.reset(seed=episode)
        for _ in range(steps):
            env.step(rng.uniform(-2.0, 2.0, size=1).astype(np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Minari's nags about missing metadata
        env.create_dataset("tests/pendulum-v0", author="tests", author_email="t@example.invalid",
                           code_permalink="https://example.invalid", algorithm_name="random",
                           description="three short episodes")
    env.close()
    return "tests/pendulum-v0"


def test_minari_builds_a_new_dataset_with_the_new_rewards(tmp_path, pendulum_minari):
    import minari

    artifact = tmp_path / "pendulum.toml"
    artifact.write_text(PENDULUM)
    before = load_dataset(pendulum_minari)
    result = relabel(artifact, f"minari:{pendulum_minari}", "minari:tests/relabelled-v0")
    expected = expected_rewards(artifact, pendulum_minari)
    assert result.output == "minari:tests/relabelled-v0" and result.rows == expected.size == 29

    # symreward reads it: same transitions, infos and flags, the artifact's rewards
    old, new = load_dataset(pendulum_minari), load_dataset("tests/relabelled-v0")
    np.testing.assert_allclose(new.rewards, expected, rtol=0, atol=1e-12)
    for key, value in old.to_arrays().items():
        if key != "rewards":
            np.testing.assert_array_equal(new.to_arrays()[key], value)

    # Minari reads it: every episode as it was, but for its rewards and their statistics
    source, made = (minari.load_dataset(i) for i in (pendulum_minari, "tests/relabelled-v0"))
    start = 0
    for a, b, meta_a, meta_b in zip(source.iterate_episodes(), made.iterate_episodes(),
                                    source.storage.get_episode_metadata(range(3)),
                                    made.storage.get_episode_metadata(range(3)), strict=True):
        for field in ("observations", "actions", "terminations", "truncations"):
            np.testing.assert_array_equal(getattr(b, field), getattr(a, field))
        np.testing.assert_array_equal(b.infos["tick"], a.infos["tick"])
        np.testing.assert_array_equal(b.rewards, new.rewards[start:start + len(a.rewards)])
        assert meta_b["seed"] == meta_a["seed"]
        assert meta_b["rewards_sum"] == pytest.approx(float(b.rewards.sum()), abs=1e-9)
        assert meta_b["rewards_sum"] != pytest.approx(meta_a["rewards_sum"])
        start += len(a.rewards)
    metadata = made.storage.metadata
    assert metadata["symreward_artifact_hash"] == result.artifact_hash
    assert metadata["symreward_source_dataset"] == f"minari:{pendulum_minari}"
    assert metadata["description"].startswith("three short episodes\n\nRewards relabelled")
    assert RewardArtifact.load(artifact).formula_text() in metadata["description"]
    assert metadata["author"] == {"tests"} and made.spec.env_spec == source.spec.env_spec
    for key, value in before.to_arrays().items():  # the source is as it was
        np.testing.assert_array_equal(old.to_arrays()[key], value)

    # from the dataset's directory too; an id that exists is refused, and nothing is left over
    root = tmp_path / "minari"
    relabel(artifact, root / "tests" / "pendulum-v0", "minari:from-directory-v0")
    np.testing.assert_array_equal(load_dataset("from-directory-v0").rewards, new.rewards)
    with pytest.raises(DataError, match="already exists"):
        relabel(artifact, pendulum_minari, "minari:tests/relabelled-v0")
    with pytest.raises(DataError, match="give -o minari:NEW_ID"):
        relabel(artifact, pendulum_minari, tmp_path / "out.npz")
    assert leftovers(root) == []


def test_minari_features_the_data_cannot_feed_write_nothing(tmp_path, pendulum_minari):
    artifact = tmp_path / "wide.toml"
    artifact.write_text(PENDULUM.replace("obs[0]", "obs[7]"))
    done = run_cli("relabel", artifact, f"minari:{pendulum_minari}", "-o", "minari:wide-v0")
    assert done.returncode == 2 and "obs[7]" in done.stderr, done.stderr
    assert not (tmp_path / "minari" / "wide-v0").exists() and leftovers(tmp_path / "minari") == []


# ---------------------------------------------------------------------- d3rlpy


def test_to_d3rlpy_episodes_carry_the_artifacts_rewards(tmp_path):
    pytest.importorskip("d3rlpy", reason="d3rlpy is an optional extra (symreward[d3rlpy]); "
                                         "its tests run where it is installed")
    from d3rlpy.constants import ActionSpace

    artifact = write_artifact(tmp_path)
    arrays = transitions(n=130)
    arrays["terminals"] = np.arange(130) == 20  # episodes: [0, 21) terminal, then time limits
    dataset = Dataset.from_arrays({k: v for k, v in arrays.items() if "/" not in k
                                   or k == "infos/h"})
    mdp = to_d3rlpy(artifact, dataset, action_space=ActionSpace.CONTINUOUS)
    expected = RewardArtifact.load(artifact).evaluate(dataset).rewards
    assert [len(e.rewards) for e in mdp.episodes] == [21, 29, 50, 30]
    assert [e.terminated for e in mdp.episodes] == [True, False, False, False]
    np.testing.assert_allclose(np.concatenate([e.rewards[:, 0] for e in mdp.episodes]),
                               expected, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(np.concatenate([e.observations for e in mdp.episodes]),
                                  dataset.observations)
