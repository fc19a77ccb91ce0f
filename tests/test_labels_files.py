"""Labels files (``symreward.data.labels``): preference pairs and ranked segments over the rows
of a whole sharded dataset, kept beside the shards. Read lazily or in memory, the dataset is
the concatenation of the shards with the labels files' supervision after the shards' own;
every check names the labels file; ``save_labels`` writes them."""

from __future__ import annotations

import itertools
import re
import tempfile
from pathlib import Path

import dask
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support import assert_same_data, nonlinear_system

from symreward.cli import main
from symreward.data import (
    Dataset,
    LazyDataset,
    Preferences,
    Rankings,
    bradley_terry_preferences,
    load_dataset,
    rankings_from_rewards,
    save_dataset,
    save_labels,
)
from symreward.data.dataset import dataset_digest
from symreward.data.shards import dataset_files, find_shards, is_sharded
from symreward.data.subset import labelled_rows, take
from symreward.errors import DataError, OptionError

ARTIFACT = """\
schema = "symreward/1"
name = "t"

[features]
x = "obs[0]"

[[terms]]
name = "main"
expr = "-x**2"
"""


def with_rewards(seed: int = 0, episodes: int = 8, length: int = 25) -> Dataset:
    base = nonlinear_system(seed=seed, episodes=episodes, length=length, dtype=np.float32)
    rng = np.random.default_rng(seed)
    return base.replace(rewards=rng.normal(size=base.n), expert=rng.random(base.n) < 0.3)


def write_shards(dataset: Dataset, folder: Path, cuts: list[int], suffix: str = ".npz",
                 own_pairs: int = 0) -> tuple[list[Path], Dataset]:
    """``dataset`` cut at rows ``cuts`` (anywhere: a shard's last row closes an episode) into
    shards ``part-000``...; each carries ``own_pairs`` preference pairs of its own rows (and
    empty rankings). Returns the paths and their concatenation."""
    folder.mkdir(parents=True, exist_ok=True)
    paths, parts = [], []
    for i, (start, stop) in enumerate(itertools.pairwise([0, *cuts, dataset.n])):
        part = take(dataset, np.arange(start, stop))  # its last row closes an episode
        part = part.replace(
            preferences=bradley_terry_preferences(part, None, own_pairs, 1, seed=i)
            if own_pairs else Preferences(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0)),
            rankings=Rankings(np.zeros((0, 2)), np.zeros(0)))
        paths.append(folder / f"part-{i:03d}{suffix}")
        save_dataset(part, paths[-1])
        parts.append(load_dataset(paths[-1]))
    return paths, Dataset.concatenate(parts, source=str(folder))


def with_labels(concatenation: Dataset, *labels: tuple[Preferences | None, Rankings | None],
                ) -> Dataset:
    """The concatenation with each labels file's supervision after its own, by hand."""
    prefs = [p for p in (concatenation.preferences, *(p for p, _ in labels)) if p is not None]
    ranks = [r for r in (concatenation.rankings, *(r for _, r in labels)) if r is not None]
    return concatenation.replace(
        preferences=Preferences(*(np.concatenate([getattr(p, f) for p in prefs])
                                  for f in ("a", "b", "label"))) if prefs else None,
        rankings=Rankings(*(np.concatenate([getattr(r, f) for r in ranks])
                            for f in ("segments", "scores"))) if ranks else None)


def assert_lazy_equals(lazy: LazyDataset, expected: Dataset) -> None:
    """Everything a lazy dataset says of its supervision agrees with ``expected``."""
    for got, wanted in ((lazy.preferences, expected.preferences),
                        (lazy.rankings, expected.rankings)):
        assert (got is None) == (wanted is None)
        if got is not None:
            for field in ("a", "b", "label") if isinstance(got, Preferences) else (
                    "segments", "scores"):
                np.testing.assert_array_equal(getattr(got, field), getattr(wanted, field))
                assert getattr(got, field).dtype == getattr(wanted, field).dtype
    np.testing.assert_array_equal(lazy.episode_ends, expected.episode_ends)
    assert_same_data(lazy.to_dataset(), expected, same_source=False)
    assert lazy.digest() == dataset_digest(expected)
    rows = labelled_rows(expected)
    np.testing.assert_array_equal(labelled_rows(lazy), rows)
    if len(rows):
        assert_same_data(lazy.take(rows), take(expected, rows), same_source=False)


def shard_of(rows: np.ndarray, cuts: list[int]) -> np.ndarray:
    return np.searchsorted(np.asarray(cuts), rows, side="right")


# ---------------------------------------------------------------------- equal to memory


@pytest.fixture(scope="module")
def campaign(tmp_path_factory) -> tuple[Path, list[int], Dataset]:
    """Three npz shards (one cut inside an episode) with pairs of their own, and two labels
    files of pairs and ranked segments drawn from the whole dataset; what they stand for."""
    folder = tmp_path_factory.mktemp("campaign")
    cuts = [50, 110]
    _, concatenation = write_shards(with_rewards(), folder, cuts, own_pairs=3)
    prefs = bradley_terry_preferences(concatenation, None, 40, 10, seed=1)
    ranks = rankings_from_rewards(concatenation, None, 12, 8, seed=2)
    # Named so that they sort before and among the shards: what a file is, is what it holds.
    save_labels(folder / "a-labels.npz", preferences=prefs)
    save_labels(folder / "part-001-scores.h5", rankings=ranks)
    return folder, cuts, with_labels(concatenation, (prefs, None), (None, ranks))


def test_pairs_across_shards_equal_the_concatenation_with_the_same_pairs(campaign):
    folder, cuts, expected = campaign
    assert len(expected.preferences) == 3 * 3 + 40 and len(expected.rankings) == 12
    across = shard_of(expected.preferences.a[:, 0], cuts) != shard_of(
        expected.preferences.b[:, 0], cuts)
    assert across.sum() >= 10  # the point: pairs compare segments of different shards
    lazy = LazyDataset(folder)
    assert [Path(s.path).name for s in lazy.shards] == [f"part-00{i}.npz" for i in range(3)]
    assert [Path(p).name for p in lazy.labels] == ["a-labels.npz", "part-001-scores.h5"]
    assert "shards=3, labels=2," in repr(lazy)
    assert_lazy_equals(lazy, expected)
    assert_same_data(load_dataset(folder, lazy=False), expected, same_source=False)
    # a glob finds them too
    assert_same_data(load_dataset(str(folder / "*")), expected, same_source=False)


def test_a_chunked_lazy_dataset_gathers_pairs_across_chunks(campaign):
    folder, _, expected = campaign
    # Shards split in chunks of whole episodes: pairs cross chunks as well as shards.
    lazy = LazyDataset(folder, chunk_rows=20)
    assert len(lazy.chunks) > len(lazy.shards)
    assert_lazy_equals(lazy, expected)


def test_sample_keeps_the_pairs_inside_the_drawn_chunks(campaign):
    folder, _, expected = campaign
    lazy = LazyDataset(folder, chunk_rows=20)
    drawn, report = lazy.sample(90, seed=5)
    assert report["rows"] == drawn.n <= 90
    # Which chunks were drawn, found by their first observations (all distinct here).
    firsts = [row.tobytes() for row in expected.observations[lazy.chunk_offsets]]
    present = {row.tobytes() for row in drawn.observations}
    rows = np.concatenate([np.arange(start, start + size) for start, size, first
                           in zip(lazy.chunk_offsets, lazy.chunks, firsts, strict=True)
                           if first in present])
    assert_same_data(drawn, take(expected, rows), same_source=False)
    everything, _ = lazy.sample(10**9, seed=0)
    assert_same_data(everything, take(expected, np.arange(expected.n)), same_source=False)


def test_labelled_rows_gathered_on_a_cluster(campaign, dask_client):
    folder, _, expected = campaign
    lazy = LazyDataset(folder, chunk_rows=20)
    rows = labelled_rows(lazy)
    with dask.config.set(scheduler=dask_client):
        assert_same_data(lazy.take(rows), take(expected, rows), same_source=False)
        assert lazy.digest() == dataset_digest(expected)


def test_labels_beside_shards_without_supervision(tmp_path):
    """Shards that carry no supervision keys at all, labels only in labels files."""
    dataset = with_rewards(seed=3, episodes=6, length=20)
    parts = [take(dataset, np.arange(start, stop)) for start, stop in ((0, 40), (40, 120))]
    for i, part in enumerate(parts):
        save_dataset(part, tmp_path / f"part-{i}.h5")
    concatenation = Dataset.concatenate(parts, source=str(tmp_path))
    assert concatenation.preferences is None
    prefs = Preferences([[5, 15], [41, 50]], [[100, 110], [0, 9]], [1.0, 0.25])
    save_labels(tmp_path / "labels.h5", preferences=prefs)
    expected = concatenation.replace(preferences=prefs)
    assert_lazy_equals(LazyDataset(tmp_path), expected)
    assert_same_data(load_dataset(tmp_path), expected, same_source=False)
    assert expected.rankings is None and LazyDataset(tmp_path).rankings is None


@settings(max_examples=15, deadline=None)
@given(data=st.data())
def test_random_shard_splits_with_global_labels(data):
    dataset = with_rewards(seed=data.draw(st.integers(0, 50)), episodes=4,
                           length=data.draw(st.integers(3, 12)))
    cuts = sorted(data.draw(st.lists(st.integers(1, dataset.n - 1), unique=True, max_size=4)))
    suffix = data.draw(st.sampled_from([".npz", ".h5"]))
    own_pairs = data.draw(st.integers(0, 2))
    chunk_rows = data.draw(st.integers(1, dataset.n))
    seed = data.draw(st.integers(0, 2**31))
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        _, concatenation = write_shards(dataset, folder, cuts, suffix, own_pairs)
        rng = np.random.default_rng(seed)
        labels = []
        for k in range(data.draw(st.integers(1, 3))):
            prefs = Preferences(*random_pairs(concatenation, rng, int(rng.integers(0, 6))))
            segments = random_pairs(concatenation, rng, int(rng.integers(0, 4)))[0]
            ranks = Rankings(segments, rng.normal(size=len(segments)))
            kept = data.draw(st.sampled_from(["preferences", "rankings", "both"]))
            found = (prefs if kept != "rankings" else None, ranks if kept != "preferences"
                     else None)
            save_labels(folder / f"labels-{k}{data.draw(st.sampled_from(['.npz', '.h5']))}",
                        *found)
            labels.append(found)
        expected = with_labels(concatenation, *labels)
        assert_lazy_equals(LazyDataset(folder, chunk_rows=chunk_rows), expected)
        assert_same_data(load_dataset(folder, lazy=False), expected, same_source=False)


def random_pairs(dataset: Dataset, rng: np.random.Generator, count: int,
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``count`` pairs of segments, each inside one episode anywhere in ``dataset``."""

    def segments() -> np.ndarray:
        episode = rng.integers(0, dataset.n_episodes, size=count)
        first, stop = dataset.episode_starts[episode], dataset.episode_ends[episode]
        start = first + (rng.random(count) * (stop - first)).astype(np.int64)
        end = start + 1 + (rng.random(count) * (stop - start)).astype(np.int64)
        return np.column_stack([start, end]).reshape(-1, 2)

    return segments(), segments(), rng.random(count)


# ---------------------------------------------------------------------- what a file is


def test_files_are_told_apart_by_what_they_hold(campaign, tmp_path):
    folder, _, _ = campaign
    files = dataset_files(str(folder))
    assert [Path(p).name for p in files.shards] == [f"part-00{i}.npz" for i in range(3)]
    assert sorted(files.headers) == list(files.shards)
    assert [Path(h.path).name for h in files.labels] == ["a-labels.npz", "part-001-scores.h5"]
    assert find_shards(str(folder)) == [Path(p) for p in files.shards]
    # A shard named like labels is a shard.
    save_dataset(with_rewards(episodes=1), tmp_path / "labels.npz")
    assert [p.name for p in find_shards(str(tmp_path))] == ["labels.npz"]


def test_a_file_that_cannot_be_read_counts_as_a_shard(three_shards):
    """Its error is the one reading it gives, after the errors of the shards before it."""
    folder, _ = three_shards
    (folder / "part-002.npz").write_bytes(b"junk")
    save_labels(folder / "labels.npz", rankings=Rankings([[0, 2]], [1.0]))
    assert [p.name for p in find_shards(str(folder))] == [f"part-00{i}.npz" for i in range(3)]
    with pytest.raises(DataError, match=re.escape(f"{folder / 'part-002.npz'}: not an npz")):
        LazyDataset(folder)
    arrays = dict(np.load(folder / "part-000.npz"))
    del arrays["actions"]
    np.savez(folder / "part-000.npz", **arrays)
    with pytest.raises(DataError, match=re.escape(
            f"{folder / 'part-000.npz'}: missing required key 'actions'")):
        load_dataset(folder)


def test_a_folder_of_labels_files_only_has_no_shards(tmp_path):
    save_labels(tmp_path / "a.npz", preferences=Preferences([[0, 2]], [[3, 5]], [1.0]))
    save_labels(tmp_path / "b.h5", rankings=Rankings([[0, 2]], [1.0]))
    assert is_sharded(str(tmp_path))
    for read in (lambda: load_dataset(tmp_path), lambda: LazyDataset(tmp_path),
                 lambda: find_shards(str(tmp_path))):
        with pytest.raises(DataError, match=re.escape(
                f"{tmp_path}: folder matches no dataset shards, only labels files (a.npz, "
                "b.h5)")):
            read()


@pytest.mark.parametrize("suffix", [".npz", ".h5"])
def test_a_labels_file_read_alone_says_what_it_is(tmp_path, suffix):
    path = tmp_path / f"labels{suffix}"
    save_labels(path, preferences=Preferences([[0, 2]], [[3, 5]], [1.0]))
    message = re.escape(f"{path}: holds pref_a, pref_b, pref_label and no transitions: it is a "
                        "labels file")
    for lazy in (False, True, None):
        with pytest.raises(DataError, match=message):
            load_dataset(path, lazy=lazy)


# ---------------------------------------------------------------------- bad labels


@pytest.fixture
def three_shards(tmp_path) -> tuple[Path, Dataset]:
    """Shards of rows 0:50, 50:110 (cut inside the episode of rows 100:125) and 110:200."""
    return tmp_path, write_shards(with_rewards(), tmp_path, [50, 110])[1]


def bad_labels(folder: Path, message: str, **arrays: object) -> None:
    """A labels file of ``arrays`` is refused with ``message`` (naming it), lazily, in memory
    and by the command line (exit 2)."""
    path = folder / "labels.npz"
    np.savez(path, **arrays)
    expected = re.escape(f"{path}: {message}")
    with pytest.raises(DataError, match=expected):
        LazyDataset(folder)
    with pytest.raises(DataError, match=expected):
        load_dataset(folder, lazy=False)


PAIR = {"pref_b": [[0, 5]], "pref_label": [1.0]}


@pytest.mark.parametrize("segment, why", [
    ([195, 201], "out of range for 200 transitions (valid: 0..200)"),
    ([-1, 3], "out of range for 200 transitions (valid: 0..200)"),
    ([7, 7], "empty segment (stop <= start)"),
    ([20, 30], "crosses an episode boundary (an episode ends at transition 24;"),
    ([45, 55], "crosses an episode boundary (an episode ends at transition 49;"),
    ([105, 115], "crosses an episode boundary (an episode ends at transition 109;"),
])
def test_a_segment_out_of_place_names_the_labels_file_and_row(three_shards, segment, why):
    folder, _ = three_shards
    bad_labels(folder, f"key 'pref_a': row 1 is {segment}: {why}",
               pref_a=[[0, 5], segment], pref_b=[[10, 20], [60, 70]], pref_label=[1.0, 0.0])


def test_a_ranked_segment_across_shards_names_the_labels_file(three_shards):
    folder, _ = three_shards
    bad_labels(folder, "key 'rank_segments': row 0 is [48, 52]: crosses an episode boundary",
               rank_segments=[[48, 52]], rank_scores=[1.0])


@pytest.mark.parametrize("arrays, message", [
    ({"pref_a": [[0, 5]], "pref_b": [[0, 5]]},
     "key 'pref_label' is missing: pref_a, pref_b and pref_label go together"),
    ({"pref_a": [[0, 5]], **PAIR | {"pref_label": [1.5]}},
     "key 'pref_label': row 0 is 1.5; labels are probabilities in [0, 1]"),
    ({"pref_a": [[0, 5.5]], **PAIR}, "key 'pref_a': row 0 is [0.0, 5.5]; indices must be "),
    ({"pref_a": [0, 5], **PAIR}, "key 'pref_a': must have shape (P, 2)"),
    ({"rank_segments": [[0, 5], [60, 70]], "rank_scores": [1.0, np.nan]},
     "key 'rank_scores': row 1 is nan; NaN and inf are not allowed"),
    ({"pref_a": [[0, 5]], **PAIR, "expert": np.zeros(200, dtype=bool)},
     "key 'expert' is in a labels file: expert flags are one per transition, so they belong "
     "in the shards"),
])
def test_bad_labels_are_refused_naming_the_file(three_shards, arrays, message):
    bad_labels(three_shards[0], message, **arrays)


def test_the_command_line_exits_2_naming_the_labels_file(three_shards, capsys):
    folder, _ = three_shards
    artifact = folder.parent / f"{folder.name}-reward.toml"
    artifact.write_text(ARTIFACT)
    out = folder.parent / f"{folder.name}-r.npy"
    np.savez(folder / "labels.npz", pref_a=[[45, 55]], **PAIR)
    assert main(["eval", str(artifact), str(folder), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"{folder / 'labels.npz'}: key 'pref_a': row 0 is [45, 55]: crosses an episode" in err
    assert not out.exists()
    np.savez(folder / "labels.npz", pref_a=[[40, 45]], **PAIR)
    assert main(["eval", str(artifact), str(folder), "-o", str(out)]) == 0
    assert np.load(out).shape == (200,)


# ---------------------------------------------------------------------- save_labels


@pytest.mark.parametrize("suffix", [".npz", ".h5", ".hdf5"])
def test_save_labels_writes_what_the_reader_reads(three_shards, suffix):
    folder, concatenation = three_shards
    prefs = Preferences(np.array([[0, 5], [60, 70]], dtype=np.int32), [[110, 120], [1, 3]],
                        np.array([1, 0]))
    ranks = Rankings([[10.0, 20.0], [150.0, 160.0]], [3, -1])
    save_labels(folder / f"labels{suffix}", prefs, ranks)
    assert list(folder.glob("*.tmp")) == [] and list(folder.glob(".*")) == []
    lazy = LazyDataset(folder)
    assert lazy.preferences.a.dtype == np.int64 and lazy.rankings.scores.dtype == np.float64
    assert_lazy_equals(lazy, with_labels(concatenation, (prefs, ranks)))


def test_save_labels_refuses_what_no_dataset_can_take(tmp_path):
    path = tmp_path / "labels.npz"
    good = Preferences([[0, 5]], [[5, 9]], [0.5])
    save_labels(path, preferences=good)
    before = path.read_bytes()
    for prefs, message in (
            (Preferences([[0, 5]], [[5, 9]], [1.5]), "key 'pref_label': row 0 is 1.5"),
            (Preferences([[-2, 5]], [[5, 9]], [1.0]),
             "key 'pref_a': row 0 is [-2, 5]: a negative index (rows count from 0)"),
            (Preferences([[4, 2]], [[5, 9]], [1.0]), "key 'pref_a': row 0 is [4, 2]: empty")):
        with pytest.raises(DataError, match=re.escape(f"{path}: {message}")):
            save_labels(path, preferences=prefs)
    assert path.read_bytes() == before  # a refused write leaves the old file as it was
    with pytest.raises(OptionError, match="needs preferences or rankings"):
        save_labels(tmp_path / "none.npz")
    with pytest.raises(OptionError, match="must be a Preferences"):
        save_labels(tmp_path / "tuple.npz", preferences=(good.a, good.b, good.label))
    with pytest.raises(DataError, match="unknown dataset extension '.csv'"):
        save_labels(tmp_path / "labels.csv", preferences=good)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["labels.npz"]
