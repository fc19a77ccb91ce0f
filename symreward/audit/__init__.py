"""Audits of reward artifacts: distances between rewards (``epic``), and more to come.

The public names of the modules are re-exported here, so ``from symreward.audit import
epic_distance`` keeps working."""

from symreward.audit.epic import RewardFn, canonicalize, epic_distance, pearson_distance

__all__ = ["RewardFn", "canonicalize", "epic_distance", "pearson_distance"]
