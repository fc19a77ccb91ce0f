"""Balanced partitions of cross-validation units that keep linked units together.

A preference pair links its two segments: a pair can be held out only by the fold that holds
both of them, and trained on only by the folds that hold neither (``objectives`` says why).
When segments are reused, the pairs form one connected web, so folds cannot follow its
components; a fold of segments drawn at random keeps only ``1/k`` of the pairs inside it. A
partition that cuts few links keeps most pairs usable: segments are laid out in breadth-first
order over the pair graph (components in a seeded random order, each from a seeded random
root), cut into contiguous parts of equal weight, then refined by moving a segment to the part
that holds more of its partners while the parts stay balanced (label propagation under a
balance constraint, as in balanced graph partitioners). On a pool where each segment is in
five pairs, about 55% of the pairs fall inside one of five parts (20% at random); without reuse
every pair does.

Everything is integer arithmetic over a seeded order: the same links and seed give the same
parts on every machine.
"""

from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp
from scipy.sparse import csgraph

# How far a part's weight may exceed or fall short of an equal share (relative), beyond the
# weight of its heaviest unit.
BALANCE_SLACK = 0.1
REFINEMENT_PASSES = 20


def partition_units(n_parts: int, seed: int, units: np.ndarray, links: tuple[np.ndarray,
                    np.ndarray] | None = None) -> list[np.ndarray]:
    """``units`` split into at most ``n_parts`` non-empty, sorted, disjoint parts.

    ``links`` are two arrays of unit ids, one record (e.g. a preference pair) per position,
    tying its two units together; links to units outside ``units`` are ignored. Without links
    the parts are a seeded random split of equal size. Parts are balanced by the number of
    records each unit takes part in."""
    units = np.asarray(units, dtype=np.int64)
    if np.any(units[1:] <= units[:-1]):
        units = np.unique(units)
    count = min(int(n_parts), len(units))
    if count < 1:
        return []
    rng = np.random.default_rng(seed)
    if links is None:
        order = rng.permutation(units)
        return [np.sort(part) for part in np.array_split(order, count)]
    local = np.full(int(max(units.max(), np.max(links[0], initial=0),
                            np.max(links[1], initial=0))) + 1, -1, dtype=np.int64)
    local[units] = np.arange(len(units))
    first, second = local[np.asarray(links[0])], local[np.asarray(links[1])]
    inside = (first >= 0) & (second >= 0)
    first, second = first[inside], second[inside]
    n = len(units)
    weight = np.maximum(np.bincount(first, minlength=n) + np.bincount(
        second[first != second], minlength=n), 1).astype(np.float64)
    distinct = first != second
    graph = sp.coo_matrix((np.ones(int(distinct.sum())), (first[distinct], second[distinct])),
                          shape=(n, n))
    graph = (graph + graph.T).tocsr()
    graph.sum_duplicates()
    indptr = graph.indptr.astype(np.int64)
    indices = graph.indices.astype(np.int64)
    multiplicity = graph.data.astype(np.float64)
    target = weight.sum() / count
    parts = _initial_parts(graph, weight, count, target, rng)
    heaviest = weight.max()
    _refine(indptr, indices, multiplicity, weight, parts, count,
            rng.permutation(n).astype(np.int64), target * (1 + BALANCE_SLACK) + heaviest,
            target * (1 - BALANCE_SLACK) - heaviest, REFINEMENT_PASSES)
    return [units[parts == k] for k in range(count) if np.any(parts == k)]


def _initial_parts(graph: sp.csr_matrix, weight: np.ndarray, count: int, target: float,
                   rng: np.random.Generator) -> np.ndarray:
    """A component that holds more than half the weight is laid out in breadth-first order and
    cut into consecutive parts of ``target`` weight; the others go whole, heaviest first, to
    the lightest part at the time. A component is cut only when it must be: whole, any smaller
    one still leaves most records to train on outside its part, and a part left empty only
    means fewer folds, where a cut loses every pair across it."""
    n = len(weight)
    _, component = csgraph.connected_components(graph, directed=False)
    component_weight = np.bincount(component, weights=weight)
    visit = rng.permutation(n).astype(np.int64)
    parts = np.empty(n, dtype=np.int64)
    load = np.zeros(count)
    heavy = component_weight[component[visit]] > weight.sum() / 2
    order = _breadth_first(graph.indptr.astype(np.int64), graph.indices.astype(np.int64),
                           visit[heavy])
    if len(order):
        middle = np.cumsum(weight[order]) - weight[order] / 2
        parts[order] = np.minimum((middle // target).astype(np.int64), count - 1)
        load += np.bincount(parts[order], weights=weight[order], minlength=count)
    light, first_seen = np.unique(component[visit[~heavy]], return_index=True)
    light = light[np.lexsort((first_seen, -component_weight[light]))]
    part_of_component = np.zeros(len(component_weight), dtype=np.int64)
    part_of_component[light] = _to_lightest(component_weight[light], load)
    whole = ~np.isin(np.arange(n), order)
    parts[whole] = part_of_component[component[whole]]
    return parts


@numba.njit(cache=True)
def _to_lightest(weights: np.ndarray, load: np.ndarray) -> np.ndarray:  # pragma: no cover
    """Each item, in order, to the part with the least load at the time (the first such)."""
    chosen = np.empty(len(weights), dtype=np.int64)
    for k in range(len(weights)):
        lightest = np.argmin(load)
        chosen[k] = lightest
        load[lightest] += weights[k]
    return chosen


@numba.njit(cache=True)
def _breadth_first(indptr: np.ndarray, indices: np.ndarray, starts: np.ndarray
                   ) -> np.ndarray:  # pragma: no cover - numba
    """The nodes of the components that hold ``starts``, in breadth-first order, each
    component from the first of its nodes in ``starts``."""
    n = len(indptr) - 1
    seen = np.zeros(n, dtype=np.bool_)
    order = np.empty(n, dtype=np.int64)
    head = 0
    tail = 0
    for start in starts:
        if seen[start]:
            continue
        seen[start] = True
        order[tail] = start
        tail += 1
        while head < tail:
            node = order[head]
            head += 1
            for j in range(indptr[node], indptr[node + 1]):
                other = indices[j]
                if not seen[other]:
                    seen[other] = True
                    order[tail] = other
                    tail += 1
    return order[:tail]


@numba.njit(cache=True)
def _refine(indptr: np.ndarray, indices: np.ndarray, multiplicity: np.ndarray,
            weight: np.ndarray, parts: np.ndarray, n_parts: int, visit: np.ndarray, cap: float,
            floor: float, passes: int) -> None:  # pragma: no cover - numba
    """Move nodes, in ``visit`` order, to the part holding most of their links when that
    holds more than their own part and keeps every load within [floor, cap]; until a pass
    moves none."""
    load = np.zeros(n_parts)
    for node in range(len(parts)):
        load[parts[node]] += weight[node]
    linked = np.zeros(n_parts)
    for _ in range(passes):
        moved = 0
        for node in visit:
            own = parts[node]
            for j in range(indptr[node], indptr[node + 1]):
                linked[parts[indices[j]]] += multiplicity[j]
            best = own
            gain = 0.0
            for part in range(n_parts):
                if part == own:
                    continue
                change = linked[part] - linked[own]
                if (change > gain and load[part] + weight[node] <= cap
                        and load[own] - weight[node] >= floor):
                    best = part
                    gain = change
            for j in range(indptr[node], indptr[node + 1]):
                linked[parts[indices[j]]] = 0.0
            if best != own:
                parts[node] = best
                load[own] -= weight[node]
                load[best] += weight[node]
                moved += 1
        if moved == 0:
            break
