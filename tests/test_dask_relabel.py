"""``symreward relabel`` of a sharded dataset (``symreward.data.relabel_shards``): one shard
per shard, each the single-file relabel of it, written as dask tasks on threads or on a real
``distributed.LocalCluster`` (the ``dask_client`` fixture's); the folder appears whole or not
at all.
"""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import pytest
from support import run_cli
from test_relabel import transitions, write_artifact, write_npz

from symreward.artifact import RewardArtifact
from symreward.cli import main
from symreward.data import Dataset, load_dataset
from symreward.data.relabel import relabel
from symreward.data.relabel_shards import relabel_shards
from symreward.errors import DataError
from symreward.schedulers import scheduler

SIZES = (150, 100, 250)


def write_shards(folder: Path, sizes: tuple[int, ...] = SIZES, kind: str = "npz",
                 seed: int = 0) -> list[Path]:
    """A random walk's transitions (float32, with rewards, infos and a metadata string) cut
    into shards of whole episodes, named part-0000, part-0001, ..."""
    folder.mkdir()
    arrays = transitions(sum(sizes), seed)
    paths, start = [], 0
    for k, size in enumerate(sizes):
        part = {key: value[start:start + size] if value.ndim else value
                for key, value in arrays.items()}
        path = folder / f"part-{k:04d}.{kind}"
        if kind == "npz":
            write_npz(path, part, deflated={"actions"})
        else:
            with h5py.File(path, "w") as f:
                for key, value in part.items():
                    if value.ndim:
                        f.create_dataset(key, data=value)
        paths.append(path)
        start += size
    return paths


def scheduler_spec(where: str, request: pytest.FixtureRequest) -> str:
    """``"threads"``, or the address of the ``dask_client`` fixture's cluster."""
    if where == "threads":
        return where
    return request.getfixturevalue("dask_client").scheduler.address


def concatenation(shards: list[Path]) -> Dataset:
    return Dataset.concatenate([load_dataset(p) for p in shards])


def entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("where", ["threads", "cluster"])
def test_each_shard_is_the_single_file_relabel_of_it(tmp_path, where, request):
    artifact = write_artifact(tmp_path)
    shards = write_shards(tmp_path / "shards")
    spec = scheduler_spec(where, request)
    with scheduler(spec):
        result = relabel_shards(artifact, str(tmp_path / "shards"), tmp_path / "out")
    single = tmp_path / "single"
    single.mkdir()
    for shard in shards:
        relabel(artifact, shard, single / shard.name)
        assert (tmp_path / "out" / shard.name).read_bytes() == \
            (single / shard.name).read_bytes(), shard.name
    assert entries(tmp_path / "out") == [s.name for s in shards]
    expected = RewardArtifact.load(artifact).evaluate(concatenation(shards)).rewards
    relabelled = concatenation(sorted((tmp_path / "out").iterdir()))
    np.testing.assert_array_equal(relabelled.rewards, expected)
    assert (result.rows, result.minimum, result.maximum) == (500, expected.min(),
                                                             expected.max())
    assert result.mean == pytest.approx(expected.mean(), rel=1e-12)
    assert [Path(r.output) for r in result.shards] == [tmp_path / "out" / s.name
                                                       for s in shards]
    assert entries(tmp_path) == ["first.toml", "out", "shards", "single"]


def test_a_glob_of_hdf5_shards(tmp_path):
    artifact = write_artifact(tmp_path)
    shards = write_shards(tmp_path / "shards", kind="h5")
    with scheduler("threads"):
        relabel_shards(artifact, str(tmp_path / "shards" / "part-*.h5"), tmp_path / "out")
    expected = RewardArtifact.load(artifact).evaluate(concatenation(shards)).rewards
    out = sorted((tmp_path / "out").iterdir())
    assert [p.name for p in out] == [s.name for s in shards]
    np.testing.assert_array_equal(concatenation(out).rewards, expected)
    with h5py.File(out[0]) as f:
        np.testing.assert_array_equal(f["original_rewards"][:], h5py.File(shards[0])["rewards"][:])


def test_cli_relabels_a_folder_of_shards(tmp_path):
    artifact = write_artifact(tmp_path)
    shards = write_shards(tmp_path / "shards")
    result = run_cli("relabel", artifact, tmp_path / "shards", "-o", tmp_path / "out",
                     "--scheduler", "threads")
    assert result.returncode == 0, result.stderr
    assert f"wrote {tmp_path / 'out'}: 3 shards, 500 rewards" in result.stdout
    assert "old rewards: kept as key 'original_rewards'" in result.stdout
    expected = RewardArtifact.load(artifact).evaluate(concatenation(shards)).rewards
    np.testing.assert_array_equal(
        concatenation(sorted((tmp_path / "out").iterdir())).rewards, expected)


def test_labels_files_are_copied_beside_the_relabelled_shards(tmp_path):
    from symreward.data import Preferences, save_labels

    artifact = write_artifact(tmp_path)
    write_shards(tmp_path / "shards")
    pairs = Preferences(np.array([[0, 5], [120, 130]]), np.array([[300, 305], [480, 490]]),
                        np.array([1.0, 0.0]))
    save_labels(tmp_path / "shards" / "labels.npz", preferences=pairs)
    with scheduler("threads"):
        relabel_shards(artifact, str(tmp_path / "shards"), tmp_path / "out")
    assert (tmp_path / "out" / "labels.npz").read_bytes() == (
        tmp_path / "shards" / "labels.npz").read_bytes()
    relabelled = load_dataset(tmp_path / "out", lazy=False)
    np.testing.assert_array_equal(relabelled.preferences.a, pairs.a)
    np.testing.assert_array_equal(relabelled.rewards, RewardArtifact.load(artifact).evaluate(
        load_dataset(tmp_path / "shards", lazy=False)).rewards)


def break_shard(path: Path, how: str) -> None:
    if how == "corrupt":
        path.write_bytes(path.read_bytes()[:300])  # cut short, as by a failed copy
    else:
        arrays = dict(np.load(path, allow_pickle=False))
        del arrays["next_observations"]
        write_npz(path, arrays)


@pytest.mark.parametrize("how", ["corrupt", "missing key"])
@pytest.mark.parametrize("where", ["threads", "cluster"])
def test_a_bad_shard_is_exit_2_naming_it_and_nothing_is_left(tmp_path, how, where, request,
                                                             capsys):
    artifact = write_artifact(tmp_path)
    shards = write_shards(tmp_path / "shards")
    break_shard(shards[1], how)
    spec = scheduler_spec(where, request)
    code = main(["relabel", str(artifact), str(tmp_path / "shards"), "-o",
                 str(tmp_path / "out"), "--scheduler", spec])
    stderr = capsys.readouterr().err
    assert code == 2, stderr
    assert stderr.startswith(f"symreward relabel: error: {shards[1]}: ")
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1
    assert ("next_observations" in stderr) == (how == "missing key")
    assert entries(tmp_path) == ["first.toml", "shards"]  # no output, no temporary folder


def test_the_first_bad_shard_by_name_is_reported_whatever_ran_first(tmp_path):
    artifact = write_artifact(tmp_path)
    shards = write_shards(tmp_path / "shards", sizes=(50,) * 6)
    break_shard(shards[4], "corrupt")
    break_shard(shards[2], "missing key")
    with scheduler("threads"), pytest.raises(DataError) as raised:
        relabel_shards(artifact, str(tmp_path / "shards"), tmp_path / "out")
    assert str(raised.value).startswith(f"{shards[2]}: missing required key 'next_observations'")
    assert entries(tmp_path) == ["first.toml", "shards"]


def test_an_existing_output_is_refused_and_kept(tmp_path):
    artifact = write_artifact(tmp_path)
    write_shards(tmp_path / "shards")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep me")
    with pytest.raises(DataError, match="exists; relabelled shards go to a new folder"):
        relabel_shards(artifact, str(tmp_path / "shards"), tmp_path / "out")
    assert entries(tmp_path / "out") == ["mine.txt"]


def writer_of(path: Path, pids: dict[str, int]) -> str | None:
    """The worker (address) whose process has ``path`` open, from /proc."""
    for address, pid in pids.items():
        try:
            if any(os.readlink(fd) == str(path) for fd in Path(f"/proc/{pid}/fd").iterdir()):
                return address
        except OSError:  # a descriptor closed while it was read
            continue
    return None


def temporary_shard(parent: Path) -> Path | None:
    """A shard being written: its temporary file inside relabel's temporary folder."""
    for folder in parent.glob(".out.*.tmp"):
        for path in folder.glob(".part-*.tmp"):
            return path
    return None


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="finds the writer through /proc")
def test_a_worker_killed_while_writing_a_shard_leaves_a_complete_equal_folder(tmp_path,
                                                                              dask_client):
    """The worker writing a shard is SIGKILLed: dask runs the shard again on the other one,
    the dead worker's half-written file is removed, and the folder is the one an undisturbed
    run writes, byte for byte, with nothing beside it."""
    artifact = write_artifact(tmp_path)
    shards = write_shards(tmp_path / "shards", sizes=(100_000,) * 8)
    single = tmp_path / "single"
    single.mkdir()
    for shard in shards:
        relabel(artifact, shard, single / shard.name)
    with scheduler(dask_client.scheduler.address) as client, ThreadPoolExecutor(1) as pool:
        client.wait_for_workers(2)
        pids = client.run(os.getpid)
        running = pool.submit(relabel_shards, artifact, str(tmp_path / "shards"),
                              tmp_path / "out")
        deadline = time.monotonic() + 60
        victim = half_written = None
        while victim is None and not running.done() and time.monotonic() < deadline:
            half_written = temporary_shard(tmp_path)
            victim = writer_of(half_written, pids) if half_written else None
            if victim is not None:
                # Stopped, it cannot close and rename the file between the look and the kill.
                os.kill(pids[victim], signal.SIGSTOP)
                if writer_of(half_written, {victim: pids[victim]}) is None:
                    os.kill(pids[victim], signal.SIGCONT)
                    victim = None
            time.sleep(0.001)
        assert victim is not None, "no worker was caught writing a shard"
        os.kill(pids[victim], signal.SIGKILL)
        assert half_written.exists()  # the dead worker's, until the folder is cleaned
        result = running.result(timeout=120)
        client.wait_for_workers(2, timeout=30)
        assert pids[victim] not in client.run(os.getpid).values()
    for shard in shards:
        assert (tmp_path / "out" / shard.name).read_bytes() == \
            (single / shard.name).read_bytes(), shard.name
    assert entries(tmp_path / "out") == [s.name for s in shards]
    assert entries(tmp_path) == ["first.toml", "out", "shards", "single"]
    assert result.rows == 8 * 100_000
