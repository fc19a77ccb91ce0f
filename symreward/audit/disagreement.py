"""Disagreement among the members of a Pareto front, as a per-transition uncertainty signal.

The front holds rewards the data support almost equally well. Where they agree, the data pin
the reward down; where they disagree, the chosen reward is one guess among several, and a
person (or a new label) should look there first.

Before members are compared, each is canonicalised (EPIC's by default; ``"dard"``,
``"value"`` or ``"none"`` on request) and then standardised to mean 0 and standard deviation 1
over the evaluated transitions:

* canonicalisation removes potential shaping, by which two members can differ (a term on the
  state before the step against the same term after it) while incentivising the same behaviour;
* standardising removes what canonicalisation keeps but no member determines: the offset (never
  identified by comparisons) and the scale (each member's weights are fitted separately, and a
  preference loss sets the scale only through its temperature). What is left is the shape.

The spread at a transition is the standard deviation across members of their standardised
canonical rewards, in units of a reward's own standard deviation over the data: 0.5 means the
members disagree there by half of what the reward varies over the data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from symreward.artifact import RewardArtifact
from symreward.audit.canonical import CANONICALIZATIONS, Canonicalizer
from symreward.audit.comparisons import DEFAULT_RUNNERS_UP, runners_up
from symreward.audit.distances import RewardLike, _batch_reward, single_threaded_blas
from symreward.audit.epic import _call, is_constant
from symreward.audit.transitions import DEFAULT_NEIGHBOURS, DEFAULT_POOL
from symreward.data.dataset import Dataset
from symreward.errors import SymrewardError

__all__ = ["Uncertainty", "disagreement", "front_uncertainty"]


@dataclass(frozen=True)
class Uncertainty:
    """The spread of the members' standardised canonical rewards over the evaluated
    transitions: its mean, 90th percentile and maximum, and the transitions (dataset rows) where
    it is largest, largest first."""

    members: int
    mean: float
    p90: float
    max: float
    most_uncertain: tuple[tuple[int, float], ...]
    canonicalization: str
    transitions: int

    def as_dict(self) -> dict[str, Any]:
        return {"members": self.members, "mean": self.mean, "p90": self.p90, "max": self.max,
                "most_uncertain": [{"index": i, "spread": s} for i, s in self.most_uncertain],
                "canonicalization": self.canonicalization, "transitions": self.transitions}


@single_threaded_blas
def disagreement(members: Sequence[RewardLike], dataset: Dataset, *,
                 canonicalization: str = "epic", discount: float = 0.99, top: int = 10,
                 n_eval: int = 4096, n_mean: int = 1024, neighbours: int = DEFAULT_NEIGHBOURS,
                 n_pool: int = DEFAULT_POOL, seed: int = 0) -> Uncertainty:
    """How much ``members`` disagree at each evaluated transition of ``dataset``.

    The transitions are drawn as ``compare_rewards`` draws them (the same rows for the same
    ``seed`` and ``n_eval``); ``top`` transitions are listed. Raises ``SymrewardError`` for
    fewer than two members, or a member equivalent to a constant (it has no shape to compare:
    drop it, or compare it with ``compare_rewards``, which says so too).
    """
    if canonicalization not in (*CANONICALIZATIONS, "none"):
        raise SymrewardError(f"unknown canonicalisation {canonicalization!r}; choose from "
                             f"{', '.join((*CANONICALIZATIONS, 'none'))}")
    if len(members) < 2:
        raise SymrewardError(f"disagreement needs at least 2 members; got {len(members)}")
    if isinstance(top, bool) or not isinstance(top, int) or top < 0:
        raise SymrewardError(f"top must be a non-negative integer; got {top!r}")
    # With "none" the canonicalizer only draws the rows (as compare_rewards does) and is never
    # called.
    canonicalizer = Canonicalizer(
        dataset, discount=discount,
        canonicalizations=("epic",) if canonicalization == "none" else (canonicalization,),
        n_eval=n_eval, n_mean=1 if canonicalization == "none" else n_mean,
        neighbours=neighbours, n_pool=n_pool, seed=seed)
    rows = canonicalizer.rows
    standardised = []
    for k, member in enumerate(members):
        reward, name = _batch_reward(member, dataset), f"member {k}"
        if canonicalization == "none":
            values = _call(reward, name, dataset.observations[rows], dataset.actions[rows],
                           dataset.next_observations[rows],
                           {key: col[rows] for key, col in dataset.infos.items()})
            scale = float(np.max(np.abs(values)))
        else:
            canonical = canonicalizer(reward, name)[canonicalization]
            values, scale = canonical.values, canonical.scale
        if is_constant(values, scale):
            raise SymrewardError(f"{name} is equivalent to a constant on the evaluated "
                                 "transitions, so it has no shape to compare with the others")
        centred = values - values.mean()
        standardised.append(centred / centred.std())
    spread = np.stack(standardised).std(axis=0)
    order = np.argsort(-spread, kind="stable")[:top]
    return Uncertainty(
        members=len(members), mean=float(spread.mean()),
        p90=float(np.quantile(spread, 0.9)), max=float(spread.max()),
        most_uncertain=tuple((int(rows[i]), float(spread[i])) for i in order),
        canonicalization=canonicalization, transitions=len(rows))


def front_uncertainty(artifact: RewardArtifact, dataset: Dataset, *,
                      limit: int | None = DEFAULT_RUNNERS_UP, **options: Any
                      ) -> Uncertainty | None:
    """``disagreement`` among ``artifact`` and the runners-up of its recorded front
    (``symreward.audit.comparisons.runners_up``, at most ``limit``); None when the front has
    no comparable runner-up. ``options`` go to ``disagreement``."""
    others = runners_up(artifact, limit)
    if not others:
        return None
    members: list[RewardLike] = [artifact, *(m.artifact for m in others if m.artifact)]
    return disagreement(members, dataset, **options)
