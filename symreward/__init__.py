"""symreward: learn reward functions offline as sparse symbolic formulas people can read,
edit and test."""

from importlib import import_module

from symreward._version import __version__

# Public names and the module each lives in, imported on first use: importing symreward (as
# the pytest plugin does at every pytest start) must not pay for sympy, numba or scikit-learn.
_PUBLIC = {
    "ArtifactError": "symreward.errors",
    "DataError": "symreward.errors",
    "Evaluation": "symreward.artifact",
    "FeatureError": "symreward.errors",
    "FeatureSet": "symreward.features",
    "FormulaError": "symreward.errors",
    "RewardArtifact": "symreward.artifact",
    "SymbolicRewardLearner": "symreward.learner",
    "SymrewardError": "symreward.errors",
    "Term": "symreward.artifact",
    "complexity": "symreward.formula",
    "learn": "symreward.learner",
    "parse": "symreward.formula",
    "to_text": "symreward.formula",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str) -> object:
    if name in _PUBLIC:
        value = getattr(import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'symreward' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
