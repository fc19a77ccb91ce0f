"""Term columns: each term evaluated once over the transitions, screened, and mapped to the
objective's rows on both halves of the search's units, in a bounded cache.

Operators are protected by rejection, not by substitution: gplearn's ``x/0 = 1`` makes a reported
``x/y`` differ from the function that was scored. Here a term that is not finite on every
transition is discarded, so a formula always means what it says; so are a term that is
constant and one whose extremes are out of proportion to its bulk (``ColumnCache.tame``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np
import scipy.sparse as sp

from symreward.search.trees import FEATURE, Node, evaluate_terms, paths, subtree

# A term's tail ratio (``screen``) above this, and above twice its features' own, rejects it.
TAIL_RATIO = 50.0
# The bulk of a term's values (its median and 99th percentile) is measured on this many rows.
BULK_ROWS = 4096


class ColumnCache:
    """Each term's columns on the rows of the two halves (``row_maps``, CSC), or ``None`` for
    a term that is not finite, is constant or is wild; ``evaluations`` counts the terms the
    interpreter ran."""

    def __init__(self, matrix: np.ndarray, row_maps: Sequence[sp.csc_matrix],
                 fit_intercept: bool, seed: int):
        self.features = np.ascontiguousarray(matrix.T, dtype=np.float64)
        self.row_maps = list(row_maps)
        self.fit_intercept = fit_intercept
        transitions = self.features.shape[1]
        self.bulk_rows = np.arange(transitions) if transitions <= BULK_ROWS else np.sort(
            np.random.default_rng(seed).choice(transitions, BULK_ROWS, replace=False))
        self.feature_tails = list(screen(self.features, self.bulk_rows)[1])
        self.stored: dict[Node, tuple[np.ndarray, np.ndarray] | None] = {}
        # Half the cache is dropped past about 2 GB of columns (or 200,000 terms).
        rows = sum(m.shape[0] for m in self.row_maps)
        self.limit = min(200_000, 2 * 10**9 // (8 * max(rows, 1)))
        self.evaluations = 0

    def __getitem__(self, term: Node) -> tuple[np.ndarray, np.ndarray] | None:
        return self.stored[term]

    def usable(self, terms: Sequence[Node]) -> bool:
        """Whether every one of ``terms`` (evaluated already) has columns."""
        return all(self.stored.get(t) is not None for t in terms)

    def add(self, terms: Sequence[Node]) -> None:
        """Evaluate, in one kernel call, the terms not in the cache, and store their columns
        on both halves (``None`` for a term that is not finite, is constant or is wild)."""
        new = list(dict.fromkeys(t for t in terms if t not in self.stored))
        if not new:
            return
        if len(self.stored) > self.limit:
            for key in list(self.stored)[: len(self.stored) // 2]:
                del self.stored[key]
        with np.errstate(all="ignore"):
            values = evaluate_terms(new, self.features)
        self.evaluations += len(new)
        finite, ratios = screen(values, self.bulk_rows)
        finite[finite] = [self.tame(term, ratio) for term, ratio, ok in
                          zip(new, ratios, finite, strict=True) if ok]
        parts = [map_rows(m, values[finite]) for m in self.row_maps]
        both = np.concatenate(parts, axis=1)
        largest = np.abs(both).max(axis=1, initial=0.0)
        varies = np.ptp(both, axis=1) > 1e-12 * np.maximum(largest, 1e-300) if both.shape[1] \
            else np.zeros(len(both), dtype=bool)
        if not self.fit_intercept:
            varies |= largest > 0
        kept = iter(range(len(both)))
        for term, ok in zip(new, finite, strict=True):
            k = next(kept) if ok else -1
            self.stored[term] = (parts[0][k], parts[1][k]) if ok and varies[k] else None

    def tame(self, term: Node, ratio: float) -> bool:
        """Whether a term's extremes stay in proportion to its bulk, as its features' do.

        A term like ``a/dx`` takes values thousands of times its typical size on the few rows
        where ``dx`` is near 0; it can win a few pairs' noise and it behaves wildly off the data.
        Such a term is rejected when its tail ratio (``screen``) exceeds ``TAIL_RATIO`` and
        twice its features' own.
        """
        if ratio <= TAIL_RATIO:
            return True
        used = {int(n[1]) for p in paths(term) if (n := subtree(term, p))[0] == FEATURE}
        return ratio <= 2 * max((self.feature_tails[f] for f in used), default=0.0)


def map_rows(matrix: sp.csc_matrix, values: np.ndarray) -> np.ndarray:
    """``(matrix @ values.T).T``: each row of ``values`` (a term over the transitions) mapped to
    the objective's rows by its (rows, N) row map, held in CSC form."""
    return _map_rows(matrix.indptr, matrix.indices, matrix.data, values, matrix.shape[0])


@numba.njit(parallel=True, cache=True)
def _map_rows(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, values: np.ndarray,
              n_rows: int) -> np.ndarray:  # pragma: no cover - numba
    """``map_rows`` by columns of the map: each transition's value is read once, in order, and
    added to the (few) rows it enters, for four terms at a time. Each output sums its
    transitions in increasing order, as a row-wise product over sorted indices would."""
    n_terms = values.shape[0]
    out = np.zeros((n_terms, n_rows))
    for group in numba.prange((n_terms + 3) // 4):
        lo = 4 * group
        if lo + 4 <= n_terms:
            for j in range(indptr.shape[0] - 1):
                v0, v1 = values[lo, j], values[lo + 1, j]
                v2, v3 = values[lo + 2, j], values[lo + 3, j]
                for k in range(indptr[j], indptr[j + 1]):
                    row, w = indices[k], data[k]
                    out[lo, row] += w * v0
                    out[lo + 1, row] += w * v1
                    out[lo + 2, row] += w * v2
                    out[lo + 3, row] += w * v3
        else:
            for t in range(lo, n_terms):
                for j in range(indptr.shape[0] - 1):
                    v = values[t, j]
                    for k in range(indptr[j], indptr[j + 1]):
                        out[t, indices[k]] += data[k] * v
    return out


@numba.njit(parallel=True, cache=True)
def screen(values: np.ndarray, bulk_rows: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - numba
    """For each row of ``values`` (a term): whether it is finite and below 1e150 everywhere,
    and its tail ratio, the largest deviation from the median over the 99th percentile of
    deviations. The median and percentile are taken on the ``bulk_rows`` (a fixed sample: the
    bulk needs no more rows to be known), the largest deviation over every row."""
    finite = np.zeros(values.shape[0], dtype=np.bool_)
    ratios = np.zeros(values.shape[0])
    for t in numba.prange(values.shape[0]):
        row = values[t]
        low, high = np.inf, -np.inf
        for i in range(row.shape[0]):
            low = min(low, row[i])
            high = max(high, row[i])
        # NaN fails every comparison, so it leaves low and high as they were: count it apart.
        finite[t] = low > -1e150 and high < 1e150 and not np.isnan(row.sum())
        if not finite[t]:
            continue
        bulk = row[bulk_rows]
        median = _quantile(bulk, 0.5)
        spread = _quantile(np.abs(bulk - median), 0.99)
        largest = max(high - median, median - low)
        ratios[t] = largest / spread if spread > 0 else 0.0
    return finite, ratios


@numba.njit(cache=True)
def _quantile(values: np.ndarray, q: float) -> float:  # pragma: no cover - numba
    """numpy's default (linear) quantile by selection, not by sorting."""
    position = q * (values.shape[0] - 1)
    k = int(position)
    part = np.partition(values, k)
    if k + 1 >= values.shape[0]:
        return part[k]
    upper = part[k + 1:].min()
    return part[k] + (position - k) * (upper - part[k])
