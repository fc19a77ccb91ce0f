"""Partial dependence: how the reward moves with one feature, the others as the data has them.

For a feature ``f`` and a value ``v``, the partial dependence is the mean over the data's
states of the reward with ``f`` set to ``v`` and every other feature left as it is
(Friedman 2001). It is computed in *feature space*: the reward is a formula of its features,
and here each feature the terms read is a free coordinate, so a feature computed from another
(``dist`` from ``x``) is moved on its own. The curves are drawn over the data's range of ``f``
widened by ``WIDEN`` of its width on each side, so a reader sees how the reward extrapolates just
outside what was recorded; a ``domain`` (a feature's natural range, say ``dist >= 0``) cuts the
widening where a feature cannot go.

The reward is evaluated by the same compiled kernels as everywhere else: a kernel whose
"inputs" are the feature values (``feature_space_reward``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import numpy as np

from symreward.errors import SymrewardError
from symreward.evaluate import compile_terms
from symreward.features import FeatureSet

if TYPE_CHECKING:
    from symreward.artifact import RewardArtifact

__all__ = ["feature_space_reward", "partial_dependence", "used_features"]

#: Values of a feature each curve is drawn at.
POINTS = 41
#: States of the data each curve averages over (drawn without replacement when there are more).
ROWS = 256
#: How far beyond the data's range a curve goes, as a fraction of the range's width.
WIDEN = 0.2
#: The band around the mean: these quantiles of the reward over the averaged states.
BAND = (0.1, 0.9)


def used_features(artifact: RewardArtifact) -> list[str]:
    """The features the terms read directly, in the artifact's feature order."""
    used = {symbol.name for expr in artifact.term_exprs() for symbol in expr.free_symbols}
    return [name for name in artifact.features.names if name in used]


def feature_space_reward(artifact: RewardArtifact) -> tuple[list[str], Callable[[np.ndarray],
                                                                               np.ndarray]]:
    """The features the terms read and ``reward(values)``: the reward at each row of
    ``values`` (M, len(features)), one column per feature in that order, evaluated by the
    compiled kernels (a kernel whose inputs are the feature values themselves)."""
    names = used_features(artifact)
    coordinates = FeatureSet({name: f"obs[{k}]" for k, name in enumerate(names)},
                             source=f"{artifact.source}: features as coordinates")
    terms = list(zip(artifact.term_names, artifact.term_exprs(), strict=True))
    kernels = compile_terms(coordinates, terms)

    def reward(values: np.ndarray) -> np.ndarray:
        values = np.ascontiguousarray(values, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != len(names):
            raise SymrewardError(f"feature values must have shape (M, {len(names)}); got "
                                 f"{values.shape}")
        return kernels.rewards(values, np.zeros((len(values), 0)), values, None)

    return names, reward


def partial_dependence(artifact: RewardArtifact, values: np.ndarray, *, seed: int = 0,
                       points: int = POINTS, rows: int = ROWS,
                       recorded: Mapping[str, tuple[float, float]] | None = None,
                       domain: Mapping[str, tuple[float | None, float | None]] | None = None
                       ) -> dict[str, dict[str, object]]:
    """The partial dependence of the reward on each feature its terms read.

    ``values`` holds those features on the data (N, F), columns in ``used_features`` order.
    Returns, per feature: ``grid`` (the values), ``mean`` (the partial dependence), ``lower``
    and ``upper`` (the ``BAND`` quantiles of the reward over the averaged states), ``data_range``
    (the feature's [min, max] on the data), ``recorded_range`` (from ``recorded``: the range the
    reward was learned on, or None) and ``states`` (how many states are averaged). A grid point
    where the reward is undefined at every state is None (elsewhere the mean and the band
    are over the states where it is finite). States where a feature is not
    finite are left out; where none is left, the result is empty. Deterministic for a
    ``seed``.
    """
    if not used_features(artifact):
        return {}
    names, reward = feature_space_reward(artifact)
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != len(names):
        raise SymrewardError(f"values must have shape (N, {len(names)}); got {values.shape}")
    if points < 2 or rows < 1:
        raise SymrewardError(f"points must be >= 2 and rows >= 1; got {points}, {rows}")
    finite = values[np.all(np.isfinite(values), axis=1)]
    if len(finite) == 0:  # no state to average over, nor a range to draw
        return {}
    if len(finite) > rows:
        chosen = np.random.default_rng(seed).choice(len(finite), size=rows, replace=False)
        states = finite[np.sort(chosen)]
    else:
        states = finite
    out: dict[str, dict[str, object]] = {}
    for j, name in enumerate(names):
        lo, hi = float(finite[:, j].min()), float(finite[:, j].max())
        grid = _grid(lo, hi, points, (domain or {}).get(name))
        table = np.repeat(states[None, :, :], len(grid), axis=0)
        table[:, :, j] = grid[:, None]
        curves = reward(table.reshape(-1, len(names))).reshape(len(grid), len(states))
        mean, lower, upper = _summaries(curves)
        span = (recorded or {}).get(name)
        out[name] = {"grid": grid.tolist(), "mean": mean, "lower": lower, "upper": upper,
                     "data_range": [lo, hi],
                     "recorded_range": None if span is None else [float(v) for v in span],
                     "states": len(states)}
    return out


def _grid(lo: float, hi: float, points: int,
          bounds: tuple[float | None, float | None] | None) -> np.ndarray:
    width = hi - lo
    pad = WIDEN * width if width > 0 else max(abs(lo), 1.0) * WIDEN
    start, stop = lo - pad, hi + pad
    if bounds is not None:
        low, high = bounds
        start = start if low is None else max(start, min(float(low), lo))
        stop = stop if high is None else min(stop, max(float(high), hi))
    return np.linspace(start, stop, points)


def _summaries(curves: np.ndarray) -> tuple[list[float | None], ...]:
    """Per grid point (row): the mean and the band's quantiles over the finite rewards."""
    mean, lower, upper = [], [], []
    for row in curves:
        good = row[np.isfinite(row)]
        if good.size == 0:
            mean.append(None)
            lower.append(None)
            upper.append(None)
            continue
        with np.errstate(over="ignore", invalid="ignore"):  # an overflowing mean is None
            mean.append(float(good.mean()))
            low, high = np.quantile(good, BAND)
        lower.append(float(low))
        upper.append(float(high))
    return mean, lower, upper
