"""symreward: learn reward functions offline as sparse symbolic formulas people can read,
edit and test."""

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

__version__ = "0.1.0"

__all__ = [
    "ArtifactError",
    "DataError",
    "Evaluation",
    "FeatureError",
    "FeatureSet",
    "FormulaError",
    "RewardArtifact",
    "SymrewardError",
    "Term",
    "__version__",
    "complexity",
    "parse",
    "to_text",
]
