"""Offline IRL objectives: how well a per-transition reward vector explains the supervision.

Every objective answers two questions:

* ``loss_and_grad(r)`` — the loss of any per-transition reward ``r`` (length N) and its gradient,
  for engines that search formula structure directly;
* ``problem(columns, offset)`` — the same loss restricted to rewards *linear* in K candidate
  columns, reduced to sufficient statistics (per-segment sums of the columns). After
  featurisation the cost of fitting no longer grows with segment length.

The linear fitting lives beside the objectives: ``linear`` (the problem and its losses),
``fitting`` (the fit of weights over a support, and of many supports per call), ``solvers``
(their compiled kernels) and ``rounding`` (weights and constants at few significant digits).

What each objective can identify (so what an artifact may honestly report):

* ``preferences`` (Bradley–Terry on segment returns) and ``rankings`` (T-REX: every ordered pair
  of ranked segments) see only differences of segment returns: the reward is fixed up to an
  additive constant and potential shaping; the scale is fixed only relative to the labels'
  noise (the Bradley–Terry temperature). No intercept is fitted or reported; where compared
  segments differ in length, a constant paid per step changes the returns' difference and is
  identified (``identifies_per_step_constant``), and the learner offers it as a term.
* ``demonstrations`` (expert vs unlabeled, a positive-unlabeled classifier as in ORIL): the
  reward is the classifier's logit; its constant depends on the class balance, so it is not
  reported either.
* ``rewards`` (labeled per-transition rewards): everything is identified, intercept included.

Cross-validation splits *units*, and a record (a row of the loss) belongs to a set of units
only when every unit it reads is in the set:

* ``preferences``: the units are the distinct segments (a segment reused in several pairs is
  one unit). A pair is validated by the fold that holds both its segments, trained on by the
  folds that hold neither, and used by neither side of a fold it straddles.
* ``rankings``: the units are the distinct ranked segments; the pairs are formed inside a set.
* ``demonstrations`` and ``rewards``: the units are episodes (contiguous blocks of them where
  the data hold fewer than ``MIN_TRANSITION_UNITS``).

Why segments, not pairs: a reward from a finite library does not fit the true reward exactly,
and what it misses is a fixed amount for each segment (its true return minus its modelled
one). A candidate term that happens to track those amounts over the training segments gains
on every held-out pair that reuses one of them, which is a gain no fresh segment would give;
the more terms a search compares, the more such chance matches it finds. A pair whose two
segments never appear in training is scored on returns the fit never saw, as a new clip would
be. Label noise, by contrast, is drawn afresh for each pair, so two pairs that share a segment
share none of it. Segments that overlap in time without being equal share part of their
transitions: a fraction of their residual, which these units do not separate (episode-disjoint
folds would, but cannot split data of one long episode). ``partition`` keeps linked segments
together, so that reuse costs as few pairs as it can; ``Objective.fold_sizes`` says how many.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from symreward import validation
from symreward.data import Dataset
from symreward.errors import DataError, OptionError
from symreward.objectives.linear import LinearProblem, row_loss
from symreward.partition import partition_units

OBJECTIVES = ("preferences", "rankings", "demonstrations", "rewards")
# Data of fewer episodes are cross-validated on contiguous blocks (``_TransitionObjective``).
MIN_TRANSITION_UNITS = 20


def segment_matrix(segments: np.ndarray, n: int, discount: float = 1.0) -> sp.csr_matrix:
    """Sparse (M, N) matrix whose rows sum (discounted) transitions of each [start, stop)."""
    segments = np.asarray(segments, dtype=np.int64).reshape(-1, 2)
    lengths = segments[:, 1] - segments[:, 0]
    rows = np.repeat(np.arange(len(segments)), lengths)
    steps = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    cols = np.repeat(segments[:, 0], lengths) + steps
    values = np.power(float(discount), steps) if discount != 1.0 else np.ones(len(steps))
    return sp.csr_matrix((values, (rows, cols)), shape=(len(segments), n))


@dataclass
class Objective:
    """Base: an objective bound to a dataset, with units for cross-validation."""

    dataset: Dataset
    name: str = field(init=False, default="")
    identifies_intercept: bool = field(init=False, default=False)
    # What cross-validation splits and what it counts, in messages and reports.
    unit_name = "units"
    row_name = "rows"
    # The loss of its problems (``LinearProblem.kind``).
    kind = ""

    @property
    def n_units(self) -> int:
        raise NotImplementedError

    def problem(self, columns: np.ndarray, offset: np.ndarray | None = None,
                units: np.ndarray | None = None) -> LinearProblem:
        raise NotImplementedError

    def loss_and_grad(self, rewards: np.ndarray, units: np.ndarray | None = None
                      ) -> tuple[float, np.ndarray]:
        """Loss of a per-transition reward vector and its gradient (length N)."""
        raise NotImplementedError

    def folds(self, n_folds: int, seed: int, units: np.ndarray | None = None
              ) -> list[np.ndarray]:
        """``units`` (all by default) split into at most ``n_folds`` non-empty, disjoint
        validation sets, keeping units that share records together where it can
        (deterministic for a seed)."""
        units = np.arange(self.n_units) if units is None else np.asarray(units)
        return partition_units(n_folds, seed, units, self.unit_links())

    def identifies_per_step_constant(self) -> bool:
        """Whether a constant reward per step changes the loss: it does where compared
        segments differ in length (a constant adds ``c * length`` to a return), so a reward
        paid for every step survived is then learnable; never where an intercept is fitted,
        which already holds it."""
        return False

    def unit_links(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The two units each record reads, for records that read two (preference pairs);
        ``None`` where a record reads one unit or pairs are formed inside a set of units."""
        return None

    def n_rows(self, units: np.ndarray | None = None) -> int:
        """The number of rows of ``problem(..., units)``: the loss's terms."""
        return len(self.members(units))

    def scorable(self, units: np.ndarray | None = None) -> bool:
        """Whether the loss on ``units`` (all by default) is defined: they hold rows."""
        return self.n_rows(units) > 0

    def fold_sizes(self, folds: list[np.ndarray], units: np.ndarray | None = None
                   ) -> list[tuple[int, int]]:
        """For each fold, the rows a model is trained on (those of ``units``, all by default,
        outside the fold) and validated on (those inside it)."""
        units = np.arange(self.n_units) if units is None else np.asarray(units)
        return [(self.n_rows(np.setdiff1d(units, fold)), self.n_rows(fold)) for fold in folds]

    def members(self, units: np.ndarray | None = None) -> np.ndarray:
        """Indices of the records (preference pairs, ranked segments, transitions) that read
        only ``units`` (all by default)."""
        raise NotImplementedError

    def row_map(self, units: np.ndarray | None = None) -> sp.csr_matrix:
        """The sparse (rows, N) matrix that takes per-transition columns to the rows of
        ``problem(columns, offset, units)``: its ``X`` is ``row_map(units) @ columns``. Fixed
        once, it maps many batches of columns without redoing the row selection."""
        raise NotImplementedError


class PreferenceObjective(Objective):
    """Bradley–Terry on (optionally discounted) segment returns, with soft labels and an
    optional label-noise probability (as imitation's ``PreferenceModel``)."""

    unit_name, row_name = "segments", "pairs"
    kind = "bernoulli"

    def __init__(self, dataset: Dataset, *, noise: float = 0.0, discount: float = 1.0):
        prefs = dataset.preferences
        if prefs is None or len(prefs) == 0:
            raise DataError(f"{dataset.source}: no preferences (keys pref_a, pref_b, pref_label) "
                            "for --objective preferences")
        if np.all(prefs.label == prefs.label[0]):
            raise DataError(f"{dataset.source}: key 'pref_label': every label is "
                            f"{prefs.label[0]:g}; a reward cannot be told apart from its "
                            "negation or from zero (are segments a and b assigned at random?)")
        validation.number("noise", noise, 0.0, 1.0, high_open=True)
        validation.number("discount", discount, 0.0, 1.0, low_open=True)
        super().__init__(dataset)
        self.name = "preferences"
        self.noise = noise
        self.discount = discount
        n = dataset.n
        self.difference = (segment_matrix(prefs.a, n, discount)
                           - segment_matrix(prefs.b, n, discount)).tocsr()
        self.labels = np.asarray(prefs.label, dtype=np.float64)
        ids = distinct_segments(np.concatenate([prefs.a, prefs.b]))
        self.segment_a, self.segment_b = ids[:len(self.labels)], ids[len(self.labels):]

    @property
    def n_units(self) -> int:
        return int(max(self.segment_a.max(), self.segment_b.max())) + 1

    def unit_links(self) -> tuple[np.ndarray, np.ndarray]:
        return self.segment_a, self.segment_b

    def identifies_per_step_constant(self) -> bool:
        return _lengths_differ(self.difference)

    def members(self, units: np.ndarray | None = None) -> np.ndarray:
        if units is None:
            return np.arange(len(self.labels))
        inside = np.zeros(self.n_units, dtype=bool)
        inside[np.asarray(units, dtype=np.int64)] = True
        return np.flatnonzero(inside[self.segment_a] & inside[self.segment_b])

    def row_map(self, units: np.ndarray | None = None) -> sp.csr_matrix:
        return self.difference[self.members(units)]

    def problem(self, columns: np.ndarray, offset: np.ndarray | None = None,
                units: np.ndarray | None = None) -> LinearProblem:
        pairs = self.members(units)
        difference = self.difference[pairs]
        base = np.zeros(len(pairs)) if offset is None else difference @ offset
        return LinearProblem("bernoulli", np.asarray(difference @ columns), self.labels[pairs],
                             base, np.ones(len(pairs)), noise=self.noise)

    def loss_and_grad(self, rewards: np.ndarray, units: np.ndarray | None = None
                      ) -> tuple[float, np.ndarray]:
        pairs = self.members(units)
        difference = self.difference[pairs]
        loss, grad_z = row_loss("bernoulli", difference @ rewards, self.labels[pairs],
                                 np.ones(len(pairs)), self.noise, None)
        return loss, difference.T @ grad_z


class RankingObjective(Objective):
    """T-REX: Bradley–Terry over every ordered pair of ranked segments; ties give no pair."""

    unit_name, row_name = "segments", "ranked pairs"
    kind = "bernoulli"

    def __init__(self, dataset: Dataset, *, discount: float = 1.0, max_pairs: int = 200_000,
                 seed: int = 0):
        ranks = dataset.rankings
        if ranks is None or len(ranks) < 2:
            raise DataError(f"{dataset.source}: need at least 2 ranked segments (keys "
                            "rank_segments, rank_scores) for --objective rankings")
        validation.number("discount", discount, 0.0, 1.0, low_open=True)
        validation.whole("max_pairs", max_pairs, 1)
        validation.whole("seed", seed, 0)
        if np.all(ranks.scores == ranks.scores[0]):
            raise DataError(f"{dataset.source}: key 'rank_scores': every score is equal, so the "
                            "ranking carries no order")
        super().__init__(dataset)
        self.name = "rankings"
        self.discount = discount
        self.max_pairs = max_pairs
        self.seed = seed
        self.sums = segment_matrix(ranks.segments, dataset.n, discount)
        self.scores = np.asarray(ranks.scores, dtype=np.float64)
        self.unit_of_record = distinct_segments(ranks.segments)

    @property
    def n_units(self) -> int:
        return int(self.unit_of_record.max()) + 1

    def members(self, units: np.ndarray | None = None) -> np.ndarray:
        if units is None:
            return np.arange(len(self.scores))
        return np.flatnonzero(np.isin(self.unit_of_record, units))

    def n_rows(self, units: np.ndarray | None = None) -> int:
        return len(self._pairs(units)[0])

    def identifies_per_step_constant(self) -> bool:
        return _lengths_differ(self._difference(None)[0])

    def _pairs(self, units: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        records = self.members(units)
        better, worse = np.meshgrid(records, records, indexing="ij")
        # A segment ranked twice is not compared with itself: its return difference is 0.
        keep = ((self.scores[better] > self.scores[worse])
                & (self.unit_of_record[better] != self.unit_of_record[worse]))
        better, worse = better[keep], worse[keep]
        if len(better) > self.max_pairs:
            chosen = np.sort(np.random.default_rng(self.seed).choice(
                len(better), self.max_pairs, replace=False))
            better, worse = better[chosen], worse[chosen]
        return better, worse

    def _difference(self, units: np.ndarray | None) -> tuple[sp.csr_matrix, np.ndarray]:
        better, worse = self._pairs(units)
        # Half the rows flipped (label 0), so a classifier sees two classes; the loss is the same.
        flip = np.random.default_rng(self.seed).random(len(better)) < 0.5
        first = np.where(flip, worse, better)
        second = np.where(flip, better, worse)
        return (self.sums[first] - self.sums[second]).tocsr(), (~flip).astype(np.float64)

    def row_map(self, units: np.ndarray | None = None) -> sp.csr_matrix:
        return self._difference(units)[0]

    def problem(self, columns: np.ndarray, offset: np.ndarray | None = None,
                units: np.ndarray | None = None) -> LinearProblem:
        difference, target = self._difference(units)
        base = np.zeros(len(target)) if offset is None else difference @ offset
        return LinearProblem("bernoulli", np.asarray(difference @ columns), target, base,
                             np.ones(len(target)))

    def loss_and_grad(self, rewards: np.ndarray, units: np.ndarray | None = None
                      ) -> tuple[float, np.ndarray]:
        difference, target = self._difference(units)
        loss, grad_z = row_loss("bernoulli", difference @ rewards, target,
                                 np.ones(len(target)), 0.0, None)
        return loss, difference.T @ grad_z


class _TransitionObjective(Objective):
    """Objectives whose rows are transitions; cross-validation keeps episodes whole. Data of
    fewer than ``MIN_TRANSITION_UNITS`` episodes (a single long log) are cut into that many
    contiguous blocks of about equal length, each inside one episode: adjacent steps then
    share a fold except where two blocks meet, and such data can still be cross-validated.
    The units are read from the episodes' ends alone (``transition_unit_ends``), so a dataset
    read chunk by chunk has the same units as in memory."""

    row_name = "transitions"
    target: np.ndarray
    class_prior: float | None = None

    @property
    def unit_name(self) -> str:  # type: ignore[override]
        return ("episodes" if len(self.dataset.episode_ends) >= MIN_TRANSITION_UNITS
                else "blocks of episodes")

    @cached_property
    def unit_ends(self) -> np.ndarray:
        """The exclusive last row of each unit: units are runs of consecutive rows."""
        return transition_unit_ends(self.dataset.episode_ends)

    @cached_property
    def unit_sizes(self) -> np.ndarray:
        return np.diff(self.unit_ends, prepend=0)

    @cached_property
    def unit_of_row(self) -> np.ndarray:
        return np.repeat(np.arange(self.n_units), self.unit_sizes)

    @property
    def n_units(self) -> int:
        return len(self.unit_ends)

    def n_rows(self, units: np.ndarray | None = None) -> int:
        if units is None:
            return int(self.unit_ends[-1])
        return int(self.unit_sizes[np.unique(np.asarray(units, dtype=np.int64))].sum())

    def members(self, units: np.ndarray | None = None) -> np.ndarray:
        if units is None:
            return np.arange(self.dataset.n)
        return np.flatnonzero(np.isin(self.unit_of_row, units))

    def row_map(self, units: np.ndarray | None = None) -> sp.csr_matrix:
        rows = self.members(units)
        return sp.csr_matrix((np.ones(len(rows)), (np.arange(len(rows)), rows)),
                             shape=(len(rows), self.dataset.n))

    def loss_and_grad(self, rewards: np.ndarray, units: np.ndarray | None = None
                      ) -> tuple[float, np.ndarray]:
        rows = self.members(units)
        loss, grad_rows = row_loss(self.kind, np.asarray(rewards)[rows], self.target[rows],
                                    np.ones(len(rows)), 0.0, self.class_prior)
        grad = np.zeros(self.dataset.n)
        grad[rows] = grad_rows
        return loss, grad


def transition_unit_ends(episode_ends: np.ndarray) -> np.ndarray:
    """The cross-validation units of transitions, as the exclusive last row of each unit, from
    the episodes' exclusive ends (``Dataset.episode_ends``): the episodes themselves, or, for
    fewer than ``MIN_TRANSITION_UNITS`` episodes, blocks of ``ceil(N / MIN_TRANSITION_UNITS)``
    rows cut from the start of each episode (its last block shorter)."""
    ends = np.asarray(episode_ends, dtype=np.int64)
    if len(ends) >= MIN_TRANSITION_UNITS:
        return ends
    size = math.ceil(int(ends[-1]) / MIN_TRANSITION_UNITS)
    starts = np.concatenate([[0], ends[:-1]])
    return np.concatenate([np.minimum(np.arange(start + size, stop + size, size), stop)
                           for start, stop in zip(starts, ends, strict=True)])


class DemonstrationObjective(_TransitionObjective):
    """Expert transitions against unlabeled ones (positive-unlabeled, ORIL-style); the reward
    is the classifier's logit. ``class_prior`` is the expected share of expert-like transitions
    among the unlabeled ones; without it the unlabeled data are treated as non-expert."""

    def __init__(self, dataset: Dataset, *, class_prior: float | None = None):
        expert = dataset.expert
        if expert is None or not expert.any():
            raise DataError(f"{dataset.source}: no expert transitions (key 'expert') for "
                            "--objective demonstrations")
        if expert.all():
            raise DataError(f"{dataset.source}: key 'expert': every transition is expert, so "
                            "there is nothing to contrast them with")
        validation.number("class_prior", class_prior, 0.0, 1.0, low_open=True, high_open=True,
                          optional=True)
        super().__init__(dataset)
        self.name = "demonstrations"
        self.kind = "pu"
        self.class_prior = class_prior
        self.target = expert.astype(np.float64)

    def scorable(self, units: np.ndarray | None = None) -> bool:
        """Rows of both kinds: the risk averages over expert and over unlabeled rows."""
        labels = self.target[self.members(units)]
        return bool(labels.any() and not labels.all())

    def problem(self, columns: np.ndarray, offset: np.ndarray | None = None,
                units: np.ndarray | None = None) -> LinearProblem:
        rows = self.members(units)
        base = np.zeros(len(rows)) if offset is None else np.asarray(offset)[rows]
        return LinearProblem("pu", np.asarray(columns)[rows], self.target[rows], base,
                             np.ones(len(rows)), fit_intercept=True, class_prior=self.class_prior)



class RewardLabelObjective(_TransitionObjective):
    """Labeled per-transition rewards: distil an existing reward into a formula.

    ``reward_range`` is the rewards' (lowest, highest) where they were read already (a dataset
    read chunk by chunk, whose rewards are then never held at once); ``None``: from
    ``dataset.rewards``."""

    def __init__(self, dataset: Dataset, *, reward_range: tuple[float, float] | None = None):
        if reward_range is None:
            if dataset.rewards is None:
                raise DataError(f"{dataset.source}: no key 'rewards' for --objective rewards")
            reward_range = (float(np.min(dataset.rewards)), float(np.max(dataset.rewards)))
        if not reward_range[0] < reward_range[1]:
            raise DataError(f"{dataset.source}: key 'rewards': every reward is equal, so there "
                            "is nothing to learn")
        super().__init__(dataset)
        self.name = "rewards"
        self.kind = "squared"
        self.identifies_intercept = True

    @cached_property
    def target(self) -> np.ndarray:  # type: ignore[override]
        return np.asarray(self.dataset.rewards, dtype=np.float64)

    def problem(self, columns: np.ndarray, offset: np.ndarray | None = None,
                units: np.ndarray | None = None) -> LinearProblem:
        rows = self.members(units)
        base = np.zeros(len(rows)) if offset is None else np.asarray(offset)[rows]
        return LinearProblem("squared", np.asarray(columns)[rows], self.target[rows], base,
                             np.ones(len(rows)), fit_intercept=True)


def make_objective(name: str, dataset: Dataset, *, noise: float = 0.0, discount: float = 1.0,
                   class_prior: float | None = None, seed: int = 0) -> Objective:
    """The objective called ``name`` bound to ``dataset``; raises ``DataError`` when the
    dataset lacks the supervision it needs."""
    if name == "preferences":
        return PreferenceObjective(dataset, noise=noise, discount=discount)
    if name == "rankings":
        return RankingObjective(dataset, discount=discount, seed=seed)
    if name == "demonstrations":
        return DemonstrationObjective(dataset, class_prior=class_prior)
    if name == "rewards":
        return RewardLabelObjective(dataset)
    raise OptionError("objective", name, f"choose from {', '.join(OBJECTIVES)}")


def _lengths_differ(difference: sp.csr_matrix) -> bool:
    """Whether some row of a difference of (discounted) segment sums moves a constant."""
    moved = np.abs(difference @ np.ones(difference.shape[1]))
    size = np.asarray(abs(difference).sum(axis=1)).ravel()
    return bool(np.any(moved > 1e-9 * np.maximum(size, 1e-300)))


def distinct_segments(segments: np.ndarray) -> np.ndarray:
    """An id for each ``[start, stop)`` row, equal rows sharing one; ids are numbered in order
    of first appearance, so data without repeats numbers its segments as they come."""
    segments = np.asarray(segments, dtype=np.int64).reshape(-1, 2)
    if len(segments) == 0:
        return np.zeros(0, dtype=np.int64)
    _, first, inverse = np.unique(segments, axis=0, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inverse.reshape(-1)]
