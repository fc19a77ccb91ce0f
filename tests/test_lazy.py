"""Lazy datasets over shards (``symreward.data.lazy``): every array, ``take``, ``sample`` and
``digest`` equal to the in-memory concatenation of the shards, under every dask scheduler; a
bad shard is a ``DataError`` naming it, at opening or when its values are computed."""

from __future__ import annotations

import contextlib
import multiprocessing
import re
import subprocess
import sys
import tempfile
import zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import dask
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import assert_same_data, concatenation, labelled, write_shards

from symreward.cli import main
from symreward.data import (
    Dataset,
    LazyDataset,
    load_dataset,
    save_dataset,
)
from symreward.data import lazy as lazy_module
from symreward.data.dataset import dataset_digest
from symreward.data.npzmembers import data_offset, read_header
from symreward.data.subset import take
from symreward.errors import DataError

ARTIFACT = """\
schema = "symreward/1"
name = "t"

[features]
x = "obs[0]"
v = "info.x_velocity"

[[terms]]
name = "main"
expr = "-x**2 + 0.5*v"
"""


def per_row_arrays(lazy: LazyDataset) -> dict[str, object]:
    arrays = {key: getattr(lazy, key) for key in (
        "observations", "actions", "next_observations", "terminals", "timeouts", "rewards",
        "expert")}
    return arrays | {f"infos/{name}": value for name, value in lazy.infos.items()}


def assert_arrays_equal(lazy: LazyDataset, expected: Dataset, scheduler: object = None) -> None:
    arrays = per_row_arrays(lazy)
    computed = dask.compute(arrays, scheduler=scheduler)[0]
    wanted = expected.to_arrays()
    for key, value in computed.items():
        assert value.dtype == wanted[key].dtype, key
        np.testing.assert_array_equal(value, wanted[key], err_msg=key)


@pytest.fixture(scope="module")
def sharded(tmp_path_factory) -> tuple[Path, Dataset]:
    """Four npz shards, one of them float64 among float32 ones, one whose last row has no
    flag; and the concatenation they stand for."""
    folder = tmp_path_factory.mktemp("shards")
    dataset = labelled()
    write_shards(dataset, folder, [50, 75, 150], unflag=(1,))
    part = load_dataset(folder / "part-002.npz")
    save_dataset(part.replace(observations=part.observations.astype(np.float64)),
                 folder / "part-002.npz")
    return folder, concatenation(folder)


@pytest.fixture(scope="module")
def sharded_h5(tmp_path_factory) -> tuple[Path, Dataset]:
    """Three HDF5 shards and their concatenation."""
    folder = tmp_path_factory.mktemp("shards_h5")
    write_shards(labelled(), folder, [60, 125], suffix=".h5", unflag=(0,))
    return folder, concatenation(folder)


# ---------------------------------------------------------------------- equal to memory


@pytest.mark.parametrize("suffix", [".npz", ".h5"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("chunk_rows", [10**6, 30])
def test_every_array_equals_the_concatenation(tmp_path, suffix, dtype, chunk_rows):
    dataset = labelled(dtype=dtype)
    write_shards(dataset, tmp_path, [25, 100], suffix, unflag=(0,))
    expected = concatenation(tmp_path)
    lazy = LazyDataset(tmp_path, chunk_rows=chunk_rows)
    assert (lazy.n, lazy.obs_dim, lazy.act_dim) == (expected.n, 3, 2)
    assert [s.rows for s in lazy.shards] == [25, 75, 100]
    assert [s.offset for s in lazy.shards] == [0, 25, 100]
    assert sum(lazy.chunks) == lazy.n and len(lazy) == lazy.n
    assert (len(lazy.chunks) == 3) == (chunk_rows > 100)  # 30 rows: shards split (both kinds)
    np.testing.assert_array_equal(lazy.episode_ends, expected.episode_ends)
    assert lazy.n_episodes == expected.n_episodes
    for field in ("a", "b", "label"):
        np.testing.assert_array_equal(getattr(lazy.preferences, field),
                                      getattr(expected.preferences, field))
    np.testing.assert_array_equal(lazy.rankings.segments, expected.rankings.segments)
    np.testing.assert_array_equal(lazy.rankings.scores, expected.rankings.scores)
    assert_arrays_equal(lazy, expected)
    assert lazy.digest() == dataset_digest(expected)
    assert_same_data(lazy.to_dataset(), expected)
    for k, start in enumerate(lazy.chunk_offsets):
        part = lazy.chunk(k)
        stop = start + lazy.chunks[k]
        np.testing.assert_array_equal(part.observations, expected.observations[start:stop])
        np.testing.assert_array_equal(part.timeouts, expected.timeouts[start:stop])
        shard = next(s for s in lazy.shards if s.offset <= start < s.offset + s.rows)
        assert part.source.startswith(shard.path)


def test_shards_of_different_dtypes_are_promoted_as_concatenate_does(sharded):
    folder, expected = sharded
    lazy = LazyDataset(folder)
    assert lazy.observations.dtype == np.float64 and lazy.actions.dtype == np.float32
    assert lazy.timeouts.dtype == bool and lazy.rewards.dtype == np.float64
    assert_arrays_equal(lazy, expected)
    last = load_dataset(folder / "part-001.npz")  # rows 50..74, its last row without a flag
    assert not (last.terminals[-1] or last.timeouts[-1])
    assert expected.timeouts[74] and lazy.timeouts[74].compute()  # concatenate sets it
    assert lazy.digest() == dataset_digest(expected)


def test_compressed_shards_are_one_chunk_each(tmp_path):
    write_shards(labelled(), tmp_path, [100], compress=True)
    lazy = LazyDataset(tmp_path, chunk_rows=20)
    assert lazy.chunks == (100, 100)
    assert lazy.digest() == dataset_digest(concatenation(tmp_path))


def test_one_large_file_is_split_at_episode_ends(tmp_path):
    dataset = labelled(length=20)
    save_dataset(dataset, tmp_path / "all.h5")
    lazy = LazyDataset(tmp_path / "all.h5", chunk_rows=50)
    # Episodes of 20 rows: each stop is the episode end nearest to 50 rows on (the first
    # of two as near).
    assert lazy.chunks == (40, 40, 40, 40)
    offsets = lazy.chunk_offsets
    assert lazy.chunk(1).source == f"{tmp_path / 'all.h5'} (rows {offsets[1]}:{offsets[2]})"
    expected = load_dataset(tmp_path / "all.h5")
    assert_same_data(lazy.to_dataset(), expected)
    assert_arrays_equal(lazy, expected)
    assert lazy.digest() == dataset_digest(expected)


@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_take_equals_take_of_the_concatenation(data):
    dataset = labelled(seed=data.draw(st.integers(0, 20)), episodes=6,
                       length=data.draw(st.integers(4, 15)),
                       dtype=data.draw(st.sampled_from([np.float32, np.float64])))
    ends = [int(e) for e in dataset.episode_ends[:-1]]
    cuts = sorted(data.draw(st.lists(st.sampled_from(ends), unique=True, max_size=4)))
    suffix = data.draw(st.sampled_from([".npz", ".h5"]))
    unflag = tuple(data.draw(st.lists(st.integers(0, len(cuts)), unique=True, max_size=2)))
    chunk_rows = data.draw(st.integers(1, dataset.n))
    rows = np.array(sorted(data.draw(st.lists(st.integers(0, dataset.n - 1), unique=True,
                                              min_size=1, max_size=dataset.n))))
    with tempfile.TemporaryDirectory() as folder:
        write_shards(dataset, Path(folder), cuts, suffix, unflag=unflag)
        lazy = LazyDataset(folder, chunk_rows=chunk_rows)
        expected = concatenation(folder)
        assert_same_data(lazy.take(rows), take(expected, rows))


def test_take_reads_only_the_chunks_that_hold_the_rows(tmp_path):
    write_shards(labelled(), tmp_path, [50, 100, 150])
    expected = concatenation(tmp_path)
    lazy = LazyDataset(tmp_path)
    (tmp_path / "part-003.npz").write_bytes(b"broken after opening")
    got = lazy.take(np.arange(10, 120))
    np.testing.assert_array_equal(got.observations, expected.observations[10:120])
    with pytest.raises(DataError, match=re.escape(f"{tmp_path / 'part-003.npz'}: not an npz")):
        lazy.take(np.array([160]))


def test_take_checks_its_rows(sharded):
    lazy = LazyDataset(sharded[0])
    for rows in ([3, 2], [1, 1], [-1, 2], [lazy.n], [[1, 2]], [0.5]):
        with pytest.raises(ValueError, match="sorted, distinct integers"):
            lazy.take(np.array(rows))
    with pytest.raises(DataError, match="no transitions"):
        lazy.take(np.array([], dtype=np.int64))


def test_sample_draws_whole_chunks_with_a_seed(tmp_path):
    dataset = labelled(length=10)
    write_shards(dataset, tmp_path, [20, 40, 50, 70])
    lazy = LazyDataset(tmp_path)
    expected = concatenation(tmp_path)
    drawn, report = lazy.sample(45, seed=3)
    assert report["of_chunks"] == 5 and report["of_rows"] == 80
    assert report["rows"] == drawn.n <= 45 and report["chunks"] >= 2
    again, _ = lazy.sample(45, seed=3)
    assert dataset_digest(again) == dataset_digest(drawn)
    # Which chunks were drawn, found by their first observations (all distinct here).
    firsts = [row.tobytes() for row in expected.observations[lazy.chunk_offsets]]
    present = {row.tobytes() for row in drawn.observations}
    rows = np.concatenate([np.arange(start, start + size) for start, size, first
                           in zip(lazy.chunk_offsets, lazy.chunks, firsts, strict=True)
                           if first in present])
    assert len(rows) == drawn.n
    reference = take(expected, rows)
    np.testing.assert_array_equal(drawn.observations, reference.observations)
    assert len(drawn.preferences or []) == len(reference.preferences or [])
    everything, report = lazy.sample(10**9, seed=0)
    assert report == {"chunks": 5, "of_chunks": 5, "rows": 80, "of_rows": 80}
    np.testing.assert_array_equal(everything.rewards, expected.rewards)
    assert lazy.sample(1, seed=0)[1]["chunks"] == 1  # the first chunk, whatever its size
    with pytest.raises(ValueError, match="max_rows"):
        lazy.sample(0, seed=0)


def test_to_delayed_gives_each_chunk(sharded):
    folder, expected = sharded
    lazy = LazyDataset(folder)
    parts = dask.compute(*lazy.to_delayed())
    assert [p.n for p in parts] == list(lazy.chunks)
    np.testing.assert_array_equal(np.concatenate([p.observations for p in parts]),
                                  expected.observations)


# ---------------------------------------------------------------------- schedulers


@pytest.mark.parametrize("files", ["sharded", "sharded_h5"])
@pytest.mark.parametrize("scheduler", ["threads", "processes", "synchronous"])
def test_arrays_compute_under_local_schedulers(request, files, scheduler):
    folder, expected = request.getfixturevalue(files)
    lazy = LazyDataset(folder, chunk_rows=40)
    with contextlib.ExitStack() as stack:
        if scheduler == "processes":  # one pool for every computation, not one per call
            pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"))
            stack.enter_context(pool)
            stack.enter_context(dask.config.set(pool=pool))
        stack.enter_context(dask.config.set(scheduler=scheduler))
        assert_arrays_equal(lazy, expected)
        assert lazy.digest() == dataset_digest(expected)
        rows = np.arange(0, lazy.n, 7)
        assert_same_data(lazy.take(rows), take(expected, rows))


@pytest.mark.parametrize("files", ["sharded", "sharded_h5"])
def test_everything_computes_on_a_distributed_cluster(request, files, dask_client):
    folder, expected = request.getfixturevalue(files)
    lazy = LazyDataset(folder, chunk_rows=40)
    with dask.config.set(scheduler=dask_client):
        assert_arrays_equal(lazy, expected)
        # A reduction on the workers (in float64: float32 sums depend on their order).
        assert float(lazy.observations.astype(np.float64).sum().compute()) == pytest.approx(
            float(expected.observations.astype(np.float64).sum()), rel=1e-12)
        assert lazy.digest() == dataset_digest(expected)
        rows = np.arange(3, lazy.n, 5)
        assert_same_data(lazy.take(rows), take(expected, rows))
        drawn, report = lazy.sample(60, seed=1)
        assert drawn.n == report["rows"]


def test_a_shard_with_nan_fails_on_a_worker_naming_it(tmp_path, dask_client):
    paths = write_shards(labelled(), tmp_path, [100])
    with_nan(paths[1], row=7)
    lazy = LazyDataset(tmp_path)
    with dask.config.set(scheduler=dask_client), pytest.raises(
            DataError, match=re.escape(f"{paths[1]}: key 'observations': row 7 has NaN")):
        lazy.observations.sum().compute()


# ---------------------------------------------------------------------- bad shards


def with_nan(path: Path, row: int) -> None:
    arrays = dict(np.load(path))
    arrays["observations"][row, 1] = np.nan
    np.savez(path, **arrays)


def test_nan_in_a_shard_is_an_error_when_computed(tmp_path):
    paths = write_shards(labelled(), tmp_path, [100], suffix=".h5")
    dataset = load_dataset(paths[1])
    arrays = dataset.to_arrays()
    arrays["observations"] = arrays["observations"].copy()
    arrays["observations"][57, 0] = np.nan
    import h5py
    with h5py.File(paths[1], "r+") as f:
        f["observations"][...] = arrays["observations"]
    lazy = LazyDataset(tmp_path)  # opening reads no observations
    message = f"{paths[1]}: key 'observations': row 57 has NaN"
    for compute in (lambda: lazy.observations.compute(), lambda: lazy.chunk(1),
                    lambda: lazy.take(np.array([150])), lazy.digest,
                    lambda: load_dataset(tmp_path, lazy=False)):
        with pytest.raises(DataError, match=re.escape(message)):
            compute()
    lazy.actions.compute()  # the other arrays are fine
    lazy.take(np.array([3, 4]))  # so is a chunk without it
    split = LazyDataset(tmp_path, chunk_rows=30)
    with pytest.raises(DataError, match=re.escape(f"{paths[1]} (rows 50:75): key "
                                                  "'observations': row 7 has NaN")):
        split.observations.compute()


def test_a_shard_missing_a_key(tmp_path):
    paths = write_shards(labelled(), tmp_path, [100])
    first, second = load_dataset(paths[0]), load_dataset(paths[1])
    save_dataset(second.replace(rewards=None), paths[1])
    message = (f"{paths[1]}: key 'rewards' is missing, but {paths[0]} has it; the shards of a "
               "dataset have the same keys")
    for lazy in (True, False, None):
        with pytest.raises(DataError, match=re.escape(message)):
            load_dataset(tmp_path, lazy=lazy)
    save_dataset(first.replace(rewards=None), paths[0])
    save_dataset(second, paths[1])
    with pytest.raises(DataError, match=re.escape(f"{paths[1]}: key 'rewards' is not in "
                                                  f"{paths[0]}; the shards")):
        LazyDataset(tmp_path)
    save_dataset(first, paths[0])
    save_dataset(second.replace(preferences=None), paths[1])
    with pytest.raises(DataError, match=re.escape(f"{paths[1]}: key 'pref_a' is missing")
                       + ".*stores them empty: pref_a, pref_b and rank_segments of shape"):
        LazyDataset(tmp_path)
    arrays = load_dataset(paths[0]).to_arrays()
    del arrays["actions"]
    np.savez(paths[1], **arrays)
    with pytest.raises(DataError, match=re.escape(f"{paths[1]}: missing required key "
                                                  "'actions'")):
        LazyDataset(tmp_path)


def test_shards_with_different_columns(tmp_path):
    paths = write_shards(labelled(), tmp_path, [100], suffix=".h5")
    part = load_dataset(paths[1])
    wider = np.column_stack([part.observations, part.observations[:, 0]])
    save_dataset(part.replace(observations=wider,
                              next_observations=np.column_stack([wider[:, 1:], wider[:, :1]])),
                 paths[1])
    with pytest.raises(DataError, match=re.escape(
            f"{paths[1]}: key 'next_observations' has shape (100, 4) but shape (100, 3) in "
            f"{paths[0]}; the shards of a dataset have the same columns")):
        LazyDataset(tmp_path)


@pytest.mark.parametrize("suffix", [".npz", ".h5"])
def test_a_corrupt_shard(tmp_path, suffix):
    paths = write_shards(labelled(), tmp_path, [50, 100], suffix=suffix)
    whole = paths[1].read_bytes()
    paths[1].write_bytes(whole[:len(whole) // 2])
    expected = "unreadable npz archive" if suffix == ".npz" else "unreadable HDF5 file|not an HDF5"
    with pytest.raises(DataError, match=re.escape(str(paths[1])) + f": ({expected})"):
        LazyDataset(tmp_path)
    paths[1].write_bytes(np.random.default_rng(0).bytes(len(whole)))
    expected = "not an npz archive" if suffix == ".npz" else "not an HDF5 file"
    with pytest.raises(DataError, match=re.escape(f"{paths[1]}: {expected}")):
        load_dataset(tmp_path)


def test_damaged_bytes_inside_a_member(tmp_path):
    """A stored member is read lazily through a memory map, unchecked (its CRC covers the whole
    member, and checking it would read every byte once more); read in memory its CRC is
    checked. A compressed member is checked by its decompression, lazily too."""
    # Members of more than zipfile's first read (4 kB), so that opening reads their header only.
    data = labelled(episodes=4, length=600)
    stored = write_shards(data, tmp_path / "stored", [1200])
    compressed = write_shards(data, tmp_path / "compressed", [1200], compress=True)
    for path in (stored[1], compressed[1]):
        with zipfile.ZipFile(path) as archive, open(path, "rb") as fh:
            info = archive.getinfo("observations.npy")
            start = data_offset(fh.fileno(), info, "x")
            if info.compress_type == zipfile.ZIP_STORED:
                start += len(read_header(archive, info, "x").raw)
        damaged = bytearray(path.read_bytes())
        damaged[start + min(8000, info.compress_size // 2)] ^= 0xFF
        path.write_bytes(bytes(damaged))
    lazy = LazyDataset(tmp_path / "stored")
    assert not np.array_equal(lazy.observations.compute(), data.observations)
    with pytest.raises(DataError, match=re.escape(f"{stored[1]}: ") + ".*Bad CRC-32"):
        load_dataset(stored[1])
    lazy = LazyDataset(tmp_path / "compressed")
    lazy.actions.compute()
    with pytest.raises(DataError, match=re.escape(f"{compressed[1]}: ")):
        lazy.observations.compute(scheduler="processes")


def test_a_preference_crossing_an_episode_names_the_shard(tmp_path):
    paths = write_shards(labelled(), tmp_path, [100])
    arrays = load_dataset(paths[1]).to_arrays()
    arrays["pref_a"] = arrays["pref_a"].copy()
    arrays["pref_a"][2] = [20, 30]  # the episode of rows 0..24 ends at row 24
    np.savez(paths[1], **arrays)
    with pytest.raises(DataError, match=re.escape(
            f"{paths[1]}: key 'pref_a': row 2 is [20, 30]: crosses an episode boundary")):
        LazyDataset(tmp_path)
    arrays["pref_a"][2] = [90, 101]
    np.savez(paths[1], **arrays)
    with pytest.raises(DataError, match=re.escape(
            f"{paths[1]}: key 'pref_a': row 2 is [90, 101]: out of range for 100 transitions")):
        LazyDataset(tmp_path)


# ---------------------------------------------------------------------- load_dataset


def test_load_dataset_reads_small_shards_in_memory(sharded, tmp_path):
    folder, expected = sharded
    assert_same_data(load_dataset(folder), expected)
    assert_same_data(load_dataset(str(folder), lazy=False), expected)
    pattern = str(folder / "part-00[0-2].npz")
    three = Dataset.concatenate([load_dataset(folder / f"part-00{i}.npz") for i in range(3)],
                                source=pattern)
    assert_same_data(load_dataset(pattern), three)
    lazy = load_dataset(pattern, lazy=True)
    assert isinstance(lazy, LazyDataset) and lazy.source == pattern and len(lazy.shards) == 3


def test_load_dataset_is_lazy_above_the_threshold(sharded, monkeypatch):
    folder, expected = sharded
    single = folder / "part-000.npz"
    assert isinstance(load_dataset(single), Dataset)
    monkeypatch.setattr(lazy_module, "LAZY_BYTES", 1000)
    lazy = load_dataset(folder)
    assert isinstance(lazy, LazyDataset) and lazy.nbytes > 1000
    assert lazy.digest() == dataset_digest(expected)
    one = load_dataset(single)
    assert isinstance(one, LazyDataset)
    assert_same_data(one.to_dataset(), load_dataset(single, lazy=False))
    assert one.digest() == dataset_digest(load_dataset(single, lazy=False))
    assert isinstance(load_dataset(single, lazy=False), Dataset)


def test_a_minari_folder_without_its_data_file_is_named(tmp_path):
    folder = tmp_path / "minari-like"
    folder.mkdir()
    (folder / "metadata.json").write_text("{}")
    with pytest.raises(DataError, match=rf"^{folder}: the Minari dataset has no data file "
                                        r"main_data.hdf5"):
        load_dataset(folder, lazy=True)
    with pytest.raises(ValueError, match="lazy="):
        load_dataset(folder, lazy="yes")


def test_repr_and_metadata_without_reading(sharded):
    lazy = LazyDataset(sharded[0])
    text = repr(lazy)
    assert text.startswith("LazyDataset(n=200, obs_dim=3, act_dim=2, episodes=8, shards=4,")
    assert "rewards; preferences; rankings; expert; infos=h,x_velocity" in text


def test_the_eval_command_reads_a_folder_of_shards(sharded, tmp_path, capsys):
    folder, expected = sharded
    artifact = tmp_path / "r.toml"
    artifact.write_text(ARTIFACT)
    out = tmp_path / "r.npy"
    assert main(["eval", str(artifact), str(folder), "-o", str(out)]) == 0
    x = expected.observations[:, 0]
    np.testing.assert_allclose(np.load(out), -x**2 + 0.5 * expected.infos["x_velocity"],
                               rtol=1e-12)
    broken = tmp_path / "broken"
    write_shards(labelled(), broken, [100])
    (broken / "part-001.npz").write_bytes(b"junk")
    assert main(["eval", str(artifact), str(broken), "-o", str(tmp_path / "b.npy")]) == 2
    assert f"{broken / 'part-001.npz'}: not an npz archive" in capsys.readouterr().err
    assert not (tmp_path / "b.npy").exists()


def test_reading_small_shards_in_memory_never_imports_dask(sharded):
    code = ("import sys; from symreward.data import load_dataset; "
            f"d = load_dataset({str(sharded[0])!r}); "
            "assert type(d).__name__ == 'Dataset' and d.n == 200; "
            "assert 'dask' not in sys.modules, 'dask imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
