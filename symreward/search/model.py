"""A fitted linear model over the term library's candidates: its terms and its formula."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sympy

from symreward.objectives import fitting
from symreward.search.library import Candidate

__all__ = ["Model", "coefficient"]


def coefficient(value: float) -> sympy.Expr:
    """A weight as a formula writes it: an integer where it is one."""
    return sympy.Integer(int(value)) if float(value).is_integer() else sympy.Float(value)


@dataclass
class Model:
    """A fitted linear model over library candidates."""

    fit: fitting.LinearFit
    candidates: list[Candidate]

    def terms(self) -> list[tuple[Candidate, float]]:
        return [(self.candidates[k], float(c)) for k, c in zip(self.fit.support, self.fit.coef,
                                                              strict=True)]

    def expression(self, coefficients: Sequence[float] | None = None) -> sympy.Expr:
        coefficients = self.fit.coef if coefficients is None else coefficients
        parts = [coefficient(c) * cand.expr for (cand, _), c in zip(self.terms(), coefficients,
                                                                    strict=True)]
        return sympy.Add(*parts)
