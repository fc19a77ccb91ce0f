"""The audit of a reward artifact on a dataset: every section of the report, as plain data.

``audit`` evaluates the reward once and builds one section per question, each by one call:

* ``artifact`` and ``data`` — what was audited on what (and whether the data is the data the
  reward was learned from, by the dataset's digest);
* ``distances`` — EPIC, DARD and the STARC family, with bootstrap intervals, to each compared
  artifact (by default the parent and the front's runners-up), and ``uncertainty``, the
  disagreement among the front's members per transition;
* ``attribution`` — term shares and the worst-predicted preference pairs
  (``audit.attribution``), and ``calibration`` of the preference model where there are pairs;
* ``exploits`` — the reward's certified maximum and minimum over the domain, how far they lie
  from the data, terms that extrapolate, the share of the data out of distribution
  (``audit.exploit``);
* ``partial_dependence`` — the reward against each feature (``audit.dependence``);
* ``front`` — the Pareto front recorded in the artifact's provenance.

The shapes are those of the audit schema (``AUDIT_SCHEMA``: sections keyed by name, numbers
finite or None), so a section computed elsewhere (exploit search, front disagreement) joins the
report by one more entry, and ``audit.report`` renders whatever is present.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from symreward import validation
from symreward.audit.attribution import (
    WORST_PAIRS,
    attribute,
    calibration,
    pair_predictions,
)
from symreward.audit.comparisons import default_comparisons
from symreward.audit.dependence import partial_dependence, used_features
from symreward.audit.disagreement import front_uncertainty
from symreward.audit.distances import DEFAULT_MEASURES, Counterpart, compare_rewards
from symreward.audit.exploit import exploit_search
from symreward.audit.report import plain
from symreward.data.dataset import Dataset
from symreward.errors import DataError, FeatureError, SymrewardError
from symreward.evaluate import info_matrix
from symreward.invariants.domain import feature_domain

if TYPE_CHECKING:
    from symreward.artifact import Evaluation, RewardArtifact
    from symreward.data.lazy import LazyDataset
    from symreward.kernels import RewardKernels

__all__ = ["SCHEMA", "artifact_summary", "audit", "check_options", "data_summary",
           "distances", "uncertainty"]

SCHEMA = "symreward-audit/1"
#: A dataset read lazily (larger than memory) is audited on whole chunks drawn with the seed,
#: up to this many transitions (``LazyDataset.sample``); the data section says how many of how
#: many. Every section's estimates (EPIC's samples, term shares, partial dependence) already
#: draw far fewer transitions than this.
SAMPLE_ROWS = 1_000_000
#: EPIC's evaluation transitions and coverage samples (``epic_distance``'s own defaults).
#: Bootstrap resamples of every distance's confidence interval.
BOOTSTRAP = 200
_MEMORY = ("<memory>", "<string>")


def audit(artifact: RewardArtifact, dataset: Dataset | LazyDataset, *,
          compare: Sequence[RewardArtifact] = (), discount: float = 0.99, seed: int = 0,
          worst: int = WORST_PAIRS, segment_discount: float | None = None,
          noise: float | None = None,
          domain: Mapping[str, tuple[float | None, float | None] | tuple[float | None,
                                                                         float | None, str]]
          | None = None,
          exploit_time: float = 10.0,
          progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The audit report of ``artifact`` on ``dataset``, as plain JSON-able data.

    Parameters
    ----------
    compare
        Artifacts to measure the distances to, each named by its name or file; by default the
        parent (when its file lies beside the artifact) and the front's runners-up.
    discount
        The discount ``γ`` of the distances' canonicalisation (potential shaping
        ``γΦ(s') − Φ(s)`` is what they ignore).
    seed
        Seeds every random draw (EPIC's samples, the states partial dependence averages over):
        the same inputs and seed give the same report, byte for byte once rendered.
    worst
        How many of the worst-predicted preference pairs to list.
    segment_discount, noise
        The preference model the pairs are predicted with: the discount within segments and
        the label-noise probability. By default those the artifact was learned with
        (``provenance.options``, for the preferences objective), else 1 and 0.
    domain
        Bounds ``{feature: (lo, hi)}`` (None for an open side): the box the exploit search
        explores and partial dependence does not plot beyond. By default the artifact's
        feature domain: the ranges recorded in provenance intersected with each feature's
        natural range (``invariants.domain.feature_domain``).
    exploit_time
        Seconds the exploit search may take (half for the maximum, half for the minimum); 0
        leaves the section out.
    progress
        Called with a line of text as each section starts.

    A ``LazyDataset`` (``symreward.data.lazy``) is audited on a sample of its chunks
    (``SAMPLE_ROWS``); the ``data`` section describes the whole dataset (its digest streamed
    over every row) and, under ``sample``, what was drawn.

    Raises ``FeatureError`` (naming the artifact's file) when a feature of the artifact or of
    a compared one reads an input the dataset does not have, and ``SymrewardError`` on other
    bad input.
    """
    say = progress or (lambda _: None)
    check_options(discount=discount, seed=seed, worst=worst,
                  segment_discount=segment_discount, noise=noise, exploit_time=exploit_time)
    whole, sample = dataset, None
    if not isinstance(dataset, Dataset):
        say(f"sampling chunks of {dataset.n} transitions")
        dataset, sample = dataset.sample(SAMPLE_ROWS, seed)
    for reward in (artifact, *compare):
        _check_fits(reward, dataset)
    if compare and dataset.n < 2:
        raise DataError(f"{dataset.source}: distances need at least 2 transitions; it has "
                        f"{dataset.n}")
    segment_discount, noise = _preference_model(artifact, segment_discount, noise)
    kernels = artifact.compile()
    say("evaluating the reward")
    evaluation = artifact.evaluate(dataset, kernels=kernels)
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "options": {"discount": discount, "seed": seed, "worst": worst,
                    "segment_discount": segment_discount, "noise": noise},
        "artifact": artifact_summary(artifact),
        "data": data_summary(artifact, dataset, evaluation, whole=whole, sample=sample),
    }
    say("distances")
    found = distances(artifact, dataset, compare, discount=discount, seed=seed)
    if found:
        report["distances"] = found
    spread = uncertainty(artifact, dataset, discount=discount, seed=seed)
    if spread is not None:
        report["uncertainty"] = spread
    if domain is None:
        domain = {name: (bound["lo"], bound["hi"], bound["source"])
                  for name, bound in feature_domain(artifact).as_dict().items()}
    if exploit_time > 0:
        say("exploit search")
        report["exploits"] = exploit_search(artifact, domain, dataset,
                                            time_limit=exploit_time, seed=seed).as_dict()
    say("attribution")
    predictions = pair_predictions(evaluation.term_columns, dataset,
                                   discount=segment_discount, noise=noise)
    report["attribution"] = attribute(evaluation.term_columns, evaluation.term_names,
                                      predictions, dataset, worst=worst).as_dict()
    if predictions is not None:
        report["calibration"] = calibration(predictions)
    say("partial dependence")
    report["partial_dependence"] = _dependence(
        artifact, dataset, kernels, seed=seed,
        domain={name: tuple(bounds)[:2] for name, bounds in domain.items()})
    front = artifact.provenance.get("front")
    if isinstance(front, list) and front:
        report["front"] = [dict(entry) for entry in front if isinstance(entry, Mapping)]
    return plain(report)


def check_options(*, discount: float = 0.99, seed: int = 0, worst: int = WORST_PAIRS,
                  segment_discount: float | None = None, noise: float | None = None,
                  exploit_time: float = 10.0) -> None:
    """An ``OptionError`` naming the first of ``audit``'s options with a value it cannot take,
    before any work (the command line calls it before it reads a file)."""
    validation.number("discount", discount, 0.0, 1.0)
    validation.number("exploit_time", exploit_time, 0.0, math.inf)
    validation.whole("seed", seed, 0)
    validation.whole("worst", worst, 0)
    validation.number("segment_discount", segment_discount, 0.0, 1.0, low_open=True,
                      optional=True)
    validation.number("noise", noise, 0.0, 1.0, high_open=True, optional=True)


def _check_fits(artifact: RewardArtifact, dataset: Dataset) -> None:
    """A ``FeatureError`` naming the artifact's file, the feature and the data's file, before
    anything is compiled."""
    features = artifact.features
    try:
        features.check_dimensions(dataset.obs_dim, dataset.act_dim, set(dataset.infos),
                                  data_source=dataset.source)
    except FeatureError as exc:
        raise FeatureError(f"{artifact.source}: {exc}") from None


def _preference_model(artifact: RewardArtifact, discount: float | None, noise: float | None
                      ) -> tuple[float, float]:
    """The segment discount and label noise: as given, else as learned, else 1 and 0."""
    options = artifact.provenance.get("options")
    learned = (options if isinstance(options, Mapping)
               and artifact.provenance.get("objective") == "preferences" else {})
    if discount is None:
        discount = learned.get("discount", 1.0)
    if noise is None:
        noise = learned.get("noise", 0.0)
    return float(discount), float(noise)


def artifact_summary(artifact: RewardArtifact) -> dict[str, Any]:
    """What the audited reward is: its formula, terms, features, invariants and what its
    provenance records about how it was learned."""
    provenance = artifact.provenance
    summary: dict[str, Any] = {
        "name": artifact.name,
        "path": None if artifact.source in _MEMORY else artifact.source,
        "hash": artifact.content_hash(),
        "edited_by_hand": artifact.edited_by_hand,
        "formula": artifact.formula_text(),
        "terms": [{"name": t.name, "expr": t.expr, "locked": t.locked, "note": t.note}
                  for t in artifact.terms],
        "features": artifact.features.to_dict(),
        "invariants": [dict(i) for i in artifact.invariants],
    }
    for key in ("objective", "engine", "seed", "parent", "metrics", "feature_ranges"):
        if key in provenance:
            summary[key] = provenance[key]
    data = provenance.get("data")
    if isinstance(data, Mapping):
        summary["learned_on"] = dict(data)
    return summary


def data_summary(artifact: RewardArtifact, dataset: Dataset, evaluation: Evaluation, *,
                 whole: Dataset | LazyDataset | None = None,
                 sample: Mapping[str, int] | None = None) -> dict[str, Any]:
    """The dataset's size and supervision, whether it is the data the reward was learned from
    (same digest as ``provenance.data.sha256``), and the reward's statistics on it. Where
    ``dataset`` is a ``sample`` of a lazy dataset ``whole``, size, supervision and digest are
    the whole dataset's, the reward's statistics the sample's, and ``sample`` says so."""
    from symreward.data.dataset import dataset_digest

    whole = dataset if whole is None else whole
    digest = dataset_digest(whole) if isinstance(whole, Dataset) else whole.digest()
    learned_on = artifact.provenance.get("data")
    recorded = learned_on.get("sha256") if isinstance(learned_on, Mapping) else None
    rewards = evaluation.rewards
    finite = rewards[np.isfinite(rewards)]
    summary = {
        "source": whole.source,
        "sha256": digest,
        "same_as_training": None if not isinstance(recorded, str) else recorded == digest,
        "transitions": whole.n,
        "episodes": whole.n_episodes,
        "obs_dim": whole.obs_dim,
        "act_dim": whole.act_dim,
        "infos": sorted(whole.infos),
        "preference_pairs": len(whole.preferences) if whole.preferences is not None else 0,
        "ranked_segments": len(whole.rankings) if whole.rankings is not None else 0,
        "expert_transitions": (_count_expert(whole.expert) if whole.expert is not None
                               else None),
        "reward": {"mean": _stat(np.mean, finite), "std": _stat(np.std, finite),
                   "min": _stat(np.min, finite), "max": _stat(np.max, finite),
                   "non_finite": int(rewards.size - finite.size)},
    }
    if sample is not None:
        summary["sample"] = dict(sample)
    return summary


def _count_expert(expert: Any) -> int:
    """Expert transitions, from an array or a lazy dataset's dask array."""
    count = np.count_nonzero(expert)
    return int(count.compute() if hasattr(count, "compute") else count)


def _stat(function: Callable[[np.ndarray], Any], values: np.ndarray) -> float | None:
    """A statistic of the finite rewards; None where there are none, or where it overflows
    (the spread of rewards near the float64 limit)."""
    if not values.size:
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        return float(function(values))


def distances(artifact: RewardArtifact, dataset: Dataset, compare: Sequence[RewardArtifact],
              *, discount: float, seed: int, bootstrap: int = BOOTSTRAP) -> list[dict[str, Any]]:
    """The ``distances`` section: EPIC, DARD and the STARC family, each with a bootstrap
    interval (``audit.distances.compare_rewards``), from ``artifact`` to each of ``compare`` or,
    when none is given, to its default comparisons (its parent when its file is found beside
    it, and its front's runners-up). Where the distances to one reward are undefined (it is
    equivalent to a constant on the data) its entry has no measures and ``error`` says why."""
    if compare:
        names = [artifact.name, *(other.name for other in compare)]
        others: dict[str, Any] = {}
        for other in compare:
            path = None if other.source in _MEMORY else other.source
            # Named by its name where that tells it apart (a re-learned reward keeps the name
            # of the one it came from), else by its file.
            label = (other.name if other.name and names.count(other.name) == 1 else path
                     ) or other.name or "compared reward"
            others[label] = Counterpart(other, source="compare", path=path)
    else:
        others = default_comparisons(artifact)
    if not others:
        return []
    measures = [m for m in DEFAULT_MEASURES if discount < 1 or "value" not in m]
    try:
        found = compare_rewards(artifact, others, dataset, discount=discount,
                                bootstrap=bootstrap, seed=seed, measures=measures,
                                skip_undefined=True)
    except SymrewardError as exc:  # the audited reward itself has no shape to compare
        return [{"against": label, "source": other.source, "path": other.path,
                 "measures": [], "error": str(exc)} for label, other in others.items()]
    return [entry.as_dict() for entry in found]


def uncertainty(artifact: RewardArtifact, dataset: Dataset, *, discount: float, seed: int
                ) -> dict[str, Any] | None:
    """The ``uncertainty`` section: how much the front's members disagree per transition
    (``audit.disagreement.front_uncertainty``); None without comparable runners-up or where
    a member has no shape to compare."""
    try:
        found = front_uncertainty(artifact, dataset, discount=discount, seed=seed)
    except SymrewardError:
        return None
    return None if found is None else found.as_dict()


def _dependence(artifact: RewardArtifact, dataset: Dataset, kernels: RewardKernels, *,
                seed: int, domain: Mapping[str, tuple[float | None, float | None]] | None
                ) -> dict[str, Any]:
    """Partial dependence on each feature the terms read, from the feature values the
    reward's own kernels compute on the data."""
    names = used_features(artifact)
    if not names:
        return {}
    info = info_matrix(dataset.infos, kernels.info_names, dataset.n)
    matrix = kernels.feature_matrix(dataset.observations, dataset.actions,
                                    dataset.next_observations, info)
    order = list(kernels.feature_names)
    values = matrix[:, [order.index(name) for name in names]]
    recorded = artifact.provenance.get("feature_ranges")
    ranges = ({k: tuple(v) for k, v in recorded.items() if isinstance(v, list) and len(v) == 2}
              if isinstance(recorded, Mapping) else {})
    return partial_dependence(artifact, values, seed=seed, recorded=ranges, domain=domain)
