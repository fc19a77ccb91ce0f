"""Distances between rewards beyond EPIC, each with a bootstrap confidence interval.

Measures (``MEASURES``; names as the audit reports them):

``"EPIC"``
    Pearson distance of EPIC's canonical rewards, in [0, 1] (``symreward.audit.epic``).
``"DARD"``
    Pearson distance of DARD's canonical rewards (Wulfe et al. 2022), in [0, 1], with the data
    as the transition model: rewards are evaluated only on transitions the data can reach
    (``symreward.audit.canonical``, ``symreward.audit.transitions``).
``"STARC-<canon>-<norm>"``
    A STARC metric (Skalse et al. 2024): a canonicalisation ``c`` (``epic`` or ``value``,
    STARC's value-adjusted levelling), normalised by a norm ``n`` and compared with the metric
    of the same norm, ``n(c(R1)/n(c(R1)) − c(R2)/n(c(R2)))``; norms ``L1``, ``L2`` and ``Linf``
    under the empirical distribution of the evaluated transitions. In [0, 2]: 0 for rewards
    equivalent up to shaping and a positive scale, 2 when one canonical reward is a negative
    multiple of the other (the paper's definition, not halved).

How the offline estimates stand to the definitions: every expectation over a distribution of
states, actions or transitions is a mean over the data's (EPIC: coverage samples; DARD and
``value``: the recorded successors of the k nearest recorded states, a transition model made
of the data). STARC's norms are over all transitions; here over the evaluated transitions, which
weighs them by how the data visit them. STARC's "minimal" canonicalisation (the member of a
reward's equivalence class of least norm) is not implemented: over recorded trajectories a free
potential per state can zero any reward along each trajectory, so its offline estimate is
identically 0; a restricted class of potentials would make it a different canonicalisation.

``L∞`` and the bootstrap: the maximum is a statistic of the extremes, for which the percentile
bootstrap is known to be unreliable (its interval tends to be too narrow and sits below the
value); the ``L∞`` measures are available but not among the defaults.

``compare_rewards`` computes the audit's ``distances`` section: one reward against several,
each canonicalised once, every measure with its interval from the same resampled transitions.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from threadpoolctl import threadpool_limits

from symreward.artifact import RewardArtifact
from symreward.audit.bootstrap import (
    NORMS,
    Estimate,
    Statistic,
    bootstrap_estimate,
    check_resampling,
    pearson_statistic,
    starc_statistic,
)
from symreward.audit.canonical import Canonicalizer, CanonicalReward
from symreward.audit.epic import _CONSTANT_RTOL, DEFAULT_BATCH_BYTES, RewardFn
from symreward.audit.transitions import DEFAULT_NEIGHBOURS, DEFAULT_POOL
from symreward.data.dataset import Dataset
from symreward.errors import SymrewardError

__all__ = [
    "DEFAULT_MEASURES",
    "MEASURES",
    "Counterpart",
    "Distance",
    "MeasureResult",
    "compare_rewards",
    "dard_distance",
    "starc_distance",
]

STARC_CANONICALIZATIONS = ("epic", "value")
MEASURES = ("EPIC", "DARD", *(f"STARC-{c}-{n}" for c in STARC_CANONICALIZATIONS for n in NORMS))
DEFAULT_MEASURES = ("EPIC", "DARD", "STARC-epic-L1", "STARC-epic-L2", "STARC-value-L1",
                    "STARC-value-L2")
SOURCES = ("parent", "front", "compare")

#: A reward as the distances take it: a batched reward function or an artifact.
RewardLike = RewardFn | RewardArtifact


@dataclass(frozen=True)
class MeasureResult:
    """One measure of one comparison: the value on the evaluated transitions and its interval."""

    name: str
    value: float
    ci: tuple[float, float] | None
    level: float
    resamples: int
    transitions: int

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value,
                "ci": list(self.ci) if self.ci is not None else None, "level": self.level,
                "resamples": self.resamples, "transitions": self.transitions}


@dataclass(frozen=True)
class Counterpart:
    """A reward to compare against and where it comes from: ``source`` is ``"parent"``,
    ``"front"`` (a runner-up of the Pareto front) or ``"compare"`` (given by the user);
    ``path`` the file it was read from; ``formula`` its reward where it is not a file's."""

    reward: RewardLike
    source: str = "compare"
    path: str | None = None
    formula: str | None = None

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise SymrewardError(f"counterpart source {self.source!r}: choose from "
                                 f"{', '.join(SOURCES)}")


@dataclass(frozen=True)
class Distance:
    """The audit's entry for one compared reward."""

    against: str
    source: str
    path: str | None
    measures: tuple[MeasureResult, ...]
    formula: str | None = None
    error: str | None = None  # why no measure is defined (``measures`` is empty then)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"against": self.against, "source": self.source,
                               "path": self.path,
                               "measures": [m.as_dict() for m in self.measures]}
        if self.formula is not None:
            out["formula"] = self.formula
        if self.error is not None:
            out["error"] = self.error
        return out


#: Every BLAS call here is a dot product of at most a dataset's length, where threads gain nothing;
#: on a loaded machine OpenBLAS's spinning threads made the value function's iterative solve 20x
#: slower (17 s against 1 s). The distances run with BLAS on one thread.
single_threaded_blas = threadpool_limits.wrap(limits=1, user_api="blas")


@single_threaded_blas
def compare_rewards(reward: RewardLike, others: Mapping[str, RewardLike | Counterpart],
                    dataset: Dataset, *, discount: float = 0.99, bootstrap: int = 200,
                    level: float = 0.95, seed: int = 0,
                    measures: Sequence[str] = DEFAULT_MEASURES, n_eval: int = 4096,
                    n_mean: int = 1024, neighbours: int = DEFAULT_NEIGHBOURS,
                    n_pool: int = DEFAULT_POOL,
                    max_batch_bytes: int = DEFAULT_BATCH_BYTES,
                    skip_undefined: bool = False) -> list[Distance]:
    """The distances from ``reward`` to each of ``others`` on ``dataset``, with intervals.

    Parameters
    ----------
    reward : reward function or RewardArtifact
        The audited reward.
    others : mapping of label to reward function, RewardArtifact or Counterpart
        The rewards to compare against; a bare reward counts as ``source="compare"``.
    dataset : Dataset
        The transitions every distribution is drawn from (held-out data, ideally).
    discount : float, default=0.99
        γ of the canonicalisations (below 1 for the ``value`` measures).
    bootstrap : int, default=200
        Resamples of the evaluated transitions (``symreward.audit.bootstrap``).
    level : float, default=0.95
        Confidence level of the percentile intervals.
    seed : int, default=0
        Draws the evaluated transitions, EPIC's samples, the neighbour pool and the resamples;
        the result is deterministic given it. EPIC equals ``epic_distance`` with this seed,
        ``n_eval`` and ``n_mean`` up to rounding (``symreward.audit.canonical``).
    measures : sequence of str, default=DEFAULT_MEASURES
        Any of ``MEASURES``.
    n_eval, n_mean, neighbours, n_pool, max_batch_bytes
        See ``Canonicalizer``.
    skip_undefined : bool, default=False
        Where the distances to one of ``others`` are undefined (below), give its entry no
        measures and the reason as ``error`` instead of raising: an audit goes on.

    Returns
    -------
    list of Distance, in the order of ``others``.

    Raises
    ------
    SymrewardError
        For an unknown measure, a bad option, a reward that is not finite on the transitions it
        is evaluated on, or a reward that is equivalent to a constant while the other is not
        (every measure is undefined then; two such rewards are at distance 0).
    """
    measures = _check_measures(measures)
    check_resampling(bootstrap, level)
    if not isinstance(others, Mapping):
        raise SymrewardError(f"others must map labels to rewards; got {type(others).__name__}")
    # Every reward is checked (and an artifact compiled) before anything is sampled.
    audited_fn = _batch_reward(reward, dataset)
    counterparts = {label: other if isinstance(other, Counterpart) else Counterpart(other)
                    for label, other in others.items()}
    other_fns = {label: _batch_reward(c.reward, dataset) for label, c in counterparts.items()}
    canonicalizations = list(dict.fromkeys(_canonicalization(m) for m in measures))
    canonicalizer = Canonicalizer(dataset, discount=discount,
                                  canonicalizations=canonicalizations, n_eval=n_eval,
                                  n_mean=n_mean, neighbours=neighbours, n_pool=n_pool,
                                  seed=seed, max_batch_bytes=max_batch_bytes)
    # The resamples have a stream of their own, so that the number of resamples never moves
    # the evaluated transitions or the canonicalisations' samples.
    resample_seed = (seed, 1)
    audited = canonicalizer(audited_fn, "the audited reward")
    results = []
    for label, counterpart in counterparts.items():
        found: tuple[MeasureResult, ...] = ()
        error = None
        try:
            canonical = canonicalizer(other_fns[label], repr(label))
            found = tuple(
                _measure(m, audited[_canonicalization(m)], canonical[_canonicalization(m)],
                         repr(label), resamples=bootstrap, level=level, seed=resample_seed)
                for m in measures)
        except SymrewardError as exc:
            if not skip_undefined:
                raise
            error = str(exc)
        results.append(Distance(against=str(label), source=counterpart.source,
                                path=counterpart.path, formula=counterpart.formula,
                                measures=found, error=error))
    return results


@single_threaded_blas
def dard_distance(reward_a: RewardLike, reward_b: RewardLike, dataset: Dataset, *,
                  discount: float = 0.99, n_eval: int = 4096,
                  neighbours: int = DEFAULT_NEIGHBOURS, n_pool: int = DEFAULT_POOL,
                  seed: int = 0, max_batch_bytes: int = DEFAULT_BATCH_BYTES) -> float:
    """The DARD distance between two rewards, estimated from ``dataset`` alone; in [0, 1].

    0 for rewards equivalent up to positive scale, an additive constant and potential shaping;
    the value ``compare_rewards`` reports as ``"DARD"`` with the same options. Raises
    ``SymrewardError`` when exactly one of the rewards is equivalent to a constant."""
    canonicalizer = Canonicalizer(dataset, discount=discount, canonicalizations=("dard",),
                                  n_eval=n_eval, n_mean=1, neighbours=neighbours,
                                  n_pool=n_pool, seed=seed, max_batch_bytes=max_batch_bytes)
    a = canonicalizer(_batch_reward(reward_a, dataset), "reward_a")["dard"]
    b = canonicalizer(_batch_reward(reward_b, dataset), "reward_b")["dard"]
    return _point("DARD", a, b, "reward_a", "reward_b")


@single_threaded_blas
def starc_distance(reward_a: RewardLike, reward_b: RewardLike, dataset: Dataset, *,
                   canonicalization: str = "epic", norm: str = "L2", discount: float = 0.99,
                   n_eval: int = 4096, n_mean: int = 1024,
                   neighbours: int = DEFAULT_NEIGHBOURS, n_pool: int = DEFAULT_POOL,
                   seed: int = 0, max_batch_bytes: int = DEFAULT_BATCH_BYTES) -> float:
    """A STARC distance between two rewards (``canonicalization`` in ``{"epic", "value"}``,
    ``norm`` in ``{"L1", "L2", "Linf"}``), estimated from ``dataset`` alone; in [0, 2].

    The value ``compare_rewards`` reports as ``f"STARC-{canonicalization}-{norm}"`` with the
    same options. Raises ``SymrewardError`` when exactly one reward is equivalent to a constant."""
    name = _check_measures([f"STARC-{canonicalization}-{norm}"])[0]
    canonicalizer = Canonicalizer(dataset, discount=discount,
                                  canonicalizations=(canonicalization,), n_eval=n_eval,
                                  n_mean=n_mean, neighbours=neighbours, n_pool=n_pool,
                                  seed=seed, max_batch_bytes=max_batch_bytes)
    a = canonicalizer(_batch_reward(reward_a, dataset), "reward_a")[canonicalization]
    b = canonicalizer(_batch_reward(reward_b, dataset), "reward_b")[canonicalization]
    return _point(name, a, b, "reward_a", "reward_b")


# ---------------------------------------------------------------------------- helpers


def _check_measures(measures: Sequence[str]) -> tuple[str, ...]:
    if isinstance(measures, str):
        measures = [measures]
    chosen = tuple(dict.fromkeys(measures))
    unknown = [m for m in chosen if m not in MEASURES]
    if unknown or not chosen:
        raise SymrewardError(f"unknown measure(s) {unknown or '(none given)'}; choose from "
                             f"{', '.join(MEASURES)}")
    return chosen


def _canonicalization(measure: str) -> str:
    return measure.split("-")[1] if measure.startswith("STARC-") else measure.lower()


def _statistic(measure: str, a: CanonicalReward, b: CanonicalReward) -> Statistic:
    floor_a, floor_b = _CONSTANT_RTOL * a.scale, _CONSTANT_RTOL * b.scale
    if measure.startswith("STARC-"):
        return starc_statistic(NORMS[measure.split("-")[2]], floor_a, floor_b)
    return pearson_statistic(floor_a, floor_b)


def _undefined(measure: str, a: CanonicalReward, b: CanonicalReward, name_a: str,
               name_b: str) -> bool:
    """True when both rewards are equivalent to constants (distance 0); raises when one is."""
    if a.constant and b.constant:
        return True
    if a.constant or b.constant:
        which = name_a if a.constant else name_b
        raise SymrewardError(
            f"{measure} distance is undefined: {which} is equivalent to a constant on the "
            "evaluated transitions (its canonical reward has no spread, e.g. it is a constant "
            "or a pure potential-shaping term), so it cannot be compared with the other reward")
    return False


def _point(measure: str, a: CanonicalReward, b: CanonicalReward, name_a: str,
           name_b: str) -> float:
    if _undefined(measure, a, b, name_a, name_b):
        return 0.0
    value = _statistic(measure, a, b)(a.values, b.values)
    if value is None:   # a norm at rounding level while the spread is not (a lone tiny spike)
        raise SymrewardError(f"{measure} distance is undefined: a canonical reward's norm is "
                             "at the rounding level of the rewards evaluated")
    return value


def _measure(measure: str, a: CanonicalReward, b: CanonicalReward, name_b: str, *,
             resamples: int, level: float, seed: tuple[int, int]) -> MeasureResult:
    if _undefined(measure, a, b, "the audited reward", name_b):
        return MeasureResult(measure, 0.0, (0.0, 0.0), float(level), resamples,
                             a.values.shape[0])
    estimate: Estimate = bootstrap_estimate(_statistic(measure, a, b), a.values, b.values,
                                            resamples=resamples, level=level, seed=seed)
    ci = (None if estimate.low is None or estimate.high is None
          else (estimate.low, estimate.high))
    return MeasureResult(measure, estimate.value, ci, estimate.level, estimate.resamples,
                         estimate.transitions)


def _batch_reward(reward: RewardLike, dataset: Dataset) -> RewardFn:
    """The batched reward of ``reward``; for an artifact, after checking that its features read
    only inputs ``dataset`` has (the kernels do not check their indices)."""
    if isinstance(reward, RewardArtifact):
        reward.features.check_dimensions(dataset.obs_dim, dataset.act_dim, set(dataset.infos),
                                          data_source=dataset.source)
        return reward.batch_reward()
    if isinstance(reward, str | os.PathLike):
        raise SymrewardError(f"{reward}: a path; load it with RewardArtifact.load first")
    if not callable(reward):
        raise SymrewardError(f"a reward must be a reward function or a RewardArtifact; got "
                             f"{type(reward).__name__}")
    return reward
