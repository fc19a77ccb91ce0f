"""An in-memory dataset read in chunks of whole episodes, as a dataset too large for memory is
read (``symreward.data.lazy``): the same interface (``chunk``, ``chunk_offsets``, ``n``,
``episode_ends``, ``source``, ``digest``), so what learns chunk by chunk runs, and is tested,
on data that fits, and a large in-memory dataset can be learned from without building all its
candidate columns at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from symreward.data.dataset import Dataset, dataset_digest
from symreward.data.subset import take
from symreward.errors import DataError

__all__ = ["DatasetChunks"]


@dataclass(frozen=True)
class DatasetChunks:
    """``dataset`` cut into chunks that start at ``chunk_offsets`` (the first is 0; each is
    where an episode ends)."""

    dataset: Dataset
    chunk_offsets: np.ndarray

    def __post_init__(self) -> None:
        offsets = np.asarray(self.chunk_offsets, dtype=np.int64)
        starts = np.concatenate([[0], self.dataset.episode_ends[:-1]])
        if (len(offsets) == 0 or offsets[0] != 0 or np.any(np.diff(offsets) <= 0)
                or not np.isin(offsets, starts).all()):
            raise DataError(f"{self.dataset.source}: chunks must start at row 0 and then at "
                            f"increasing rows where an episode starts; got {offsets.tolist()}")
        object.__setattr__(self, "chunk_offsets", offsets)

    @classmethod
    def of(cls, dataset: Dataset, rows: int) -> DatasetChunks:
        """Chunks of whole episodes, each closed at the first episode end at least ``rows``
        rows after its start (the last chunk holds what is left)."""
        offsets = [0]
        for end in dataset.episode_ends[:-1]:
            if end - offsets[-1] >= rows:
                offsets.append(int(end))
        return cls(dataset, np.array(offsets, dtype=np.int64))

    @property
    def source(self) -> str:
        return self.dataset.source

    @property
    def n(self) -> int:
        return self.dataset.n

    @property
    def episode_ends(self) -> np.ndarray:
        return self.dataset.episode_ends

    def chunk(self, k: int) -> Dataset:
        """Chunk ``k``, a dataset of its own (supervision inside it renumbered)."""
        stops = np.append(self.chunk_offsets[1:], self.n)
        first, stop = int(self.chunk_offsets[k]), int(stops[k])
        return take(self.dataset, np.arange(first, stop),
                    source=f"{self.dataset.source} [rows {first}:{stop}]")

    def digest(self) -> str:
        """``dataset_digest`` of the whole dataset."""
        return dataset_digest(self.dataset)
