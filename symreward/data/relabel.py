"""Relabelling offline RL datasets with a reward artifact (``symreward relabel``), and a d3rlpy
``MDPDataset`` with an artifact's rewards (``to_d3rlpy``).

What a relabelled dataset is:

- Every transition's reward is the artifact's, from the batch kernel, as ``symreward eval``
  gives it: ``rewards[t]`` belongs to ``(obs[t], act[t], next_obs[t])`` (the D4RL convention).
  A file needs ``next_observations``, as every symreward reader does; ``relabel`` does not invent
  successors for files without them (the error says how to add them).
- New rewards are float64 whatever the old dtype: the kernels compute in float64, and a float32
  copy would lose the bits that make them equal to ``symreward eval``. A reward that is NaN or
  inf on some transition is an error naming the row, since symreward reads no such rewards back.
- npz and HDF5: a copy of the file with every other key as it was (npz members byte for byte,
  each with its own compression), the old rewards under ``original_rewards``, and the artifact
  recorded in ``symreward_artifact_hash`` (its content hash), ``_formula``, ``_name`` and
  ``_source`` (0-d string arrays in an npz, file attributes in HDF5). Relabelling a relabelled
  file keeps the ``original_rewards`` it has (the file's first rewards) and drops the rewards it
  replaces; the metadata names the latest artifact. In HDF5 a dropped dataset's space is not
  reclaimed (``h5repack`` does that).
- Minari: a new local dataset ``minari:NEW_ID`` from the source's episodes, observations,
  actions, flags, infos, seeds and dataset metadata, with the new rewards; its description and
  ``symreward_*`` metadata fields name the artifact, and the source is left as it is. An
  episode of T steps has T + 1 observations, so its transition t is ``(obs[t], act[t],
  obs[t + 1])`` and its step infos are rows t + 1 (``symreward.data.minari``). Each episode's
  reward statistics (Minari's ``rewards_sum``, ``rewards_mean``, ...) are the new rewards'.
  Episodes with no steps are left out, as symreward reads none.

Nothing is written until the rewards are computed, and files are written atomically: a failure
leaves no output and no temporary file. An npz is read member by member: the arrays the kernel
and the data contract's checks read are held in memory once (as ``numpy.load`` would), float32
ones are converted to float64 at most ``CHUNK_ROWS`` rows at a time (only in the columns the
features read), and every member is copied as its stored bytes (no recompression), so memory
peaks at about one copy of the inputs plus the rewards, and time at little more than reading
the file and copying it.
"""

from __future__ import annotations

import os
import secrets
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from symreward.atomic import atomic_write
from symreward.data.dataset import REQUIRED_KEYS, Dataset
from symreward.data.io import (
    HDF5_SUFFIXES,
    MINARI_PREFIX,
    NPZ_SUFFIXES,
    ZIP_MAGIC,
    dataset_kind,
    import_h5py,
    load_dataset,
    looks_like_minari,
    read_hdf5_arrays,
)
from symreward.data.npzmembers import (
    READ_ERRORS,
    ArchiveWriter,
    check_member,
    member_key,
    read_array,
    read_header,
)
from symreward.errors import DataError, OptionError
from symreward.evaluate import info_matrix

if TYPE_CHECKING:
    from symreward.artifact import RewardArtifact

__all__ = ["CHUNK_ROWS", "METADATA_KEYS", "ORIGINAL_REWARDS", "InputRows", "Relabelled",
           "artifact_metadata", "relabel", "to_d3rlpy"]

#: The most rows computed at a time: float32 inputs are converted to float64 one chunk at a
#: time. The rows are split in chunks of equal size, each (from twice PARALLEL_ROWS rows on)
#: large enough for the parallel kernel, so only that one is loaded.
CHUNK_ROWS = 1 << 19
#: Where the input's rewards are kept.
ORIGINAL_REWARDS = "original_rewards"
#: The keys (npz) or attributes (HDF5) naming the artifact, in ``artifact_metadata``'s order.
METADATA_KEYS = ("symreward_artifact_hash", "symreward_artifact_formula",
                 "symreward_artifact_name", "symreward_artifact_source")
# Keys the data contract's checks read besides the kernel's inputs (load_dataset checks them).
_CHECKED = frozenset({*REQUIRED_KEYS, "pref_a", "pref_b", "pref_label", "rank_segments",
                      "rank_scores", "expert"})


@dataclass(frozen=True)
class Relabelled:
    """What ``relabel`` wrote: where, how many rewards and their range, where the old rewards
    are, and the hash of the artifact that computed them."""

    output: str
    rows: int
    mean: float
    minimum: float
    maximum: float
    original_rewards: str
    artifact_hash: str


def artifact_metadata(artifact: RewardArtifact) -> dict[str, str]:
    """What a relabelled dataset records about the artifact that computed its rewards: its
    content hash, formula, name and path, under ``METADATA_KEYS``."""
    return dict(zip(METADATA_KEYS, (artifact.content_hash(), artifact.formula_text(),
                                    artifact.name, artifact.source), strict=True))


def relabel(artifact: RewardArtifact | str | os.PathLike[str], data: str | os.PathLike[str],
            output: str | os.PathLike[str], *, chunk_rows: int = CHUNK_ROWS) -> Relabelled:
    """Write a copy of ``data`` whose rewards are ``artifact``'s (see the module's docstring).

    ``data`` is an ``.npz``, an ``.h5``/``.hdf5`` file (flat or D4RL layout), a Minari dataset
    directory, or ``minari:ID`` (a Minari id in local storage, with or without the prefix, as
    ``load_dataset`` reads it). ``output`` has the input's format: a file of the same kind, or
    ``minari:NEW_ID`` for a Minari input (a new local dataset; an existing id is an error).
    Raises ``DataError`` (naming the file and key) or ``FeatureError`` (a feature the data
    cannot feed) before anything is written.
    """
    from symreward.artifact import RewardArtifact

    if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
        raise OptionError("chunk_rows", chunk_rows, "must be a positive integer")
    if not isinstance(artifact, RewardArtifact):
        artifact = RewardArtifact.load(artifact)
    source, out = str(data), str(output)
    kind = dataset_kind(source)
    if kind == "minari":
        if not out.startswith(MINARI_PREFIX) or len(out) == len(MINARI_PREFIX):
            raise DataError(f"{out}: a Minari dataset is relabelled into a new Minari dataset: "
                            "give -o minari:NEW_ID")
        return _relabel_minari(artifact, source, out[len(MINARI_PREFIX):], chunk_rows)
    target = Path(out)
    wanted = NPZ_SUFFIXES if kind == "npz" else HDF5_SUFFIXES
    if out.startswith(MINARI_PREFIX) or target.suffix.lower() not in wanted:
        raise DataError(f"{out}: relabel keeps the input's format; give an output ending in "
                        f"{' or '.join(wanted)}")
    if target.is_dir() or not target.parent.is_dir():
        raise DataError(f"{out}: " + ("is a folder; give the output file's name"
                                      if target.is_dir() else
                                      f"folder {target.parent} does not exist"))
    relabel_file = _relabel_npz if kind == "npz" else _relabel_hdf5
    return relabel_file(artifact, Path(source), target, chunk_rows)


def _rewards(artifact: RewardArtifact, dataset: Dataset, chunk_rows: int) -> np.ndarray:
    """The artifact's reward of every transition, computed at most ``chunk_rows`` rows at a
    time (in chunks of equal size, so the last is no smaller kernel call than the others).
    Chunks below the parallel kernel's size are what one of many parallel tasks asks for
    (``relabel_shards``): each is computed on this thread alone."""
    from symreward.kernels.runtime import PARALLEL_ROWS

    artifact.features.check_dimensions(dataset.obs_dim, dataset.act_dim, set(dataset.infos),
                                       data_source=dataset.source)
    kernels = artifact.compile()
    n = dataset.n
    size = -(-n // -(-n // chunk_rows))
    used = artifact.features.inputs()
    tables = [InputRows(array, used[name], size) for array, name in (
        (dataset.observations, "obs"), (dataset.actions, "act"),
        (dataset.next_observations, "next_obs"))]
    threads = None if chunk_rows >= PARALLEL_ROWS else False
    rewards = np.empty(n)
    for start in range(0, n, size):
        rows = slice(start, min(n, start + size))
        infos = {name: dataset.infos[name][rows] for name in kernels.info_names}
        rewards[rows] = kernels.rewards(*(table.rows(rows) for table in tables),
                                        info_matrix(infos, kernels.info_names,
                                                    rows.stop - rows.start), threads=threads)
    bad = ~np.isfinite(rewards)
    if bad.any():
        row = int(np.argmax(bad))
        raise DataError(
            f"{dataset.source}: the reward of {artifact.source} is {rewards[row]} at row {row} "
            f"({int(bad.sum())} non-finite in all); relabel writes only finite rewards, as "
            "symreward reads no others back (`symreward eval` shows them all)")
    return rewards


class InputRows:
    """Rows of an (N, d) input as the kernels take them: C-contiguous float64.

    A float64 C-contiguous input is passed as it is. Any other (float32, as most datasets
    store observations) is converted one chunk at a time into one buffer, and only in the
    columns the features read: the kernels read no other, so the rest stay zero."""

    def __init__(self, array: np.ndarray, columns: set[int], size: int):
        self.array = array
        self.direct = array.dtype == np.float64 and array.flags.c_contiguous
        self.columns = sorted(columns)
        if not self.direct:
            self.buffer = np.zeros((min(size, len(array)), array.shape[1]))

    def rows(self, rows: slice) -> np.ndarray:
        if self.direct:
            return self.array[rows]
        out = self.buffer[:rows.stop - rows.start]
        if self.whole:
            out[:] = self.array[rows]
        else:
            for column in self.columns:
                out[:, column] = self.array[rows, column]
        return out

    @property
    def whole(self) -> bool:
        """Whether ``rows`` copies every column (most are read: one block copy)."""
        return 2 * len(self.columns) > self.array.shape[1]

    def finite(self, rows: slice, block: np.ndarray) -> bool:
        """Whether every value of the input's ``rows`` is finite, given ``block``, what
        ``rows(rows)`` returned: read from it (in cache) where it holds every column."""
        with np.errstate(over="ignore", invalid="ignore"):
            held = block if self.direct or self.whole else self.array[rows]
            return bool(np.isfinite(held.sum()) or np.isfinite(held).all())


def _summary(output: str, rewards: np.ndarray, original: str,
             artifact: RewardArtifact) -> Relabelled:
    return Relabelled(output=output, rows=int(rewards.size), mean=float(rewards.mean()),
                      minimum=float(rewards.min()), maximum=float(rewards.max()),
                      original_rewards=original, artifact_hash=artifact.content_hash())


def _where_original(had_rewards: bool, had_original: bool, what: str) -> str:
    if not had_rewards:
        return "none: the input had no rewards"
    if had_original:
        return (f"replaced; {what} {ORIGINAL_REWARDS!r} still holds the first rewards (from "
                "before an earlier relabel)")
    return f"kept as {what} {ORIGINAL_REWARDS!r}"


# ---------------------------------------------------------------------- npz


def _relabel_npz(artifact: RewardArtifact, source: Path, output: Path,
                 chunk_rows: int) -> Relabelled:
    shown = str(source)
    try:
        with open(source, "rb") as fh:
            magic = fh.read(4)
        archive = zipfile.ZipFile(source)
    except READ_ERRORS as e:
        raise DataError(f"{shown}: unreadable npz archive: {e}") from e
    if magic not in ZIP_MAGIC:
        archive.close()
        raise DataError(f"{shown}: not an npz archive (not a zip file)")
    with archive:
        members = {key: info for info in archive.infolist()
                   if (key := member_key(info)) is not None}
        held = {}
        for info in archive.infolist():
            key = member_key(info)
            if key is None or key in METADATA_KEYS:  # not an array, or replaced
                check_member(archive, info, shown)
                continue
            header = read_header(archive, info, shown)  # refuses pickled members by name
            if key in _CHECKED or (_is_info(key) and len(header.shape) == 1
                                   and header.dtype.kind in "biuf"):
                held[key] = read_array(archive, info, shown, header)
            else:  # copied as it is: checked now, so a corrupt file fails before any writing
                check_member(archive, info, shown)
        dataset = Dataset.from_arrays(held, source=shown)
        rewards = _rewards(artifact, dataset, chunk_rows)
        metadata = artifact_metadata(artifact)
        like = members.get("rewards") or members.get("observations")
        source_fd = archive.fp.fileno()

        def write(fh: Any) -> None:
            out = ArchiveWriter(fh)
            for info in archive.infolist():
                key = member_key(info)
                if key == "rewards":
                    out.write_array(info.filename, rewards, info)
                    if ORIGINAL_REWARDS not in members:
                        out.copy(source_fd, info, shown, name=f"{ORIGINAL_REWARDS}.npy")
                elif key not in metadata:  # the metadata is the new artifact's
                    out.copy(source_fd, info, shown)
            if "rewards" not in members:
                out.write_array("rewards.npy", rewards, like)
            for key, text in metadata.items():
                out.write_array(f"{key}.npy", np.array(text), like)
            out.close(archive.comment)

        atomic_write(output, write)
    original = _where_original("rewards" in members, ORIGINAL_REWARDS in members, "key")
    return _summary(str(output), rewards, original, artifact)


def _is_info(key: str) -> bool:
    """An ``infos/<name>`` key that can be a feature's input (no deeper path)."""
    name = key[len("infos/"):]
    return key.startswith("infos/") and bool(name) and "/" not in name


# ---------------------------------------------------------------------- hdf5


def _relabel_hdf5(artifact: RewardArtifact, source: Path, output: Path,
                  chunk_rows: int) -> Relabelled:
    shown = str(source)
    h5py = import_h5py(shown)
    if not h5py.is_hdf5(str(source)):
        raise DataError(f"{shown}: not an HDF5 file")
    try:
        with h5py.File(source, "r") as f:
            if looks_like_minari(f):
                raise DataError(f"{shown}: is a Minari dataset's data file; relabel the "
                                "dataset (its directory, or minari:ID) with -o minari:NEW_ID")
            arrays = read_hdf5_arrays(h5py, f, shown)
            had = {key for key in ("rewards", ORIGINAL_REWARDS)
                   if isinstance(f.get(key), h5py.Dataset)}
    except OSError as e:
        raise DataError(f"{shown}: unreadable HDF5 file: {e}") from e
    arrays.pop("rewards", None)  # replaced, so not checked: its values are never read
    rewards = _rewards(artifact, Dataset.from_arrays(arrays, source=shown), chunk_rows)
    del arrays
    metadata = artifact_metadata(artifact)

    def write(fh: Any) -> None:
        with open(source, "rb") as original:
            shutil.copyfileobj(original, fh, 16 << 20)
        fh.flush()
        with h5py.File(fh, "r+") as f:
            like = f["rewards" if "rewards" in had else "observations"]
            storage = {"compression": like.compression, "compression_opts":
                       like.compression_opts, "shuffle": like.shuffle,
                       "fletcher32": like.fletcher32, "chunks": True if like.chunks else None}
            if "rewards" in had and ORIGINAL_REWARDS in had:
                del f["rewards"]
            elif "rewards" in had:
                f.move("rewards", ORIGINAL_REWARDS)
            f.create_dataset("rewards", data=rewards, **storage)
            for key, text in metadata.items():
                f.attrs[key] = text

    atomic_write(output, write)
    original = _where_original("rewards" in had, ORIGINAL_REWARDS in had, "dataset")
    return _summary(str(output), rewards, original, artifact)


# ---------------------------------------------------------------------- minari

# Dataset metadata Minari writes itself for a new dataset, or sets once: not copied.
MINARI_PREFIX_OWN = frozenset({"dataset_id", "observation_space", "action_space", "env_spec",
                         "data_format", "jpeg_encoding", "minari_version", "total_episodes",
                         "total_steps", "dataset_size"})
# Episode metadata Minari writes itself, or takes from the episode buffer (the reward
# statistics, rewards_*, are recomputed).
_EPISODE_OWN = frozenset({"id", "total_steps", "seed", "options"})


def _relabel_minari(artifact: RewardArtifact, source: str, new_id: str,
                    chunk_rows: int) -> Relabelled:
    from symreward.data.minari import find_minari_data_dir, import_minari, load_minari_id

    shown_out = f"{MINARI_PREFIX}{new_id}"
    minari = import_minari(shown_out)
    from minari.dataset.minari_dataset import parse_dataset_id
    from minari.dataset.minari_storage import MinariStorage
    from minari.namespace import create_namespace, list_local_namespaces
    from minari.storage.datasets_root_dir import get_dataset_path

    try:
        namespace = parse_dataset_id(new_id)[0]
    except ValueError as e:
        raise DataError(f"{shown_out}: {e}") from e
    target = get_dataset_path(new_id)
    if target.exists():
        raise DataError(f"{shown_out}: a local Minari dataset with this id already exists "
                        f"({target}); give a new id or version")
    if Path(source).is_dir() and not source.startswith(MINARI_PREFIX):
        dataset = load_dataset(source)  # the error for a directory that is no Minari dataset
        mds = minari.MinariDataset(str(find_minari_data_dir(source)))
    else:
        dataset_id = source.removeprefix(MINARI_PREFIX)
        dataset = load_minari_id(dataset_id)
        mds = minari.load_dataset(dataset_id, download=False)
    rewards = _rewards(artifact, dataset, chunk_rows)
    del dataset
    metadata = _minari_metadata(MinariStorage.read_raw_metadata(mds.storage.data_path),
                                artifact, new_id, source, minari.__version__)
    temporary = get_dataset_path() / f".{new_id.replace('/', '_')}.{secrets.token_hex(6)}.tmp"
    try:
        temporary.mkdir()
        storage = MinariStorage.new(temporary / "data", observation_space=mds.observation_space,
                                    action_space=mds.action_space, env_spec=mds.spec.env_spec,
                                    data_format=mds.storage.FORMAT)
        episode_metadata: list[dict[str, Any]] = []
        storage.update_episodes(_episodes(mds, rewards, episode_metadata))
        storage.update_episode_metadata(episode_metadata, range(len(episode_metadata)))
        storage.update_metadata(metadata)
        if namespace is not None and namespace not in list_local_namespaces():
            create_namespace(namespace)
        os.rename(temporary, target)
    except (ValueError, OSError, KeyError, TypeError, AssertionError) as e:
        raise DataError(f"{shown_out}: cannot write the Minari dataset: {e}") from e
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return _summary(shown_out, rewards, f"unchanged in the source dataset {source}", artifact)


def _episodes(mds: Any, rewards: np.ndarray, episode_metadata: list[dict[str, Any]]) -> Any:
    """The source's episodes as Minari episode buffers with the new rewards, one at a time.

    The metadata of each episode yielded is appended to ``episode_metadata``: the source's,
    with the reward statistics Minari's collector records (``rewards_sum``, ...) those of the
    new rewards, as Minari's own ``EpisodeMetadataCallback`` computes them."""
    from minari.data_collector.callbacks import EpisodeMetadataCallback
    from minari.data_collector.episode_buffer import EpisodeBuffer

    statistics = EpisodeMetadataCallback()
    indices = mds.episode_indices
    source_metadata = list(mds.storage.get_episode_metadata(indices))
    position = 0
    for episode, meta in zip(mds.storage.get_episodes(indices), source_metadata, strict=True):
        steps = len(episode["rewards"])
        if not steps:
            continue
        new = rewards[position:position + steps]
        position += steps
        kept = {k: v for k, v in meta.items()
                if k not in _EPISODE_OWN and not k.startswith("rewards_")}
        episode_metadata.append({**kept, **statistics({"rewards": new})})
        yield EpisodeBuffer(
            seed=meta.get("seed"), options=meta.get("options"),
            observations=episode["observations"], actions=episode["actions"], rewards=new,
            terminations=episode["terminations"], truncations=episode["truncations"],
            infos=episode.get("infos"))


def _minari_metadata(raw: dict[str, Any], artifact: RewardArtifact, new_id: str, source: str,
                     version: str) -> dict[str, Any]:
    """The source's dataset metadata for the new dataset, naming the artifact."""
    metadata = {key: value for key, value in raw.items() if key not in MINARI_PREFIX_OWN}
    for key in ("author", "author_email"):  # stored as lists, set as sets
        if key in metadata:
            metadata[key] = set(metadata[key])
    fields = artifact_metadata(artifact)
    note = (f"Rewards relabelled by symreward from {source} with the reward "
            f"{fields['symreward_artifact_name'] or fields['symreward_artifact_source']} "
            f"({fields['symreward_artifact_hash']}): {fields['symreward_artifact_formula']}")
    described = metadata.get("description")
    return {**metadata, **fields, "dataset_id": new_id, "minari_version": version,
            "description": f"{described}\n\n{note}" if described else note,
            "symreward_source_dataset": source}


# ---------------------------------------------------------------------- d3rlpy


def to_d3rlpy(artifact: RewardArtifact | str | os.PathLike[str],
              dataset: Dataset | str | os.PathLike[str], **options: Any) -> Any:
    """A ``d3rlpy.dataset.MDPDataset`` of ``dataset`` with ``artifact``'s rewards.

    d3rlpy's convention is the D4RL one: ``rewards[t]`` is the reward of ``(obs[t], act[t])``,
    and episodes end at ``terminals`` or ``timeouts`` (the dataset's last row closes one, as in
    symreward). d3rlpy takes each successor from the next row of the episode, so the last step of
    an episode cut by a time limit is no transition there (its successor is not in the table);
    its reward is still in the array. ``options`` go to ``MDPDataset`` (``action_space``,
    ``action_size``, ...: d3rlpy guesses a discrete action space from integer-valued actions).
    Needs the optional extra ``d3rlpy``.
    """
    try:
        from d3rlpy.dataset import MDPDataset
    except ImportError as e:
        raise DataError("to_d3rlpy needs the d3rlpy package: install symreward[d3rlpy]") from e
    from symreward.artifact import RewardArtifact

    if not isinstance(artifact, RewardArtifact):
        artifact = RewardArtifact.load(artifact)
    if not isinstance(dataset, Dataset):
        dataset = load_dataset(dataset)
    rewards = _rewards(artifact, dataset, CHUNK_ROWS)
    last = np.zeros(dataset.n, dtype=bool)
    last[-1] = True
    timeouts = dataset.timeouts | (last & ~dataset.terminals)
    return MDPDataset(observations=np.asarray(dataset.observations),
                      actions=np.asarray(dataset.actions), rewards=rewards,
                      terminals=dataset.terminals.astype(np.float32),
                      timeouts=timeouts.astype(np.float32), **options)
