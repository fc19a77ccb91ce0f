"""Rewards over dask arrays (``symreward.blocks``), the schedulers they run on
(``symreward.schedulers``) and ``symreward eval`` on sharded data.

Every result is compared, bit for bit, with ``RewardArtifact.evaluate`` on the same rows in
memory; the cluster is a real ``distributed.LocalCluster`` of two worker processes (the
``dask_client`` fixture's), one of which a test kills mid-computation.
"""

from __future__ import annotations

import io
import itertools
import os
import re
import signal
import socket
import subprocess
import sys
import time
from types import SimpleNamespace

import dask
import dask.array as da
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import run_cli
from test_relabel import ARTIFACT, transitions

from symreward import blocks
from symreward.artifact import RewardArtifact
from symreward.blocks import (
    TASK_ROWS,
    artifact_text,
    dask_rewards,
    save_rewards,
    shipped_kernels,
    summarize,
)
from symreward.cli import main
from symreward.data import Dataset, save_dataset
from symreward.errors import DataError, FeatureError, OptionError
from symreward.kernels.codegen import SERIAL_CHUNKED
from symreward.schedulers import scheduler

ARTIFACT_TEXT = ARTIFACT.format(name="dask", weight=-1.0)


def artifact(text: str = ARTIFACT_TEXT) -> RewardArtifact:
    return RewardArtifact.loads(text, source="reward.toml")


def dataset(n: int = 500, seed: int = 0) -> Dataset:
    """float32 inputs as real data has them, and the info ``h`` the reward reads."""
    arrays = transitions(n, seed)
    del arrays["infos/qpos"], arrays["metadata/policy"]
    return Dataset.from_arrays(arrays, source="data.npz")


def lazy(data: Dataset, chunks: tuple[int, ...] | int) -> SimpleNamespace:
    """A stand-in for a lazy dataset: its arrays as dask arrays chunked along rows."""
    def rows(array: np.ndarray) -> da.Array:
        return da.from_array(array, chunks=(chunks, *array.shape[1:]))

    return SimpleNamespace(observations=rows(data.observations), actions=rows(data.actions),
                           next_observations=rows(data.next_observations),
                           infos={k: rows(v) for k, v in data.infos.items()}, source=data.source)


def rewards_of(reward: RewardArtifact, arrays: SimpleNamespace) -> da.Array:
    return dask_rewards(reward, arrays.observations, arrays.actions, arrays.next_observations,
                        arrays.infos, source=arrays.source)


# ---------------------------------------------------------------------- the kernels in blocks


@settings(max_examples=25, deadline=None)
@given(cuts=st.lists(st.integers(1, 499), max_size=6, unique=True))
def test_any_row_chunks_give_the_in_memory_rewards_bit_for_bit(cuts):
    data, reward = dataset(), artifact()
    bounds = [0, *sorted(cuts), 500]
    chunks = tuple(b - a for a, b in itertools.pairwise(bounds))
    with scheduler("synchronous"):
        got = rewards_of(reward, lazy(data, chunks)).compute()
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, reward.evaluate(data).rewards)


def test_blocks_larger_than_a_task_slice_equal_the_parallel_kernel_in_memory():
    """A block of more than TASK_ROWS rows runs the serial kernel slice by slice; in memory
    the whole table goes to the parallel kernel: the same bits."""
    data, reward = dataset(n=2 * TASK_ROWS + 1000, seed=1), artifact()
    with scheduler("threads"):
        got = rewards_of(reward, lazy(data, (TASK_ROWS + 999, TASK_ROWS + 1))).compute()
    np.testing.assert_array_equal(got, reward.evaluate(data).rewards)


def test_tables_chunked_along_columns_too_give_the_same_rewards():
    data, reward = dataset(), artifact()
    arrays = lazy(data, 120)
    arrays.observations = arrays.observations.rechunk((120, 1))
    arrays.actions = arrays.actions.rechunk((70, (1, 1)))
    with scheduler("threads"):
        got = rewards_of(reward, arrays).compute()
    np.testing.assert_array_equal(got, reward.evaluate(data).rewards)


def test_the_processes_scheduler_gives_the_same_rewards():
    data, reward = dataset(), artifact()
    with scheduler("processes"):
        got = rewards_of(reward, lazy(data, 120)).compute()
    np.testing.assert_array_equal(got, reward.evaluate(data).rewards)


def test_a_feature_the_arrays_cannot_feed_is_named_before_any_task():
    wide = artifact(ARTIFACT_TEXT.replace('"obs[0]"', '"obs[7]"'))
    with pytest.raises(FeatureError, match=r"feature 'x' reads obs\[7\] but data.npz"):
        rewards_of(wide, lazy(dataset(), 100))


def test_tasks_carry_the_artifact_as_text_and_leave_the_artifact_as_it_was():
    reward = artifact(ARTIFACT_TEXT + '\n[provenance]\nhash = "sha256:stale"\n')
    assert reward.edited_by_hand  # a pending hand edit, which dumps() would record
    rewards = rewards_of(reward, lazy(dataset(), 100))
    texts = {task.kwargs.get("text") for task in rewards.__dask_graph__().values()
             if getattr(task, "kwargs", None)}
    assert texts == {artifact_text(reward)}
    shipped = RewardArtifact.loads(texts.pop())
    assert shipped.content_hash() == reward.content_hash()
    assert reward.edited_by_hand and "history" not in reward.provenance


# ---------------------------------------------------------------------- writing and summary


def test_save_rewards_writes_what_numpy_saves_a_window_at_a_time(tmp_path, monkeypatch):
    reward = artifact(ARTIFACT_TEXT.replace("sin(height)", "log(height)"))  # NaN where h < 0
    data = dataset()
    expected = reward.evaluate(data).rewards
    monkeypatch.setattr(blocks, "WINDOW_BYTES", 1)  # two blocks per thread a window: several
    with scheduler("threads"):
        summary = save_rewards(rewards_of(reward, lazy(data, 37)), tmp_path / "r.npy")
    saved = io.BytesIO()
    np.save(saved, expected)
    assert (tmp_path / "r.npy").read_bytes() == saved.getvalue()
    finite = expected[np.isfinite(expected)]
    assert summary.non_finite == int(np.isnan(expected).sum()) > 0
    assert summary.first_non_finite == int(np.flatnonzero(np.isnan(expected))[0])
    assert (summary.rows, summary.nan, summary.inf) == (500, summary.non_finite, 0)
    assert (summary.minimum, summary.maximum) == (finite.min(), finite.max())
    assert summary.mean == pytest.approx(finite.mean(), rel=1e-12)  # added block by block


@given(st.lists(st.lists(st.sampled_from([0.0, -1.5, 2.25, 1e300, np.inf, -np.inf, np.nan]),
                         max_size=6), min_size=1, max_size=5))
def test_a_summary_of_blocks_is_the_summary_of_their_concatenation(parts):
    blocks_ = [np.array(p, dtype=np.float64) for p in parts]
    whole = np.concatenate(blocks_)
    by_blocks, at_once = summarize(blocks_), summarize([whole])
    assert (by_blocks.rows, by_blocks.finite, by_blocks.nan, by_blocks.inf,
            by_blocks.first_non_finite, by_blocks.minimum, by_blocks.maximum) == (
        at_once.rows, at_once.finite, at_once.nan, at_once.inf, at_once.first_non_finite,
        at_once.minimum, at_once.maximum)
    assert by_blocks.mean == pytest.approx(at_once.mean, rel=1e-12, nan_ok=True)


def fail_on_third_block(block: np.ndarray, block_info: dict | None = None) -> np.ndarray:
    if block_info is not None and block_info[0]["chunk-location"][0] == 2:
        raise DataError("part-0002.npz: missing required key 'actions'")
    return block


def test_a_failing_block_leaves_no_file_and_no_temporary_file(tmp_path):
    arrays = lazy(dataset(), 100)
    arrays.observations = arrays.observations.map_blocks(fail_on_third_block, dtype=np.float32)
    (tmp_path / "r.npy").write_bytes(b"an earlier file")
    with scheduler("threads"), pytest.raises(DataError, match="part-0002.npz"):
        save_rewards(rewards_of(artifact(), arrays), tmp_path / "r.npy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.npy"]
    assert (tmp_path / "r.npy").read_bytes() == b"an earlier file"


# ---------------------------------------------------------------------- schedulers


def pid_of_task(block: np.ndarray) -> np.ndarray:
    return np.full(len(block), os.getpid())


def test_schedulers_run_tasks_where_they_say():
    pids = da.ones(40, chunks=10).map_blocks(pid_of_task, dtype=np.int64)
    with scheduler("threads"):
        assert set(pids.compute().tolist()) == {os.getpid()}
        assert dask.base.get_scheduler() is dask.threaded.get
    with scheduler("synchronous"):
        assert dask.base.get_scheduler() is dask.local.get_sync
    with scheduler(None) as client:
        assert client is None
    # One pool of processes for every computation of the block (here of one process: dask's
    # own scheduler would start a new one for each).
    with dask.config.set(num_workers=1), scheduler("processes"):
        first, second = (set(pids.compute().tolist()) for _ in range(2))
        assert len(first) == 1 and os.getpid() not in first and first == second


def test_an_unknown_scheduler_is_an_option_error():
    with pytest.raises(OptionError, match="must be threads, processes, synchronous, or a "
                                          "dask.distributed"), scheduler("thread"):
        pass


def test_an_unreachable_address_fails_within_the_timeout_naming_it():
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
    start = time.monotonic()
    with pytest.raises(OptionError, match="cannot connect") as raised, \
            scheduler(address, timeout=0.5):
        pass
    assert time.monotonic() - start < 10
    assert raised.value.option == "scheduler" and raised.value.value == address


def test_cli_bad_scheduler_is_exit_2_naming_the_flag_without_traceback(tmp_path, capsys):
    path = tmp_path / "data.npz"
    save_dataset(dataset(), path)
    (tmp_path / "reward.toml").write_text(ARTIFACT_TEXT)
    for command, output in (("eval", "r.npy"), ("relabel", "out.npz")):
        for spec, reason in (("thread", "must be threads"),
                             ("tcp://127.0.0.1:notaport", "cannot connect")):
            code = main([command, str(tmp_path / "reward.toml"), str(path), "-o",
                         str(tmp_path / output), "--scheduler", spec])
            stderr = capsys.readouterr().err
            assert code == 2, stderr
            assert stderr.startswith(f"symreward {command}: error: --scheduler {spec}: {reason}")
            assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.npz", "reward.toml"]


# ---------------------------------------------------------------------- a cluster


def serial_kernel_stats(text: str) -> dict[str, int] | None:
    """In a worker: numba's cache hits and misses of the kernel the tasks ran, or None where
    no task of ``text`` ran (the kernel was never loaded in this process)."""
    loaded = shipped_kernels(text)._module._compiled.get("rewards" + SERIAL_CHUNKED)
    if loaded is None:
        return None
    return {"hits": sum(loaded.stats.cache_hits.values()),
            "misses": sum(loaded.stats.cache_misses.values())}


def test_on_a_cluster_workers_load_the_kernel_from_the_disk_cache(dask_client):
    # A structure no other test compiles (numbers aside, a reward is its module): the client
    # compiles it (or finds it on disk), the workers must only load it.
    text = ARTIFACT_TEXT.replace("sin(height)", "tanh(height) * cos(x)")
    reward, data = artifact(text), dataset(n=2000, seed=3)
    with scheduler(dask_client.scheduler.address) as client:
        rewards = rewards_of(reward, lazy(data, 100))
        got = rewards.compute()
        stats = client.run(serial_kernel_stats, artifact_text(reward))
    np.testing.assert_array_equal(got, reward.evaluate(data).rewards)
    ran = [s for s in stats.values() if s is not None]
    assert ran, stats
    assert all(s["misses"] == 0 and s["hits"] >= 1 for s in ran), stats


def test_on_a_cluster_save_rewards_equals_the_in_memory_file(dask_client, tmp_path):
    data, reward = dataset(n=3000, seed=4), artifact()
    with scheduler(dask_client.scheduler.address):
        summary = save_rewards(rewards_of(reward, lazy(data, 250)), tmp_path / "r.npy")
    expected = reward.evaluate(data).rewards
    np.testing.assert_array_equal(np.load(tmp_path / "r.npy"), expected)
    assert (summary.rows, summary.finite, summary.minimum) == (3000, 3000, expected.min())


def slowly(block: np.ndarray) -> np.ndarray:
    time.sleep(0.2)
    return block


def test_a_worker_killed_mid_computation_changes_nothing(dask_client):
    """dask reschedules the killed worker's tasks (and recomputes results it held): the
    rewards come back complete and equal."""
    data, reward = dataset(n=2400, seed=5), artifact()
    arrays = lazy(data, 100)  # 24 blocks of 0.2 s on 2 workers: about 2.4 s
    arrays.observations = arrays.observations.map_blocks(slowly, dtype=np.float32)
    with scheduler(dask_client.scheduler.address) as client:
        client.wait_for_workers(2)
        before = client.run(os.getpid)
        future = client.compute(rewards_of(reward, arrays))
        time.sleep(0.7)
        assert not future.done()
        victim = sorted(before.values())[0]
        os.kill(victim, signal.SIGKILL)
        got = future.result(timeout=60)
        client.wait_for_workers(2, timeout=30)
        after = client.run(os.getpid)
    assert victim not in after.values()
    np.testing.assert_array_equal(got, reward.evaluate(data).rewards)


# ---------------------------------------------------------------------- the command line


IMPORTS_DASK = """
import sys
from symreward.cli import main
folder = sys.argv[1]
assert main(["eval", f"{folder}/reward.toml", f"{folder}/data.npz", "-o", f"{folder}/r.npy"]) == 0
assert main(["relabel", f"{folder}/reward.toml", f"{folder}/data.npz", "-o",
             f"{folder}/out.npz"]) == 0
print(sorted({name.split(".")[0] for name in sys.modules} & {"dask", "distributed"}))
"""


def test_in_memory_eval_and_relabel_import_no_dask(tmp_path):
    save_dataset(dataset(), tmp_path / "data.npz")
    (tmp_path / "reward.toml").write_text(ARTIFACT_TEXT)
    result = subprocess.run([sys.executable, "-c", IMPORTS_DASK, str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def write_shards(folder, data: Dataset, sizes: tuple[int, ...]) -> list:
    """``data`` cut into shard files of whole episodes (``sizes`` multiples of 50)."""
    folder.mkdir()
    paths, start = [], 0
    for k, size in enumerate(sizes):
        part = Dataset.from_arrays({key: value[start:start + size]
                                    for key, value in data.to_arrays().items()})
        paths.append(folder / f"part-{k:04d}.npz")
        save_dataset(part, paths[-1])
        start += size
    return paths


@pytest.mark.parametrize("where", ["threads", "cluster"])
def test_cli_eval_of_shards_equals_eval_of_their_concatenation(tmp_path, where, request):
    from symreward.data import load_dataset

    data = dataset(n=600)
    shards = write_shards(tmp_path / "shards", data, (200, 150, 250))
    (tmp_path / "reward.toml").write_text(ARTIFACT_TEXT)
    spec = (where if where == "threads"
            else request.getfixturevalue("dask_client").scheduler.address)
    result = run_cli("eval", tmp_path / "reward.toml", tmp_path / "shards", "-o",
                     tmp_path / "r.npy", "--scheduler", spec)
    assert result.returncode == 0, result.stderr
    together = Dataset.concatenate([load_dataset(p) for p in shards])
    expected = artifact().evaluate(together).rewards
    np.testing.assert_array_equal(np.load(tmp_path / "r.npy"), expected)
    assert "600 rewards" in result.stdout and "non-finite: 0" in result.stdout


def test_a_lazy_dataset_reads_and_checks_the_members_its_reward_reads(tmp_path):
    """``lazy_rewards``: one task per chunk, the in-memory rewards bit for bit; a member the
    features do not read (here next_observations) is neither read nor checked, one they read
    is checked, naming the shard."""
    from symreward.blocks import lazy_rewards
    from symreward.data import LazyDataset, load_dataset

    reward = RewardArtifact.loads(ARTIFACT_TEXT.replace('step = "next_obs[1] - obs[1]"',
                                                        'step = "obs[1]"'))
    data = dataset(n=600)
    shards = write_shards(tmp_path / "shards", data, (200, 150, 250))
    rewards = lazy_rewards(reward, LazyDataset(tmp_path / "shards"))
    assert rewards.npartitions == 3
    expected = reward.evaluate(data).rewards
    np.testing.assert_array_equal(rewards.compute(), expected)
    arrays = {key: np.array(value) for key, value in load_dataset(shards[1]).to_arrays().items()}
    arrays["next_observations"][5, 0] = np.nan
    np.savez(shards[1], **arrays)
    np.testing.assert_array_equal(
        lazy_rewards(reward, LazyDataset(tmp_path / "shards")).compute(), expected)
    arrays["observations"][5, 2] = np.inf
    np.savez(shards[1], **arrays)
    with pytest.raises(DataError, match=re.escape(f"{shards[1]}: key 'observations': row 5 "
                                                  "has NaN or inf (column 2: inf)")):
        lazy_rewards(reward, LazyDataset(tmp_path / "shards")).compute()
    arrays["observations"][5, 2] = 0.0
    for key, row in (("actions", 7), ("infos/h", 149)):
        broken = {k: v.copy() for k, v in arrays.items()}
        broken[key][row] = np.nan
        np.savez(shards[1], **broken)
        with pytest.raises(DataError, match=re.escape(f"{shards[1]}: key '{key}': row {row} ")):
            lazy_rewards(reward, LazyDataset(tmp_path / "shards")).compute()
