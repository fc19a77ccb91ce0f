"""Invariants of a reward artifact: validation, sound interval proofs, property tests.

An artifact lists ``[[invariants]]`` tables; ``check`` decides each one and reports the strongest
result it reached:

* **proved** — symbolically (sympy's sign assumptions, only for formulas without division, roots
  or logarithms) or by interval arithmetic (``mpmath.iv``, outward-rounded) with branch-and-bound
  over the domain box, within ``time_budget`` seconds per invariant;
* **held** — hypothesis searched the domain (and points near the data, when given) and found no
  counterexample in the reported number of examples;
* **violated** — a concrete counterexample: the feature values (shrunk by hypothesis when it found
  them), the reward and each term's contribution;
* **vacuous** — the invariant's condition (``where``, ``when``, ``better``, ``worse``) is proved
  never to hold on the domain;
* **unknown** — neither a proof nor a test could run (e.g. a condition never met by any sample).

Semantics (all over the *domain*, ``domain.feature_domain``: each feature's range recorded in
provenance as ``feature_ranges``, replaced per invariant by ``domain = {feature = [lo, hi]}``,
and always intersected with the feature's *natural range* — the values its formula can take over
unbounded raw inputs, by interval arithmetic: ``sqrt``, ``abs`` and even powers are >= 0,
``tanh``, ``sin`` and ``cos`` lie in [-1, 1], ``sigmoid`` in [0, 1], ``clip`` in its limits,
comparisons in {0, 1}, ``atan2`` in [-pi, pi]; a feature that nothing bounds is unbounded; a
domain entirely outside the natural range is an error). Each result carries the domain it was
decided on with the source of every bound, and the report prints it. Features are treated as
independent coordinates of that box, so the domain may hold feature combinations no raw
observation produces (``x`` and ``x**2`` each in range, but not ``x = 2`` with ``x**2 = 0``):
proofs are conservative for it, and a counterexample may be such a combination, though every
feature's value in it is one the feature can take. Proofs are about the formula over the real
numbers; the float64 kernels may differ by rounding, so a tested value counts against a
non-strict bound only when it passes it by more than 1e-9 relative.

* ``bounded`` (``lo``, ``hi``, either optional): ``lo <= reward <= hi`` at every state of the
  domain. A state where the reward is undefined (NaN: log of a negative number, 0/0, ...)
  violates it.
* ``sign`` (``is`` = negative | positive | nonpositive | nonnegative, ``when`` optional):
  the reward has that sign wherever ``when`` holds (undefined rewards violate it).
* ``prefers`` (``better``, ``worse``): every state meeting ``better`` has a reward strictly above
  every state meeting ``worse``: ``min reward over better > max reward over worse``.
* ``decreasing`` / ``increasing`` (``of``, ``where`` optional): ``of`` must be a continuous
  formula of exactly one feature ``f`` (no comparisons, ``where`` or ``atan2``). Decreasing
  means: for any two states that differ only in ``f``, such that every state on the segment
  between them lies in the domain and meets ``where``, and ``of`` is strictly monotone along the
  segment, the state with the larger ``of`` has a reward no larger (increasing: no smaller).
  This is the "moving f so that of increases never increases the reward" reading: it is local to
  each branch of ``of`` (for ``of = abs(theta)`` the two sides of 0 are compared separately).
  Proof: when the reward is continuous in ``f`` (no comparison, ``where`` condition or ``atan2``
  involving ``f``), it is piecewise analytic along ``f``, so the claim is equivalent to
  ``d reward/df * d of/df <= 0`` (``>= 0``) wherever ``where`` may hold, and the interval proof
  bounds that product. Otherwise only property tests run. Pairs with an undefined reward are
  skipped.
* ``independent`` (``of`` = a feature name): changing that feature alone never changes the reward.
  Proved when the formula does not mention the feature; otherwise tested (exact equality up to
  1e-9 relative).

Conditions are formulas, true where non-zero (NaN counts as true, as in the kernels).

Limits of the proofs: interval bounds overestimate when a feature appears several times (the
dependency problem), so a bound that is tight along a curve (``x**2 - 2*x*y + y**2 >= 0``) runs
out of budget and is tested instead; so does a strict sign that becomes tight at an open
boundary (``x > 0`` where ``x > 0``). Counterexamples found by branch-and-bound are simplified
(features moved to 0, integers or fewer decimals while still violating) rather than shrunk by
hypothesis.

The package: ``spec`` (a table read into an ``Invariant``), ``rules`` (one class per rule and the
registry ``RULES``; ``monotone`` holds the two monotone rules), ``checker`` (``parse_invariants``,
``check``), ``domain`` (natural ranges, ``feature_domain``), ``intervals``,
``branch_and_bound``, ``points``, ``sampling`` and ``report``.
"""

from symreward.errors import InvariantError
from symreward.invariants.checker import check, data_features, parse_invariants
from symreward.invariants.domain import FeatureDomain, feature_domain, natural_ranges
from symreward.invariants.intervals import interval_function
from symreward.invariants.points import point_function
from symreward.invariants.report import STATUSES, InvariantResult, format_result
from symreward.invariants.rules import RULES, SIGNS
from symreward.invariants.sampling import WIDE, state_strategy
from symreward.invariants.spec import Invariant

__all__ = ["RULES", "SIGNS", "STATUSES", "WIDE", "FeatureDomain", "Invariant", "InvariantError",
           "InvariantResult", "check", "data_features", "feature_domain", "format_result",
           "interval_function", "natural_ranges", "parse_invariants", "point_function",
           "state_strategy"]
