"""symreward: learn reward functions offline as sparse symbolic formulas people can read,
edit and test."""

from symreward._version import __version__
from symreward.artifact import Evaluation, RewardArtifact, Term
from symreward.errors import (
    ArtifactError,
    DataError,
    FeatureError,
    FormulaError,
    SymrewardError,
)
from symreward.features import FeatureSet
from symreward.formula import complexity, parse, to_text

__all__ = [
    "ArtifactError",
    "DataError",
    "Evaluation",
    "FeatureError",
    "FeatureSet",
    "FormulaError",
    "RewardArtifact",
    "SymbolicRewardLearner",
    "SymrewardError",
    "Term",
    "__version__",
    "complexity",
    "learn",
    "parse",
    "to_text",
]


def __getattr__(name: str) -> object:
    # The learner pulls in scikit-learn; commands that only read artifacts should not pay for it.
    if name in ("SymbolicRewardLearner", "learn"):
        from symreward import learner

        return getattr(learner, name)
    raise AttributeError(f"module 'symreward' has no attribute {name!r}")
