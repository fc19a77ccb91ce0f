"""``harden``: re-learn a reward with what is known about it as constraints, then check it.

``harden(artifact, dataset, findings)`` re-learns the artifact's reward on ``dataset`` with the
options it was learned with (its provenance: objective, engine, seed, library, ...;
``learner_from``), keeping its locked terms as written, with its ``[[invariants]]`` and the
accepted findings as constraints of the fit (``symreward.constraints``). It then checks the
result's invariants and evaluates each accepted finding on it. Where an invariant is still
violated (by a term whose shape the interval proofs could not decide), its counterexample
becomes one more constraint (``findings_from_check``) and the reward is learned again, for at
most ``rounds`` fits in all: the counterexample-guided loop of the flywheel, run for the
invariants a person already stated.

The result says whether everything holds (``passed``) and, where not, which constraint could
not be met (``unmet``). The hardened artifact is returned either way: it is the best fit under
the constraints it could meet. Its lineage records the change "harden" from the artifact's
content hash, with the number of accepted findings, invariants, counterexamples added and rounds
(``provenance.hardened_history``); its provenance a ``harden`` table with the same and the
findings' ids.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from symreward import validation
from symreward.artifact import RewardArtifact
from symreward.constraints import MARGIN, Constraints
from symreward.data import Dataset
from symreward.errors import OptionError, SymrewardError
from symreward.findings import Finding, findings_from_check
from symreward.invariants import InvariantResult, check
from symreward.invariants.points import TOLERANCE, Reward
from symreward.learner import SymbolicRewardLearner
from symreward.provenance import hardened_history
from symreward.search.library import TermLibrary

# Options recorded in provenance.options that the learner takes under the same name.
_RECORDED = ("max_terms", "n_folds", "selection", "noise", "discount", "rounding_tolerance",
             "class_prior", "max_unlabeled")
_LIBRARY = {"powers": "powers", "abs": "absolute", "products": "products", "hinges": "hinges",
            "indicators": "indicators", "knot_quantiles": "knot_quantiles",
            "user_terms": "user_terms"}


@dataclass
class HardenResult:
    """The hardened artifact, the check of its invariants, and what it does not meet."""

    artifact: RewardArtifact
    results: list[InvariantResult]
    unmet: list[str]
    accepted: list[Finding]
    invariants: int
    rounds: int
    counterexamples: list[Finding] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """Every invariant holds (none violated) and every accepted finding is met."""
        return not self.unmet


def learner_from(artifact: RewardArtifact, **overrides: Any) -> SymbolicRewardLearner:
    """A learner with the options ``artifact`` was learned with, as its provenance records
    them (objective, engine, seed, ``options``: the learner's defaults where one is not
    recorded), named as the artifact, with ``overrides`` on top. Raises a
    ``SymrewardError`` naming the artifact where a recorded option is not valid."""
    provenance = artifact.provenance
    options = provenance.get("options")
    options = options if isinstance(options, dict) else {}
    params: dict[str, Any] = {key: provenance[key] for key in ("objective", "engine", "seed")
                              if key in provenance}
    params.update({key: options[key] for key in _RECORDED if key in options})
    search = options.get("search")
    if isinstance(search, dict):
        params.update({key: search[key] for key in ("population", "generations",
                                                    "time_limit") if key in search})
    library = options.get("library")
    where = f"{artifact.source}: provenance.options"
    if isinstance(library, dict):
        try:
            params["library"] = TermLibrary(**{_LIBRARY[k]: tuple(v) if isinstance(v, list)
                                               else v for k, v in library.items()
                                               if k in _LIBRARY})
        except TypeError as exc:
            raise SymrewardError(f"{where}.library: {exc}") from None
    params["name"] = artifact.name or None
    params.update(overrides)
    learner = SymbolicRewardLearner(**params)
    try:
        learner.check_options()
    except OptionError as exc:
        raise SymrewardError(f"{where}: {exc}") from None
    return learner


def harden(artifact: RewardArtifact, dataset: Dataset, findings: Sequence[Finding] = (), *,
           rounds: int = 3, finding_weight: float | None = None, margin: float = MARGIN,
           time_budget: float = 2.0, examples: int = 200,
           progress: Callable[[str], None] | None = None) -> HardenResult:
    """Re-learn ``artifact`` on ``dataset`` with its invariants and the accepted ``findings``
    as constraints, at most ``rounds`` fits (module docstring); ``finding_weight`` and
    ``margin`` as in ``Constraints``; ``time_budget`` and ``examples`` as in ``check``;
    ``progress`` as the learner's."""
    validation.whole("rounds", rounds, 1)
    validation.whole("examples", examples, 1)
    validation.number("time_budget", time_budget, 0.0)
    accepted = [f for f in findings if f.accept]
    stated = Constraints(findings=accepted, finding_weight=finding_weight, margin=margin,
                         source=artifact.source)
    stated.check()
    added: list[Finding] = []
    for round_ in range(1, rounds + 1):
        learner = learner_from(artifact, progress=progress,
                               constraints=replace(stated, findings=[*accepted, *added]))
        hardened = learner.fit(dataset, artifact.features, base=artifact).artifact_
        results = check(hardened, dataset, time_budget=time_budget, examples=examples)
        unmet = unmet_constraints(hardened, results, accepted)
        fresh = [replace(f, id=f"round{round_}-{f.id}", accept=True,
                         description=f"(added by harden) {f.description}")
                 for f in findings_from_check(hardened, results)]
        if not unmet or not fresh or round_ == rounds:
            break
        if progress is not None:
            progress(f"harden: round {round_} leaves {len(unmet)} unmet; adding "
                     f"{len(fresh)} counterexample{'s' * (len(fresh) != 1)} as constraints")
        added += fresh
    invariants = len(hardened.invariants)
    hardened.provenance["history"] = hardened_history(
        artifact, findings=len(accepted), invariants=invariants, counterexamples=len(added),
        rounds=round_)
    hardened.provenance["harden"] = {
        "from": artifact.content_hash(), "findings_accepted": [f.id for f in accepted],
        "invariants": invariants, "counterexamples": len(added), "rounds": round_,
        "passed": not unmet, "unmet": unmet}
    return HardenResult(hardened, results, unmet, accepted, invariants, round_, added)


def unmet_constraints(artifact: RewardArtifact, results: Sequence[InvariantResult],
                      findings: Sequence[Finding]) -> list[str]:
    """What ``artifact`` does not meet: its violated invariants (``results`` of its
    check), then the ``findings`` whose want does not hold on its reward."""
    unmet = [f"invariant [{r.index}] {r.description}: violated"
             for r in results if r.status == "violated"]
    reward = Reward(artifact)
    for finding in findings:
        here = reward.at(finding.state)
        if finding.want == "below":
            there = reward.at(finding.other or {})
            met = (here < there if finding.strict
                   else here <= there + TOLERANCE * (1 + abs(here) + abs(there)))
            if not met:
                unmet.append(f"finding {finding.id}: R(state) = {here:.6g} is not below "
                             f"R(other) = {there:.6g}"
                             + ("" if finding.strict else " or equal"))
            continue
        assert finding.bound is not None
        slack = TOLERANCE * (1 + abs(finding.bound))
        met = (here <= finding.bound + slack if finding.want == "at_most"
               else here >= finding.bound - slack)
        if not met:
            word = "at most" if finding.want == "at_most" else "at least"
            unmet.append(f"finding {finding.id}: R(state) = {here:.6g} is not {word} "
                         f"{finding.bound:g}")
    return unmet
