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
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from symreward.atomic import atomic_write
from symreward.data.dataset import Dataset
from symreward.errors import DataError

__all__ = ["load_dataset", "save_dataset"]

NPZ_SUFFIXES = (".npz",)
HDF5_SUFFIXES = (".h5", ".hdf5")
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
# (namespace/)name-vN, as Minari spells dataset ids.
MINARI_PREFIX = "minari:"
MINARI_ID = re.compile(r"^(?:[-_\w][-_\w/]*[-_\w]+/)?[-_\w]+?-v\d+$")


def load_dataset(path: str | os.PathLike[str]) -> Dataset:
    """Read a dataset from ``.npz``, ``.h5``/``.hdf5``, a Minari dataset directory or a Minari id.

    Dispatch is by extension for files (``dataset_kind``); a directory is read as a Minari
    dataset; a string that is not an existing path but looks like a Minari id
    (``pendulum/test-v0``, or ``minari:pendulum/test-v0``) is looked up in Minari's local
    storage (never downloaded: learning is offline and should not touch the network).
    """
    p = Path(path)
    shown = str(path)
    kind = dataset_kind(shown)
    if kind == "npz":
        return _load_npz(p, shown)
    if kind == "hdf5":
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
    p = Path(path)
    suffix = p.suffix.lower()
    arrays = {k: np.ascontiguousarray(v) for k, v in dataset.to_arrays().items()}
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
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as e:
        raise DataError(f"{shown}: cannot read file: {e.strerror or e}") from e
    if magic not in ZIP_MAGIC:
        raise DataError(f"{shown}: not an npz archive (not a zip file)")
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
    return Dataset.from_arrays(_feature_infos_only(arrays), source=shown)


def _feature_infos_only(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Keep only infos that can be features: one number per step under a plain name.

    D4RL stores vectors such as ``infos/qpos`` next to scalar infos; these are left out rather
    than rejected, so such files load as they are.
    """

    def usable(key: str, value: np.ndarray) -> bool:
        if not key.startswith("infos/"):
            return True
        return "/" not in key[len("infos/"):] and value.ndim == 1 and value.dtype.kind in "biuf"

    return {k: v for k, v in arrays.items() if usable(k, v)}


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
    return Dataset.from_arrays(arrays, source=shown)


def looks_like_minari(f: Any) -> bool:
    keys = list(f.keys())
    return "observations" not in keys and any(k.startswith("episode_") for k in keys)


def read_hdf5_arrays(h5py: Any, f: Any, shown: str) -> dict[str, np.ndarray]:
    """Read only the datasets symreward uses, so large D4RL extras (qpos, metadata) stay on disk.

    Names are the full HDF5 paths, so ``infos/x`` is found whether it was written as a group
    member (the D4RL layout) or created with the slash in its name (which HDF5 turns into a group).
    """
    wanted = {
        "observations", "actions", "next_observations", "terminals", "timeouts", "rewards",
        "pref_a", "pref_b", "pref_label", "rank_segments", "rank_scores", "expert",
    }
    found: dict[str, Any] = {}

    def visit(name: str, obj: Any) -> None:
        if not isinstance(obj, h5py.Dataset):
            return
        if name in wanted or (
            name.startswith("infos/")
            and name.count("/") == 1
            and len(obj.shape) == 1
            and obj.dtype.kind in "biuf"
        ):
            found[name] = obj

    f.visititems(visit)
    arrays: dict[str, np.ndarray] = {}
    for name, obj in found.items():
        try:
            arrays[name] = obj[()]
        except (OSError, TypeError, ValueError) as e:
            raise DataError(f"{shown}: key {name!r} cannot be read: {e}") from e
    return arrays
