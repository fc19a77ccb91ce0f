"""Audits of reward artifacts.

* ``epic``: the EPIC distance (``epic_distance``, ``canonicalize``, ``pearson_distance``).
* ``distances``: DARD and the STARC family beside EPIC, each with a bootstrap confidence
  interval (``compare_rewards``, ``dard_distance``, ``starc_distance``); ``canonical``,
  ``transitions`` and ``bootstrap`` hold their parts.
* ``comparisons``: what an artifact is compared with by default (its parent, its front's
  runners-up); ``disagreement``: the spread among a front's members per transition.
* ``exploit``: the certified maximum and minimum of a reward over its domain, and how they
  relate to the data (``exploit_search``); ``extrapolation`` flags terms that extrapolate.
* ``attribution``, ``dependence``, ``figures``, ``report`` and ``run``: the audit report
  (``run.audit``) and its pages.

The public names of the modules are re-exported here, so ``from symreward.audit import
epic_distance`` keeps working."""

from symreward.audit.comparisons import (
    FrontMember,
    default_comparisons,
    find_parent,
    front_members,
    runners_up,
)
from symreward.audit.disagreement import Uncertainty, disagreement, front_uncertainty
from symreward.audit.distances import (
    DEFAULT_MEASURES,
    MEASURES,
    Counterpart,
    Distance,
    MeasureResult,
    compare_rewards,
    dard_distance,
    starc_distance,
)
from symreward.audit.epic import RewardFn, canonicalize, epic_distance, pearson_distance
from symreward.audit.exploit import ExploitReport, exploit_search

__all__ = [
    "DEFAULT_MEASURES",
    "MEASURES",
    "Counterpart",
    "Distance",
    "ExploitReport",
    "FrontMember",
    "MeasureResult",
    "RewardFn",
    "Uncertainty",
    "canonicalize",
    "compare_rewards",
    "dard_distance",
    "default_comparisons",
    "disagreement",
    "epic_distance",
    "exploit_search",
    "find_parent",
    "front_members",
    "front_uncertainty",
    "pearson_distance",
    "runners_up",
    "starc_distance",
]
