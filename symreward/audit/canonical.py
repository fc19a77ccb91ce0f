"""Canonical rewards on one draw of evaluated transitions, shared by every reward compared.

Three canonicalisations, each removing potential shaping ``γΦ(s') − Φ(s)`` and an additive
constant exactly (the same samples serve every term, so the shaping contributions cancel term
by term, leaving rounding only), and each linear in the reward, so a positive scale carries
through unchanged:

``"epic"``
    EPIC's (Gleave et al. 2020), from coverage samples of actions and next states; see
    ``symreward.audit.epic.canonicalize``. Its constant term ``γ E[R(S, A, S')]`` averages over
    the drawn next states where ``epic_distance`` draws states of its own: with separate draws a
    shaping term leaves the constant ``γ(mean Φ(S) − mean Φ(S'))`` behind, which the Pearson
    distance ignores but a STARC norm does not. The canonical rewards differ from
    ``epic_distance``'s by that constant only, so EPIC here is ``epic_distance``'s up to
    rounding.

``"dard"``
    DARD's (Wulfe et al. 2022, eq. 4), with the data as the transition model
    (``symreward.audit.transitions``)::

        C(R)(s,a,s') = R(s,a,s') + E[γR(s',A,S'') − R(s,A,S') − γR(S',A,S'')]

    ``(A, S')`` drawn from the recorded successors of s, ``(A, S'')`` from those of s'. The
    first two expectations are per state (``G(s')`` and ``G(s)``), the last pairs the j-th
    successor of s with the j-th of s'. Every reward is evaluated only where the data can go:
    ``(s, A, S')`` and ``(s', A, S'')`` are recorded transitions with the first state moved to a
    neighbour, and ``S' → S''`` a step between successors of consecutive states.

``"value"``
    STARC's value-adjusted levelling (Skalse et al. 2024)::

        C(R)(s,a,s') = E_{S'~τ(s,a)}[R(s,a,S') − V^π(s) + γV^π(S')]

    with τ and π from the same data: π picks one of the k recorded successors of a state
    uniformly (the behaviour policy near it, with its recorded outcome), and ``V^π`` solves the
    Bellman equation of that finite chain (``TransitionGraph.values``); the expectation over
    ``S'`` is the one recorded next state. ``V^π`` of ``R + γΦ(s') − Φ(s)`` is ``V^π − Φ``
    exactly, so the shaping cancels. Needs ``discount < 1``.

The samples are drawn from ``numpy.random.default_rng(seed)``: EPIC's first, exactly as
``epic_distance`` draws them (the same evaluated transitions and coverage samples for the same
seed), then the pool of rows searched for neighbours.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from symreward.audit.epic import (
    DEFAULT_BATCH_BYTES,
    RewardFn,
    _call,
    _canonicalize,
    _check_discount,
    _positive_int,
    epic_inputs,
    is_constant,
)
from symreward.audit.transitions import DEFAULT_NEIGHBOURS, DEFAULT_POOL, TransitionGraph
from symreward.data.dataset import Dataset
from symreward.errors import SymrewardError

__all__ = ["CANONICALIZATIONS", "CanonicalReward", "Canonicalizer"]

CANONICALIZATIONS = ("epic", "dard", "value")


@dataclass(frozen=True)
class CanonicalReward:
    """A reward's canonical values on the evaluated transitions, and the largest |reward|
    evaluated while computing them (the scale of its rounding noise)."""

    values: np.ndarray
    scale: float

    @property
    def constant(self) -> bool:
        """Equivalent to a constant reward: no spread beyond canonicalisation's rounding."""
        return is_constant(self.values, self.scale)


class Canonicalizer:
    """Canonicalises rewards on one draw of transitions of ``dataset``.

    Parameters
    ----------
    dataset : Dataset
        Where every distribution comes from; pass held-out data to audit a learned reward.
    discount : float
        γ in [0, 1] (below 1 for ``"value"``).
    canonicalizations : sequence of {"epic", "dard", "value"}
        Which to compute; the transition graph is built only for ``"dard"`` and ``"value"``.
    n_eval : int, default=4096
        Evaluated transitions, drawn without replacement (all of them in smaller data).
    n_mean : int, default=1024
        EPIC's coverage samples of each of S, A and S'.
    neighbours : int, default=16
        Recorded successors per state (``symreward.audit.transitions``).
    n_pool : int, default=16384
        Rows searched for neighbours.
    seed : int, default=0
    max_batch_bytes : int
        Bound on the inputs built for one call of a reward.

    Attributes
    ----------
    rows : ndarray of int
        The evaluated transitions (dataset rows, sorted).
    """

    def __init__(self, dataset: Dataset, *, discount: float,
                 canonicalizations: Sequence[str] = CANONICALIZATIONS, n_eval: int = 4096,
                 n_mean: int = 1024, neighbours: int = DEFAULT_NEIGHBOURS,
                 n_pool: int = DEFAULT_POOL, seed: int = 0,
                 max_batch_bytes: int = DEFAULT_BATCH_BYTES):
        _check_discount(discount)
        wanted = tuple(dict.fromkeys(canonicalizations))
        unknown = [c for c in wanted if c not in CANONICALIZATIONS]
        if unknown or not wanted:
            raise SymrewardError(f"unknown canonicalisation(s) {unknown or '(none given)'}; "
                                 f"choose from {', '.join(CANONICALIZATIONS)}")
        if "value" in wanted and not discount < 1.0:
            raise SymrewardError(
                f"the value-adjusted canonicalisation needs discount < 1 (the values of an "
                f"undiscounted chain diverge); got {discount!r}")
        n_eval = _positive_int("n_eval", n_eval)
        n_mean = _positive_int("n_mean", n_mean)
        neighbours = _positive_int("neighbours", neighbours)
        n_pool = _positive_int("n_pool", n_pool)
        if n_eval < 2:
            raise SymrewardError(f"n_eval must be at least 2 to compute a distance; got {n_eval}")
        if dataset.n < 2:
            raise SymrewardError(f"{dataset.source}: a distance needs at least 2 transitions; "
                                 f"got {dataset.n}")
        self.dataset = dataset
        self.discount = float(discount)
        self.canonicalizations = wanted
        self.max_batch_bytes = max_batch_bytes
        rng = np.random.default_rng(seed)
        self.rows, self._epic_inputs = epic_inputs(dataset, n_eval=n_eval, n_mean=n_mean,
                                                   rng=rng)
        local = [c for c in wanted if c in ("dard", "value")]
        self.graph = (TransitionGraph(dataset, self.rows, neighbours=neighbours, n_pool=n_pool,
                                      closed="value" in local, rng=rng) if local else None)

    @property
    def transitions(self) -> int:
        return len(self.rows)

    def __call__(self, reward: RewardFn, name: str = "reward",
                 canonicalizations: Sequence[str] | None = None) -> dict[str, CanonicalReward]:
        """The canonical reward of ``reward`` under each canonicalisation asked for (all of the
        constructor's, or those of them in ``canonicalizations``). ``name`` names the reward in
        error messages."""
        wanted = (self.canonicalizations if canonicalizations is None
                  else tuple(dict.fromkeys(canonicalizations)))
        missing = [c for c in wanted if c not in self.canonicalizations]
        if missing:
            raise SymrewardError(f"this canonicalizer was built for "
                                 f"{', '.join(self.canonicalizations)}, not {', '.join(missing)}")
        out: dict[str, CanonicalReward] = {}
        if "epic" in wanted:
            inputs = {**self._epic_inputs, "coverage_obs": self._epic_inputs["coverage_next_obs"]}
            values, scale = _canonicalize(reward, name, **inputs, discount=self.discount,
                                          max_batch_bytes=self.max_batch_bytes)
            out["epic"] = CanonicalReward(values, scale)
        if self.graph is None or not {"dard", "value"} & set(wanted):
            return out
        inputs = self._epic_inputs
        raw = _call(reward, name, inputs["obs"], inputs["act"], inputs["next_obs"],
                    inputs["infos"])
        graph, gamma = self.graph, self.discount
        means, scale = graph.state_means(reward, name, self.max_batch_bytes)
        scale = max(scale, float(np.max(np.abs(raw))))
        if "dard" in wanted:
            successors, successor_scale = graph.successor_means(reward, name,
                                                                self.max_batch_bytes)
            values = (raw + gamma * means[graph.next_node] - means[graph.first_node]
                      - gamma * successors)
            out["dard"] = CanonicalReward(values, max(scale, successor_scale))
        if "value" in wanted:
            level, rest = graph.values(means, gamma)
            values = (raw - level) - rest[graph.first_node] + gamma * rest[graph.next_node]
            # The solved part of V is a sum of discounted rewards: its rounding is relative to
            # its own size, which can exceed |R| by up to 1 / (1 − γ).
            out["value"] = CanonicalReward(values, max(scale, float(np.max(np.abs(rest)))))
        return {c: out[c] for c in wanted}
