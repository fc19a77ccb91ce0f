"""Audits of reward artifacts: distances between rewards (``epic``), the exploit search
(``exploit``), and more to come.

The public names of the modules are re-exported here, so ``from symreward.audit import
epic_distance`` keeps working."""

from symreward.audit.epic import RewardFn, canonicalize, epic_distance, pearson_distance
from symreward.audit.exploit import ExploitReport, exploit_search

__all__ = ["ExploitReport", "RewardFn", "canonicalize", "epic_distance", "exploit_search",
           "pearson_distance"]
