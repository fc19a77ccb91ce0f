"""Datasets: transitions with episode boundaries, preferences, rankings and expert masks.

Readers/writers for npz and HDF5 (D4RL keys) and Minari, collection from gymnasium environments,
and a synthetic Bradley–Terry oracle. gymnasium, minari and h5py are imported only when used, so
importing this package stays cheap.
"""

from symreward.data.collect import collect
from symreward.data.dataset import Dataset, Preferences, Rankings
from symreward.data.io import load_dataset, save_dataset
from symreward.data.labels import save_labels
from symreward.data.lazy import LazyDataset
from symreward.data.oracle import (
    bradley_terry_preferences,
    episode_segments,
    expert_mask_from_episodes,
    random_segments,
    rankings_from_rewards,
)

__all__ = [
    "Dataset",
    "LazyDataset",
    "Preferences",
    "Rankings",
    "bradley_terry_preferences",
    "collect",
    "episode_segments",
    "expert_mask_from_episodes",
    "load_dataset",
    "random_segments",
    "rankings_from_rewards",
    "save_dataset",
    "save_labels",
]
