"""From a dataset to columns: every feature, term or reward value symreward computes on a dataset
goes through here, on the compiled kernels (``symreward.kernels``). The learner takes its
feature, user-term and locked-reward columns from it, the checker its feature states, the
artifact its rewards and per-term columns; none of them builds an artifact to get columns.

Terms are ``(name, expr)`` pairs, sympy over feature symbols; a kernel reads only the features
its terms use (and the features those use), so the same terms give the same kernel, and the
same cache entry, whoever asks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import sympy

from symreward import formula
from symreward.features import FeatureSet

if TYPE_CHECKING:
    import os

    from symreward.data import Dataset
    from symreward.kernels import RewardKernels

Terms = Sequence[tuple[str, sympy.Expr]]


def compile_terms(features: FeatureSet, terms: Terms, *,
                  cache_dir: str | os.PathLike[str] | None = None) -> RewardKernels:
    """The kernels of the reward ``sum(terms)`` over ``features`` (cached in memory and on
    disk)."""
    from symreward.kernels import compile_reward

    used = sorted({s.name for _, expr in terms for s in expr.free_symbols})
    needed = features.dependencies(used)
    return compile_reward([(n, features.exprs[n]) for n in needed], list(terms),
                          features.info_names(), cache_dir=cache_dir)


def info_matrix(infos: Mapping[str, Any], names: Sequence[str], n: int) -> np.ndarray:
    """The info columns a kernel reads, (n, len(names)) float64 in ``names`` order."""
    if not names:
        return np.zeros((n, 0))
    return np.column_stack([np.asarray(infos[name], dtype=np.float64) for name in names])


def evaluate_terms(dataset: Dataset, features: FeatureSet, terms: Terms, *,
                   kernels: RewardKernels | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The reward ``sum(terms)`` on every transition of ``dataset`` and each term's column,
    (N,) and (N, len(terms)); ``kernels`` are the terms' own where the caller has them."""
    _check_fits(dataset, features)
    kernels = kernels or compile_terms(features, terms)
    columns = kernels.term_columns(*_arguments(dataset, kernels))
    return summed(columns), columns


def rewards(dataset: Dataset, features: FeatureSet, terms: Terms) -> np.ndarray:
    """The reward ``sum(terms)`` on every transition of ``dataset``, (N,)."""
    _check_fits(dataset, features)
    kernels = compile_terms(features, terms)
    return kernels.rewards(*_arguments(dataset, kernels))


def summed(columns: np.ndarray) -> np.ndarray:
    """The rows of ``columns`` added left to right, as the ``rewards`` kernel adds its terms
    (``t_0 + t_1 + ...``), so the same bits without compiling that kernel too."""
    total = columns[:, 0].copy() if columns.shape[1] else np.zeros(len(columns))
    with np.errstate(over="ignore", invalid="ignore"):  # inf and NaN are results, as in kernels
        for k in range(1, columns.shape[1]):
            total += columns[:, k]
    return total


def term_columns(dataset: Dataset, features: FeatureSet, terms: Terms) -> np.ndarray:
    """Each term's value on every transition of ``dataset``, (N, len(terms))."""
    _check_fits(dataset, features)
    kernels = compile_terms(features, terms)
    return kernels.term_columns(*_arguments(dataset, kernels))


def feature_columns(dataset: Dataset, features: FeatureSet) -> np.ndarray:
    """Every feature on every transition, (N, F) in ``features.names`` order."""
    return term_columns(dataset, features,
                        [(f"f_{name}", formula.symbol(name)) for name in features.names])


def _check_fits(dataset: Dataset, features: FeatureSet) -> None:
    """A ``FeatureError`` naming the feature, before any compiling, where one reads an input
    ``dataset`` does not have."""
    features.check_dimensions(dataset.obs_dim, dataset.act_dim, set(dataset.infos),
                              data_source=dataset.source)


def _arguments(dataset: Dataset, kernels: RewardKernels
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return (dataset.observations, dataset.actions, dataset.next_observations,
            info_matrix(dataset.infos, kernels.info_names, dataset.n))
