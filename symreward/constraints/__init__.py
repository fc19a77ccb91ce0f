"""Constraints of a fit: what a person states the learned reward must respect (invariants,
accepted findings) turned into bounds and rows of the fit's linear problems.

``spec`` (``Constraints``, the option; ``read_constraints``, the file ``learn --constraints``
reads), ``shapes`` (the sign of each term's weight an invariant requires, by interval proofs),
``bound`` (the constraints of one fit over its candidate terms, attached to its problems).
"""

from symreward.constraints.bound import (
    CandidateConstraints,
    FitConstraints,
    effective_support,
    fit_constraints,
    stated_invariants,
)
from symreward.constraints.shapes import SHAPE_BOXES, ShapeRules
from symreward.constraints.spec import MARGIN, Constraints, read_constraints, read_invariants

__all__ = ["MARGIN", "SHAPE_BOXES", "CandidateConstraints", "Constraints", "FitConstraints",
           "ShapeRules", "effective_support", "fit_constraints", "read_constraints",
           "read_invariants", "stated_invariants"]
