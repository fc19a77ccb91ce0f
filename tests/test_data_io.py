"""npz / HDF5 reading and writing: exact round trips, the D4RL layout, errors naming the file."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from symreward.data import Dataset, Preferences, Rankings, load_dataset, save_dataset
from symreward.errors import DataError, SymrewardError


def contract_arrays(n: int = 20, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    obs = rng.normal(size=(n + 1, 3)).astype(np.float32)
    timeouts = np.zeros(n, dtype=bool)
    timeouts[9] = True
    return {
        "observations": obs[:-1],
        "actions": rng.uniform(-2, 2, size=(n, 1)).astype(np.float32),
        "next_observations": obs[1:],
        "terminals": np.zeros(n, dtype=bool),
        "timeouts": timeouts,
        "rewards": rng.normal(size=n),
        "infos/x_velocity": rng.normal(size=n),
        "pref_a": np.array([[0, 3], [10, 12]]),
        "pref_b": np.array([[4, 7], [15, 17]]),
        "pref_label": np.array([1.0, 0.3]),
        "rank_segments": np.array([[0, 5], [10, 15]]),
        "rank_scores": np.array([2.0, -1.0]),
        "expert": np.arange(n) >= 10,
    }


def assert_same(a: Dataset, b: Dataset) -> None:
    left, right = a.to_arrays(), b.to_arrays()
    assert set(left) == set(right)
    for key in left:
        assert left[key].dtype == right[key].dtype, key
        np.testing.assert_array_equal(left[key], right[key], err_msg=key)


@pytest.mark.parametrize("suffix", [".npz", ".h5", ".hdf5"])
def test_round_trip_all_keys(tmp_path, suffix):
    ds = Dataset.from_arrays(contract_arrays(), source="mem")
    path = tmp_path / f"data{suffix}"
    save_dataset(ds, path)
    back = load_dataset(path)
    assert back.source == str(path)
    assert back.observations.dtype == np.float32
    assert_same(ds, back)
    assert os.listdir(tmp_path) == [path.name]  # no temp file left behind


def test_compressed_round_trip(tmp_path):
    ds = Dataset.from_arrays(contract_arrays(), source="mem")
    for name in ("c.npz", "c.h5"):
        save_dataset(ds, tmp_path / name, compress=True)
        assert_same(ds, load_dataset(str(tmp_path / name)))


def test_save_overwrites_atomically(tmp_path):
    path = tmp_path / "data.npz"
    save_dataset(Dataset.from_arrays(contract_arrays(seed=0)), path)
    second = Dataset.from_arrays(contract_arrays(seed=1))
    save_dataset(second, path)
    assert_same(second, load_dataset(path))
    assert sorted(os.listdir(tmp_path)) == ["data.npz"]


def test_saved_file_gets_normal_permissions(tmp_path):
    """The temp file must not leak its private mode into the saved dataset."""
    path = tmp_path / "shared.npz"
    save_dataset(Dataset.from_arrays(contract_arrays()), path)
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_save_errors_name_the_file(tmp_path):
    ds = Dataset.from_arrays(contract_arrays())
    with pytest.raises(DataError, match=r"out\.csv: unknown dataset extension '\.csv'"):
        save_dataset(ds, tmp_path / "out.csv")
    with pytest.raises(SymrewardError, match=r"nope/out\.npz: directory .* does not exist"):
        save_dataset(ds, tmp_path / "nope" / "out.npz")


def test_validation_errors_from_a_file_name_file_key_and_row(tmp_path):
    arrays = contract_arrays()
    arrays["observations"] = arrays["observations"].copy()
    arrays["observations"][17, 1] = np.nan
    path = tmp_path / "data.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError) as info:
        load_dataset(path)
    assert str(info.value).startswith(f"{path}: key 'observations': row 17 has NaN or inf")


def test_npz_missing_next_observations_says_it_is_required(tmp_path):
    arrays = contract_arrays()
    del arrays["next_observations"]
    path = tmp_path / "d4rl.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=re.escape(f"{path}: missing required key "
                                                  "'next_observations' (some D4RL files omit it")):
        load_dataset(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"missing\.npz: no such file"):
        load_dataset(tmp_path / "missing.npz")
    with pytest.raises(DataError, match=r"missing\.h5: no such file"):
        load_dataset(str(tmp_path / "missing.h5"))
    with pytest.raises(DataError, match=r"no such file"):
        load_dataset(tmp_path / "plain_name")


def test_unknown_extension(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("1,2,3\n")
    with pytest.raises(DataError, match=re.escape(f"{path}: unknown dataset extension '.csv'")):
        load_dataset(path)


def test_not_a_zip(tmp_path):
    path = tmp_path / "data.npz"
    path.write_text("observations,actions\n")
    with pytest.raises(DataError, match=re.escape(f"{path}: not an npz archive (not a zip file)")):
        load_dataset(path)
    npy = tmp_path / "array.npz"
    np.save(tmp_path / "array.npy", np.zeros(3))
    os.replace(tmp_path / "array.npy", npy)
    with pytest.raises(DataError, match="not an npz archive"):
        load_dataset(npy)


def test_truncated_zip(tmp_path):
    good = tmp_path / "good.npz"
    np.savez(good, **contract_arrays())
    bad = tmp_path / "bad.npz"
    bad.write_bytes(good.read_bytes()[:200])
    with pytest.raises(DataError, match=re.escape(f"{bad}: unreadable npz archive")):
        load_dataset(bad)


def test_pickled_arrays_are_refused(tmp_path):
    arrays: dict[str, np.ndarray] = dict(contract_arrays())
    arrays["observations"] = np.array([object()] * 20, dtype=object)
    path = tmp_path / "evil.npz"
    np.savez(path, **arrays)  # np.savez pickles object arrays
    with pytest.raises(DataError, match=re.escape(f"{path}: key 'observations' holds Python "
                                                  "objects (pickled data); refusing to load")):
        load_dataset(path)


def test_not_hdf5(tmp_path):
    path = tmp_path / "data.h5"
    path.write_bytes(b"\x00" * 64)
    with pytest.raises(DataError, match=re.escape(f"{path}: not an HDF5 file")):
        load_dataset(path)


def test_d4rl_hdf5_layout(tmp_path):
    """D4RL files: infos as a group, multi-column infos and metadata that symreward skips."""
    arrays = contract_arrays()
    path = tmp_path / "hopper-medium.hdf5"
    with h5py.File(path, "w") as f:
        for key in ("observations", "actions", "next_observations", "terminals", "timeouts",
                    "rewards"):
            f.create_dataset(key, data=arrays[key])
        infos = f.create_group("infos")
        infos.create_dataset("x_velocity", data=arrays["infos/x_velocity"])
        infos.create_dataset("qpos", data=np.zeros((20, 7)))
        infos.create_dataset("name", data=np.array([b"a"] * 20))
        meta = f.create_group("metadata")
        meta.create_dataset("algorithm", data="SAC")
        meta.create_dataset("policy/fc0/weight", data=np.zeros((4, 4)))
    ds = load_dataset(path)
    assert set(ds.infos) == {"x_velocity"}
    np.testing.assert_array_equal(ds.infos["x_velocity"], arrays["infos/x_velocity"])
    np.testing.assert_array_equal(ds.rewards, arrays["rewards"])
    assert ds.preferences is None and ds.rankings is None and ds.expert is None


def test_hdf5_float_terminals_and_missing_key(tmp_path):
    arrays = contract_arrays()
    path = tmp_path / "d.h5"
    with h5py.File(path, "w") as f:
        for key in ("observations", "actions", "terminals", "timeouts"):
            f.create_dataset(key, data=arrays[key].astype(np.float64))
    with pytest.raises(DataError, match=re.escape(f"{path}: missing required key "
                                                  "'next_observations'")):
        load_dataset(path)


def test_npz_skips_multicolumn_infos(tmp_path):
    arrays = contract_arrays()
    arrays["infos/qpos"] = np.zeros((20, 7))
    arrays["infos/nested/x"] = np.zeros(20)
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    assert set(load_dataset(path).infos) == {"x_velocity"}


# ---------------------------------------------------------------------- property: exact round trip


@st.composite
def datasets(draw) -> Dataset:
    n = draw(st.integers(1, 30))
    obs_dim = draw(st.integers(1, 4))
    act_dim = draw(st.integers(1, 3))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    finite = {"allow_nan": False, "allow_infinity": False, "width": 32}
    obs = draw(hnp.arrays(dtype, (n, obs_dim), elements=st.floats(**finite)))
    nxt = draw(hnp.arrays(dtype, (n, obs_dim), elements=st.floats(**finite)))
    act = draw(hnp.arrays(dtype, (n, act_dim), elements=st.floats(**finite)))
    terminals = draw(hnp.arrays(bool, n))
    timeouts = draw(hnp.arrays(bool, n))
    rewards = draw(st.none() | hnp.arrays(np.float64, n, elements=st.floats(**finite)))
    names = draw(st.lists(st.sampled_from(["x", "y_vel", "cost"]), unique=True, max_size=2))
    infos = {k: draw(hnp.arrays(np.float64, n, elements=st.floats(**finite))) for k in names}
    expert = draw(st.none() | hnp.arrays(bool, n))
    ds = Dataset(obs, act, nxt, terminals, timeouts, rewards=rewards, infos=infos, expert=expert)
    if draw(st.booleans()):
        starts, ends = ds.episode_starts, ds.episode_ends
        k = draw(st.integers(0, 4))
        segs = []
        for _ in range(2 * k):
            e = draw(st.integers(0, ds.n_episodes - 1))
            a = draw(st.integers(int(starts[e]), int(ends[e]) - 1))
            b = draw(st.integers(a + 1, int(ends[e])))
            segs.append([a, b])
        segs_arr = np.array(segs, dtype=np.int64).reshape(-1, 2)
        labels = draw(hnp.arrays(np.float64, k, elements=st.floats(0, 1)))
        ds = ds.replace(
            preferences=Preferences(segs_arr[:k], segs_arr[k:], labels),
            rankings=Rankings(segs_arr, np.arange(2 * k, dtype=float)),
        )
    return ds


@settings(max_examples=40, deadline=None)
@given(datasets(), st.sampled_from([".npz", ".h5"]))
def test_save_load_round_trip_is_exact(ds, suffix):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"d{suffix}"
        save_dataset(ds, path)
        assert_same(ds, load_dataset(path))
