"""Labelled rewards learned from shards on disk, read lazily and mapped on a real cluster (two
worker processes): the reward learned from the shards' concatenation in memory."""

import numpy as np
import pytest
from test_rewards_reduced import assert_learned_alike, labelled, learned, walk

pytest.importorskip("symreward.data.lazy")  # lazy datasets (issue 17)
dask = pytest.importorskip("dask")

from symreward.data import Dataset, load_dataset, save_dataset  # noqa: E402
from symreward.data.subset import take  # noqa: E402


def test_labelled_rewards_from_lazy_shards_on_a_cluster_are_learned_as_in_memory(
        tmp_path, dask_client):
    data = labelled(walk(n=2400, seed=8))
    for k, (first, stop) in enumerate([(0, 760), (760, 1600), (1600, 2400)]):
        save_dataset(take(data, np.arange(first, stop)), tmp_path / f"part-{k:04d}.npz")
    lazy = load_dataset(str(tmp_path), lazy=True)
    assert len(lazy.chunk_offsets) == 3
    memory = Dataset.concatenate([load_dataset(p) for p in sorted(tmp_path.glob("*.npz"))],
                                 source=str(tmp_path))
    with dask.config.set(scheduler=dask_client):
        chunked = learned(lazy)
    assert_learned_alike(learned(memory), chunked)
