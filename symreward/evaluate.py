"""From a dataset to columns: every feature, term or reward value symreward computes on a dataset
goes through here, on the compiled kernels (``symreward.kernels``). The learner takes its
feature, user-term and locked-reward columns from it, the checker its feature states, the
artifact its rewards and per-term columns; none of them builds an artifact to get columns.
``evaluate_states`` computes the terms at given feature values instead (property tests), on
the same kernels, so with the same bits.

Terms are ``(name, expr)`` pairs, sympy over feature symbols; a kernel reads only the features
its terms use (and the features those use), so the same terms give the same kernel, and the
same cache entry, whoever asks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import sympy

from symreward import formula
from symreward.errors import DataError, FeatureError
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


def finite_feature_columns(dataset: Dataset, features: FeatureSet,
                           where: Callable[[int], str] | None = None) -> np.ndarray:
    """``feature_columns`` of the data learned from, checked finite: a ``DataError`` names the
    feature and the first row where it is not, as ``where(row)`` tells it (by default
    ``"row R"``; a learner that reduced its input names the input's row)."""
    matrix = feature_columns(dataset, features)
    bad = ~np.isfinite(matrix)
    if bad.any():
        row, column = (int(i) for i in np.argwhere(bad)[0])
        name = features.names[column]
        shown = where(row) if where is not None else f"row {row}"
        raise DataError(f"{dataset.source}: feature '{name}' = {features[name]!r} is "
                        f"{matrix[row, column]} at {shown}; features must be finite on the "
                        "data learned from")
    return matrix


def text_columns(dataset: Dataset, features: FeatureSet, texts: Sequence[str]) -> np.ndarray:
    """Each formula of ``texts`` over the features (a library's user terms) on every
    transition, (N, len(texts))."""
    return term_columns(dataset, features, [(f"user_{k}", formula.parse(t, features.names))
                                            for k, t in enumerate(texts)])


@dataclass(frozen=True)
class StateValues:
    """The reward and each term's value at feature states, float64 arrays of the states'
    broadcast shape (``()`` when every value is a scalar, ``(n,)`` otherwise)."""

    reward: np.ndarray
    terms: dict[str, np.ndarray]


def evaluate_states(features: FeatureSet, terms: Terms, states: Mapping[str, Any], *,
                    source: str = "states") -> StateValues:
    """The reward ``sum(terms)`` and each term at the feature values ``states``.

    ``states`` maps feature names to scalars or 1-D arrays, broadcast together as numpy does
    (``{"dist": [0.1, 0.5, 2.0], "a0": 0.0}``: three states); it needs every feature the terms
    read and may hold other features of ``features``. The values are used as given, as
    independent coordinates (a feature that uses another is not recomputed from it). The terms
    run on the compiled kernels with each feature an input column, so where the features hold
    the same values the bits are those of ``evaluate_terms`` on a dataset. Raises
    ``FeatureError`` for an unknown or a missing feature and ``DataError`` for a value that is
    not a real number or 1-D, or lengths that do not broadcast, naming ``source`` and the feature.
    """
    if not isinstance(states, Mapping):
        raise DataError(f"{source}: states must be a mapping of feature name to values, not "
                        f"{type(states).__name__}")
    unknown = [name for name in states if name not in features]
    if unknown:
        raise FeatureError(f"{source}: unknown feature{'s' * (len(unknown) > 1)} "
                           f"{', '.join(map(repr, unknown))} (known: "
                           f"{', '.join(features.names)})")
    used = {s.name for _, expr in terms for s in expr.free_symbols}
    missing = [name for name in features.names if name in used and name not in states]
    if missing:
        raise FeatureError(f"{source}: the reward reads feature{'s' * (len(missing) > 1)} "
                           f"{', '.join(map(repr, missing))}, missing from the states")
    arrays = {name: _state_values(value, name, source) for name, value in states.items()}
    try:
        shape = np.broadcast_shapes(*(a.shape for a in arrays.values()))
    except ValueError:
        lengths = ", ".join(f"{name} ({len(a)})" for name, a in arrays.items() if a.ndim)
        raise DataError(f"{source}: the features' arrays do not broadcast to one length: "
                        f"{lengths}") from None
    n = int(np.prod(shape))
    # Feature i is the input column obs[i]: the kernels compute the terms from those columns
    # with the code they compute them from features with.
    columns = FeatureSet({name: f"obs[{i}]" for i, name in enumerate(features.names)},
                         source=source)
    table = np.zeros((n, len(features.names)))
    for i, name in enumerate(features.names):
        if name in arrays:
            table[:, i] = np.broadcast_to(arrays[name], shape).reshape(n)
    kernels = compile_terms(columns, terms)
    values = kernels.term_columns(table, np.zeros((n, 0)), table, None)
    return StateValues(reward=summed(values).reshape(shape),
                       terms={name: values[:, k].reshape(shape)
                              for k, (name, _) in enumerate(terms)})


def _state_values(value: Any, name: str, source: str) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "iuf":
        raise DataError(f"{source}: feature '{name}': values must be real numbers (int or "
                        f"float), got {array.dtype} ({value!r:.60})")
    if array.ndim > 1:
        raise DataError(f"{source}: feature '{name}': must be a scalar or a 1-D array, got shape "
                        f"{array.shape}")
    return array.astype(np.float64)


def _check_fits(dataset: Dataset, features: FeatureSet) -> None:
    """A ``FeatureError`` naming the feature, before any compiling, where one reads an input
    ``dataset`` does not have."""
    features.check_dimensions(dataset.obs_dim, dataset.act_dim, set(dataset.infos),
                              data_source=dataset.source)


def _arguments(dataset: Dataset, kernels: RewardKernels
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return (dataset.observations, dataset.actions, dataset.next_observations,
            info_matrix(dataset.infos, kernels.info_names, dataset.n))
