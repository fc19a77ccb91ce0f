"""Learning from labelled rewards on a dataset read chunk by chunk.

Two passes over the chunks, each a map and a sum. The map is a module-level function of one
chunk (an in-memory ``Dataset``) and a task of plain values (formula texts, row numbers,
small arrays), so it can run in a dask task on another machine; the sum keeps a fixed amount:
nothing held grows with the number of transitions beyond one chunk and the term library's
row samples (at most ``TermLibrary.knot_rows`` and ``prune_rows`` rows).

1. ``scan_chunk``: each feature's range, the rewards' range, and the features (and user terms)
   at the rows the term library samples for its knots and its pruning
   (``TermLibrary.knot_sample``, ``probe_sample``: drawn from the number of rows and the seed,
   the same rows as in memory). The library is then chosen as in memory
   (``TermLibrary.choose``).
2. ``chunk_moments``: the chunk's candidate columns, locked terms' reward and labels, reduced
   to moments by validation fold (``problems.moments_of_columns``); their sum gives every
   problem the learner fits (``problems.MomentProblems``). The folds are fixed between the
   passes: they depend on the episodes' ends only.

A chunked dataset (``ChunkedDataset``) hands out its chunks as in-memory datasets with the
first row of each: ``symreward.data.lazy``'s, or an in-memory dataset cut into chunks
(``symreward.data.dataset_chunks.DatasetChunks``). ``map_chunks`` runs a pass's map: on dask's
scheduler for a lazy dataset, else here.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Protocol, TypeVar

import numpy as np

from symreward import evaluate
from symreward.artifact import Term
from symreward.data import Dataset
from symreward.errors import DataError, OptionError
from symreward.features import FeatureSet
from symreward.objectives import RewardLabelObjective
from symreward.objectives.moments import Moments
from symreward.problems import MomentProblems, moments_of_columns
from symreward.search import engines
from symreward.search.library import Candidate, Recipe, TermLibrary, recipe_columns

Task = TypeVar("Task")
Result = TypeVar("Result")
# Chunks mapped at once on a dask scheduler: enough to keep its workers busy, few enough that
# their chunks and results stay small.
MAP_WINDOW = 8


class ChunkedDataset(Protocol):
    """A dataset read a chunk at a time: ``chunk(k)`` is the rows from ``chunk_offsets[k]`` to
    the next offset (or ``n``) as an in-memory dataset; ``episode_ends`` are the whole data's
    (``Dataset.episode_ends``), ``digest()`` its ``dataset_digest``."""

    @property
    def source(self) -> str: ...

    @property
    def n(self) -> int: ...

    @property
    def episode_ends(self) -> np.ndarray: ...

    @property
    def chunk_offsets(self) -> np.ndarray: ...

    def chunk(self, k: int) -> Dataset: ...

    def digest(self) -> str: ...


@dataclass(frozen=True)
class ChunkTerms:
    """What computes a chunk's columns, as texts (the task parses and compiles them where it
    runs): the features, the library's user terms, the locked terms (name, formula) and the
    candidates' recipes (``search.library.recipe_columns``)."""

    features: tuple[tuple[str, str], ...]
    user_terms: tuple[str, ...] = ()
    locked: tuple[tuple[str, str], ...] = ()
    recipes: tuple[Recipe, ...] = ()

    def columns(self, chunk: Dataset, first_row: int
                ) -> tuple[np.ndarray, np.ndarray | None]:
        """The chunk's feature matrix (checked finite; rows named by their place in the data)
        and its user terms' columns."""
        features = FeatureSet(dict(self.features))
        matrix = evaluate.finite_feature_columns(
            chunk, features, None if first_row == 0 else
            lambda row: f"row {first_row + row} of the whole data (row {row} of this chunk)")
        user = (evaluate.text_columns(chunk, features, self.user_terms) if self.user_terms
                else None)
        return matrix, user

    def locked_reward(self, chunk: Dataset) -> np.ndarray | None:
        if not self.locked:
            return None
        features = FeatureSet(dict(self.features))
        return evaluate.rewards(chunk, features, [(name, Term(name, text).sympy(features.names))
                                                  for name, text in self.locked])


@dataclass(frozen=True)
class ScanTask:
    """The first pass on the chunk of rows ``first_row`` to ``first_row + rows``: the rows of
    the library's knot and pruning samples inside it, counted from its start."""

    terms: ChunkTerms
    first_row: int
    rows: int
    knot_rows: np.ndarray
    probe_rows: np.ndarray


@dataclass(frozen=True)
class Scan:
    """What the first pass gathers: each feature's lowest and highest value, the rewards'
    (lowest, highest), and the features (and user terms) at the sampled rows."""

    low: np.ndarray
    high: np.ndarray
    reward_range: tuple[float, float]
    knot_values: np.ndarray
    probe: np.ndarray
    probe_user: np.ndarray | None


def scan_chunk(chunk: Dataset, task: ScanTask) -> Scan:
    """The first pass's map: one chunk's ``Scan``."""
    _check_rows(chunk, task.first_row, task.rows)
    if chunk.rewards is None:
        raise DataError(f"{chunk.source}: no key 'rewards' for --objective rewards")
    matrix, user = task.terms.columns(chunk, task.first_row)
    return Scan(matrix.min(axis=0), matrix.max(axis=0),
                (float(chunk.rewards.min()), float(chunk.rewards.max())),
                matrix[task.knot_rows], matrix[task.probe_rows],
                None if user is None else user[task.probe_rows])


def summed_scans(scans: Iterable[Scan]) -> Scan:
    """The first pass's sum: ranges of ranges, the samples in row order."""
    parts = list(scans)
    return Scan(np.min([s.low for s in parts], axis=0), np.max([s.high for s in parts], axis=0),
                (min(s.reward_range[0] for s in parts), max(s.reward_range[1] for s in parts)),
                np.concatenate([s.knot_values for s in parts]),
                np.concatenate([s.probe for s in parts]),
                None if parts[0].probe_user is None
                else np.concatenate([s.probe_user for s in parts]))  # type: ignore[misc]


@dataclass(frozen=True)
class MomentTask:
    """The second pass on the chunk of rows ``first_row`` to ``first_row + rows``: its rows
    fall in runs of ``lengths`` rows of the groups ``groups``, of ``n_groups``."""

    terms: ChunkTerms
    first_row: int
    rows: int
    groups: np.ndarray
    lengths: np.ndarray
    n_groups: int


def chunk_moments(chunk: Dataset, task: MomentTask) -> Moments:
    """The second pass's map: the moments of the chunk's ``[columns, offset, target]`` by
    group."""
    _check_rows(chunk, task.first_row, task.rows)
    matrix, user = task.terms.columns(chunk, task.first_row)
    columns = recipe_columns(task.terms.recipes, matrix, user)
    return moments_of_columns(columns, task.terms.locked_reward(chunk),
                              np.asarray(chunk.rewards, dtype=np.float64),
                              np.repeat(task.groups, task.lengths), task.n_groups)


def map_chunks(function: Callable[[Dataset, Task], Result], dataset: ChunkedDataset,
               tasks: Iterable[Task]) -> Iterator[Result]:
    """A pass's map: ``function(dataset.chunk(k), task)`` for the ``k``-th task, the results in
    order. A dataset that hands its chunks out as dask objects (``to_delayed()``, as a lazy
    dataset does) is mapped on dask's current scheduler (``symreward.schedulers.scheduler``),
    ``MAP_WINDOW`` chunks at a time, each read where its task runs; any other here, one chunk
    in memory at a time."""
    to_delayed = getattr(dataset, "to_delayed", None)
    if to_delayed is None:
        for k, task in enumerate(tasks):
            yield function(dataset.chunk(k), task)
        return
    import dask  # a dataset of dask objects comes with dask

    pending = zip(to_delayed(), tasks, strict=True)
    while batch := list(itertools.islice(pending, MAP_WINDOW)):
        yield from dask.compute(*(dask.delayed(function)(chunk, task) for chunk, task in batch))


def check_learnable(objective: str, engine: str) -> None:
    """An ``OptionError`` where the learner's ``objective`` or ``engine`` needs the data in
    memory."""
    if objective != "rewards":
        raise OptionError("objective", objective,
                          "is not learned chunk by chunk (only --objective rewards is): load "
                          "the dataset in memory")
    if engine != engines.SPARSE:
        raise OptionError("engine", engine,
                          "searches term structure over every transition's features held in "
                          "memory at once; learn from a dataset read chunk by chunk with "
                          "--engine sparse, or load the dataset in memory")


def reward_problems(dataset: ChunkedDataset, features: FeatureSet, library: TermLibrary,
                    locked: Sequence[Term], seed: int
                    ) -> tuple[RewardLabelObjective, list[Candidate],
                               dict[str, tuple[float, float]], MomentProblems]:
    """For learning from ``dataset``'s labelled rewards: the objective, the term library's
    candidates, each feature's range and the problems on any folds, from the first pass (the
    second runs when the problems are asked for)."""
    first_rows = np.asarray(dataset.chunk_offsets, dtype=np.int64)
    stops = np.append(first_rows[1:], dataset.n)
    terms = ChunkTerms(tuple(features.items()), tuple(library.user_terms),
                       tuple((t.name, t.expr) for t in locked))
    knots = library.knot_sample(dataset.n, seed)
    probe = library.probe_sample(dataset.n, seed)
    scan = summed_scans(map_chunks(scan_chunk, dataset, (
        ScanTask(terms, int(first), int(stop - first), _inside(knots, first, stop),
                 _inside(probe, first, stop)) for first, stop in zip(first_rows, stops,
                                                                      strict=True))))
    objective = RewardLabelObjective(dataset, reward_range=scan.reward_range)  # type: ignore
    candidates, recipes = library.choose(features.names, scan.knot_values, scan.low, scan.high,
                                         scan.probe, scan.probe_user)
    ranges = {name: (float(scan.low[i]), float(scan.high[i]))
              for i, name in enumerate(features.names)}
    with_recipes = replace(terms, recipes=tuple(recipes))
    unit_ends = objective.unit_ends

    def moments_of(group_of_unit: np.ndarray, n_groups: int) -> Moments:
        tasks = (MomentTask(with_recipes, int(first), int(stop - first),
                            *_runs(unit_ends, group_of_unit, first, stop), n_groups)
                 for first, stop in zip(first_rows, stops, strict=True))
        total = Moments.empty(n_groups, len(recipes) + 2)
        for part in map_chunks(chunk_moments, dataset, tasks):
            total = total.merge(part)
        return total
    return objective, candidates, ranges, MomentProblems(objective, moments_of)


def _inside(sample: np.ndarray | None, first: int, stop: int) -> np.ndarray:
    """The rows of ``sample`` (sorted; None: every row) from ``first`` to ``stop``, counted
    from ``first``."""
    if sample is None:
        return np.arange(stop - first)
    low, high = np.searchsorted(sample, [first, stop])
    return sample[low:high] - first


def _runs(unit_ends: np.ndarray, group_of_unit: np.ndarray, first: int, stop: int
          ) -> tuple[np.ndarray, np.ndarray]:
    """The groups of the units that rows ``first`` to ``stop`` fall in, and how many of those
    rows each holds (units are runs of rows ending at ``unit_ends``)."""
    low, high = np.searchsorted(unit_ends, [first, stop - 1], side="right")
    units = np.arange(low, high + 1)
    starts = np.where(units > 0, unit_ends[np.maximum(units - 1, 0)], 0)
    lengths = np.minimum(unit_ends[units], stop) - np.maximum(starts, first)
    return group_of_unit[units], lengths


def _check_rows(chunk: Dataset, first_row: int, rows: int) -> None:
    if chunk.n != rows:
        raise DataError(f"{chunk.source}: the chunk from row {first_row} holds {chunk.n} rows, "
                        f"where the chunks' offsets give it {rows}")

