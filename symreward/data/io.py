"""Reading and writing datasets: ``.npz``, HDF5 (flat or D4RL layout) and Minari.

Files are untrusted input: npz is always loaded with ``allow_pickle=False`` (a pickle inside an
archive would run code), and every failure becomes a ``DataError`` that names the file. Writes are
atomic (temp file in the same directory, fsync, ``os.replace``) so an interrupted save never
leaves a half-written dataset where a good one used to be.
"""

from __future__ import annotations

import os
import re
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from symreward.atomic import atomic_write
from symreward.data.dataset import Dataset
from symreward.data.shards import is_labels_file, is_sharded, labels_file_alone
from symreward.errors import DataError, OptionError

if TYPE_CHECKING:
    from symreward.data.lazy import LazyDataset

__all__ = ["CONTRACT_KEYS", "is_minari", "load_dataset", "save_arrays", "save_dataset"]

NPZ_SUFFIXES = (".npz",)
HDF5_SUFFIXES = (".h5", ".hdf5")
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
# (namespace/)name-vN, as Minari spells dataset ids.
MINARI_PREFIX = "minari:"
MINARI_ID = re.compile(r"^(?:[-_\w][-_\w/]*[-_\w]+/)?[-_\w]+?-v\d+$")
#: The keys of the data contract a reader keeps (besides infos that can be features).
CONTRACT_KEYS = frozenset({
    "observations", "actions", "next_observations", "terminals", "timeouts", "rewards",
    "pref_a", "pref_b", "pref_label", "rank_segments", "rank_scores", "expert",
})


def load_dataset(path: str | os.PathLike[str], *,
                 lazy: bool | None = None) -> Dataset | LazyDataset:
    """Read a dataset: ``.npz``, ``.h5``/``.hdf5``, a folder or glob of such shards, a Minari
    dataset directory or a Minari id.

    Dispatch is by extension for files (``dataset_kind``); a folder holding ``.npz``/HDF5 files
    (and no Minari ``metadata.json``), or a glob pattern, is a sharded dataset: the
    concatenation of its shards in order of their names (``symreward.data.shards``); another
    directory is read as a Minari dataset; a string that is not an existing path but looks like
    a Minari id (``pendulum/test-v0``, or ``minari:pendulum/test-v0``) is looked up in Minari's
    local storage (never downloaded: learning is offline and should not touch the network).

    ``lazy=True`` gives a ``symreward.data.lazy.LazyDataset`` (dask arrays read a chunk at a
    time; needs ``symreward[dask]``) of shards, of one npz/HDF5 file or of a Minari dataset in
    Minari's HDF5 format, ``lazy=False`` a ``Dataset`` in memory; ``lazy=None`` is lazy when
    the arrays would take more than ``symreward.data.lazy.LAZY_BYTES`` in memory (for a Minari
    dataset, as its metadata tells: ``minari_lazy.minari_table_bytes``).
    """
    p = Path(path)
    shown = str(path)
    if lazy not in (None, True, False):
        raise OptionError("lazy", lazy, "must be True, False or None (lazy for large data)")
    if is_sharded(shown):
        from symreward.data.lazy import LAZY_BYTES, LazyDataset
        from symreward.schedulers import import_dask

        lazy_dataset = LazyDataset(shown)
        if lazy or (lazy is None and lazy_dataset.nbytes > LAZY_BYTES):
            import_dask("reading a dataset lazily")
            return lazy_dataset
        return lazy_dataset.to_dataset()
    kind = dataset_kind(shown)
    if kind == "minari" or (kind == "hdf5" and lazy is not False and _minari_data_file(p)):
        if lazy is not False:
            from symreward.data.lazy import LAZY_BYTES, LazyDataset
            from symreward.data.minari_lazy import minari_table_bytes
            from symreward.schedulers import import_dask

            if lazy or (minari_table_bytes(shown) or 0) > LAZY_BYTES:
                import_dask("reading a dataset lazily")
                return LazyDataset(shown)
        return _load_minari(p, shown, kind)
    if lazy is not False:
        from symreward.data.headers import read_file_header
        from symreward.data.lazy import LAZY_BYTES, LazyDataset
        from symreward.schedulers import import_dask

        if lazy or read_file_header(shown).nbytes > LAZY_BYTES:
            import_dask("reading a dataset lazily")
            return LazyDataset(shown)
    return _load_npz(p, shown) if kind == "npz" else _load_hdf5(p, shown)


def _load_minari(p: Path, shown: str, kind: str) -> Dataset:
    if kind == "hdf5":  # Minari's data/main_data.hdf5, pointed at: the dataset it belongs to
        return _load_hdf5(p, shown)
    if p.is_dir():
        from symreward.data.minari import find_minari_data_dir, load_minari

        data_dir = find_minari_data_dir(p)
        if data_dir is None:
            raise DataError(
                f"{shown}: is a directory but not a Minari dataset (no metadata.json in it or in "
                "its data/ subdirectory)"
            )
        return load_minari(data_dir, source=shown)
    from symreward.data.minari import load_minari_id

    return load_minari_id(shown.removeprefix(MINARI_PREFIX))


def dataset_kind(source: str) -> str:
    """How ``load_dataset`` reads ``source``: ``"npz"``, ``"hdf5"`` or ``"minari"`` (a dataset
    directory, or a Minari id with or without the ``minari:`` prefix); ``DataError`` when it is
    none of them."""
    p = Path(source)
    if source.startswith(MINARI_PREFIX) or p.is_dir():
        return "minari"
    suffix = p.suffix.lower()
    if p.exists():
        if suffix in NPZ_SUFFIXES:
            return "npz"
        if suffix in HDF5_SUFFIXES:
            return "hdf5"
        raise DataError(
            f"{source}: unknown dataset extension {p.suffix!r}; expected .npz, .h5, .hdf5, or a "
            "Minari dataset directory"
        )
    if suffix not in NPZ_SUFFIXES + HDF5_SUFFIXES and MINARI_ID.match(source):
        return "minari"
    raise DataError(f"{source}: no such file")


def save_dataset(
    dataset: Dataset, path: str | os.PathLike[str], *, compress: bool = False
) -> None:
    """Write ``dataset`` to ``.npz`` or ``.h5``/``.hdf5`` with the data-contract keys, atomically.

    Round trips are exact: arrays are written with their dtypes, so ``load_dataset`` gives back
    equal arrays. ``compress`` uses zip deflate for npz and gzip for HDF5.
    """
    save_arrays(dataset.to_arrays(), path, compress=compress)


def save_arrays(arrays: Mapping[str, np.ndarray], path: str | os.PathLike[str], *,
                compress: bool = False) -> None:
    """Write data-contract arrays (a flat mapping, ``infos/<name>`` for infos) to ``.npz`` or
    ``.h5``/``.hdf5``, atomically: what ``save_dataset`` and ``save_labels`` write."""
    p = Path(path)
    suffix = p.suffix.lower()
    arrays = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    if suffix in NPZ_SUFFIXES:
        writer = _npz_writer(arrays, compress)
    elif suffix in HDF5_SUFFIXES:
        writer = _hdf5_writer(arrays, compress, str(path))
    else:
        raise DataError(
            f"{path}: unknown dataset extension {p.suffix!r}; can write .npz, .h5 or .hdf5"
        )
    atomic_write(p, writer)


def _npz_writer(arrays: dict[str, np.ndarray], compress: bool) -> Callable[[BinaryIO], None]:
    def write(fh: BinaryIO) -> None:
        (np.savez_compressed if compress else np.savez)(fh, **arrays)

    return write


def _hdf5_writer(
    arrays: dict[str, np.ndarray], compress: bool, shown: str
) -> Callable[[BinaryIO], None]:
    h5py = import_h5py(shown)

    def write(fh: BinaryIO) -> None:
        # 'infos/x' creates the 'infos' group: the D4RL layout.
        with h5py.File(fh, "w") as f:
            for key, value in arrays.items():
                opts: dict[str, Any] = {"compression": "gzip"} if compress and value.ndim else {}
                f.create_dataset(key, data=value, **opts)

    return write


# ---------------------------------------------------------------------- npz


def _load_npz(path: Path, shown: str) -> Dataset:
    check_npz_magic(path, shown)
    arrays: dict[str, np.ndarray] = {}
    try:
        with np.load(path, allow_pickle=False) as archive:
            for key in archive.files:
                try:
                    arrays[key] = archive[key]
                except ValueError as e:
                    if "pickle" in str(e):
                        raise DataError(
                            f"{shown}: key {key!r} holds Python objects (pickled data); refusing "
                            "to load it: store plain numeric arrays"
                        ) from e
                    raise DataError(f"{shown}: key {key!r} cannot be read: {e}") from e
    except DataError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise DataError(f"{shown}: unreadable npz archive: {e}") from e
    usable = {k: v for k, v in arrays.items()
              if not k.startswith("infos/") or feature_info(k, v.shape, v.dtype)}
    return _dataset(usable, shown)


def _dataset(arrays: dict[str, np.ndarray], shown: str) -> Dataset:
    """The dataset of a file's arrays; a labels file is refused as one by name."""
    if is_labels_file(arrays):
        raise labels_file_alone(shown, arrays)
    return Dataset.from_arrays(arrays, source=shown)


def check_npz_magic(path: Path, shown: str) -> None:
    """``DataError`` unless ``path`` can be read and starts as a zip archive does."""
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as e:
        raise DataError(f"{shown}: cannot read file: {e.strerror or e}") from e
    if magic not in ZIP_MAGIC:
        raise DataError(f"{shown}: not an npz archive (not a zip file)")


def feature_info(key: str, shape: tuple[int, ...], dtype: np.dtype) -> bool:
    """Whether ``key`` is an info that can be a feature: one number per step under a plain name
    (``infos/<name>``).

    D4RL stores vectors such as ``infos/qpos`` next to scalar infos; these are left out rather
    than rejected, so such files load as they are.
    """
    name = key[len("infos/"):]
    return (key.startswith("infos/") and bool(name) and "/" not in name and len(shape) == 1
            and dtype.kind in "biuf")


# ---------------------------------------------------------------------- hdf5


def import_h5py(shown: str) -> Any:
    try:
        import h5py
    except ImportError as e:  # pragma: no cover - h5py is installed in the test environment
        raise DataError(
            f"{shown}: reading or writing HDF5 needs h5py: install symreward[minari] "
            "(or pip install h5py)"
        ) from e
    return h5py


def is_minari(source: str) -> bool:
    """Whether ``load_dataset`` reads ``source`` as a Minari dataset (a dataset directory, an id,
    or a dataset's ``data/main_data.hdf5``)."""
    kind = dataset_kind(source)
    return kind == "minari" or (kind == "hdf5" and _minari_data_file(Path(source)))


def _minari_data_file(path: Path) -> bool:
    """Whether ``path`` is a Minari dataset's data file (``data/main_data.hdf5``)."""
    h5py = import_h5py(str(path))
    if not (path.parent / "metadata.json").exists() or not h5py.is_hdf5(str(path)):
        return False
    try:
        with h5py.File(path, "r") as f:
            return looks_like_minari(f)
    except OSError as e:
        raise DataError(f"{path}: unreadable HDF5 file: {e}") from e


def _load_hdf5(path: Path, shown: str) -> Dataset:
    h5py = import_h5py(shown)
    if not h5py.is_hdf5(str(path)):
        raise DataError(f"{shown}: not an HDF5 file")
    try:
        with h5py.File(path, "r") as f:
            minari_file = looks_like_minari(f) and (path.parent / "metadata.json").exists()
            arrays = {} if minari_file else read_hdf5_arrays(h5py, f, shown)
    except OSError as e:
        raise DataError(f"{shown}: unreadable HDF5 file: {e}") from e
    if minari_file:
        # Someone pointed at Minari's data/main_data.hdf5: read it as the Minari dataset it is.
        from symreward.data.minari import load_minari

        return load_minari(path.parent, source=shown)
    return _dataset(arrays, shown)


def looks_like_minari(f: Any) -> bool:
    keys = list(f.keys())
    return "observations" not in keys and any(k.startswith("episode_") for k in keys)


def hdf5_members(h5py: Any, f: Any) -> dict[str, Any]:
    """The HDF5 datasets symreward reads (the data contract's, and infos that can be
    features), by their full paths.

    Full paths find ``infos/x`` whether it was written as a group member (the D4RL layout) or
    created with the slash in its name (which HDF5 turns into a group).
    """
    found: dict[str, Any] = {}

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset) and (
                name in CONTRACT_KEYS or feature_info(name, obj.shape, obj.dtype)):
            found[name] = obj

    f.visititems(visit)
    return found


def read_hdf5_arrays(h5py: Any, f: Any, shown: str) -> dict[str, np.ndarray]:
    """Read only the datasets symreward uses (``hdf5_members``), so large D4RL extras (qpos,
    metadata) stay on disk."""
    arrays: dict[str, np.ndarray] = {}
    for name, obj in hdf5_members(h5py, f).items():
        try:
            arrays[name] = obj[()]
        except (OSError, TypeError, ValueError) as e:
            raise DataError(f"{shown}: key {name!r} cannot be read: {e}") from e
    return arrays
