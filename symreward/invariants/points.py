"""Formulas evaluated at one state with the kernels' float64 semantics: the property tests'
values, the counterexamples' rewards and contributions, the candidates branch-and-bound tries."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import sympy
from sympy.printing.numpy import NumPyPrinter

from symreward import formula

if TYPE_CHECKING:
    from symreward.artifact import RewardArtifact

# A tested value counts against a non-strict bound only when it passes it by more than this,
# relative: proofs are about real numbers, the kernels round.
TOLERANCE = 1e-9


class _DoublePrinter(NumPyPrinter):
    """lambdify's printer with every number written as the double it is (``repr``): the default
    writes 15 significant digits, another double than the one the kernels use."""

    def _print_Float(self, expr: sympy.Float) -> str:
        return repr(float(expr))


def point_function(expr: sympy.Expr, names: Sequence[str]) -> Callable[..., float]:
    """``f(*feature_values) -> float`` with the kernels' semantics (NaN compares false, ...)."""
    symbols = [formula.symbol(n) for n in names]
    printer = _DoublePrinter({"fully_qualified_modules": False, "inline": True,
                              "allow_unknown_functions": True,
                              "user_functions": {name: name for name in formula.NUMPY_FUNCTIONS}})
    function = sympy.lambdify(symbols, expr, modules=[formula.NUMPY_FUNCTIONS, "numpy"],
                              printer=printer)

    def call(*values: float) -> float:
        # numpy scalars, so 0.0 ** -1 is inf as in the kernels (Python floats would raise)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(function(*(np.float64(v) for v in values)))
    return call


class Reward:
    """The reward of an artifact, and each of its terms, at a state of its features."""

    def __init__(self, artifact: RewardArtifact):
        self.names = list(artifact.features.names)
        self.term_names = artifact.term_names
        self.terms = artifact.term_exprs()
        self.expr = sympy.Add(*self.terms)
        self.total = point_function(self.expr, self.names)
        self.parts = [point_function(t, self.names) for t in self.terms]

    def at(self, state: Mapping[str, float]) -> float:
        return self.total(*(state[n] for n in self.names))

    def contributions(self, state: Mapping[str, float]) -> dict[str, float]:
        values = [state[n] for n in self.names]
        return {name: part(*values) for name, part in zip(self.term_names, self.parts,
                                                          strict=True)}
