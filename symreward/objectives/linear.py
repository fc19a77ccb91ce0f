"""A linear problem: an objective's loss restricted to rewards linear in K columns.

``Objective.problem(columns, offset, units)`` reduces the supervision to rows (pairs, ranked
pairs, transitions) whose scores are ``X @ coef + intercept + offset``; every fit of weights
(``fitting``), the search engines and the rounding of weights work on such a problem. A
problem with other rows, columns or offset is derived from one (``rows``, ``with_columns``,
``stacked``, ``with_fixed``, ``dataclasses.replace``), never rebuilt field by field.

A problem may carry ``LinearConstraints``: hard bounds on its weights and intercept and linear
inequalities on them (shape constraints from invariants, accepted findings); ``fitting.fit``
honours them. They are not rows of the loss: taking rows keeps them, taking columns takes theirs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from scipy.special import expit, log_expit, xlogy

# A constraint counts as met when it holds to this (relative) tolerance: solvers meet linear
# constraints to rounding, not to the last bit.
FEASIBILITY_TOLERANCE = 1e-9


@dataclass(frozen=True)
class LinearConstraints:
    """Hard constraints on the weights ``coef`` and ``intercept`` of a linear problem:
    ``lower <= coef <= upper``, ``intercept_lower <= intercept <= intercept_upper``, and
    ``rows @ coef + intercept_rows * intercept <= limits``, one row per constraint, named by
    ``labels`` (so a fit can say which it could not meet)."""

    lower: np.ndarray
    upper: np.ndarray
    rows: np.ndarray
    intercept_rows: np.ndarray
    limits: np.ndarray
    labels: tuple[str, ...] = ()
    intercept_lower: float = -math.inf
    intercept_upper: float = math.inf

    @classmethod
    def bounds_only(cls, lower: np.ndarray, upper: np.ndarray) -> LinearConstraints:
        """Bounds on the weights and no rows."""
        k = len(lower)
        return cls(np.asarray(lower, float), np.asarray(upper, float), np.zeros((0, k)),
                   np.zeros(0), np.zeros(0))

    @property
    def n_rows(self) -> int:
        return int(self.rows.shape[0])

    def with_columns(self, support: np.ndarray) -> LinearConstraints:
        """The same constraints on the columns ``support`` only (the others' weights 0)."""
        return replace(self, lower=self.lower[support], upper=self.upper[support],
                       rows=self.rows[:, support])

    def with_fixed(self, index: np.ndarray, values: np.ndarray, intercept: float
                   ) -> LinearConstraints:
        """The constraints on the other columns once the columns ``index`` are fixed at
        ``values`` and the intercept at ``intercept`` (which is then no longer a variable)."""
        rest = np.setdiff1d(np.arange(len(self.lower)), index)
        moved = self.rows[:, index] @ np.asarray(values, float) + self.intercept_rows * intercept
        return replace(self, lower=self.lower[rest], upper=self.upper[rest],
                       rows=self.rows[:, rest], limits=self.limits - moved,
                       intercept_rows=np.zeros(self.n_rows), intercept_lower=-math.inf,
                       intercept_upper=math.inf)

    def excess(self, coef: np.ndarray, intercept: float = 0.0) -> np.ndarray:
        """How far each row's left side is above its limit (<= 0 where the row is met)."""
        return self.rows @ np.asarray(coef, float) + self.intercept_rows * intercept - self.limits

    def unmet(self, coef: np.ndarray, intercept: float = 0.0) -> list[str]:
        """What ``coef`` and ``intercept`` do not meet: the labels of broken rows, then
        ``"bounds on weights"`` and ``"bounds on the intercept"`` where one is outside its
        bounds."""
        coef = np.asarray(coef, float)
        slack = FEASIBILITY_TOLERANCE * (1 + np.abs(self.limits))
        broken = [self.labels[i] if i < len(self.labels) else f"row {i}"
                  for i in np.flatnonzero(self.excess(coef, intercept) > slack)]
        if np.any(coef < self.lower) or np.any(coef > self.upper):
            broken.append("bounds on weights")
        if not self.intercept_lower <= intercept <= self.intercept_upper:
            broken.append("bounds on the intercept")
        return broken

    def satisfied(self, coef: np.ndarray, intercept: float = 0.0) -> bool:
        return not self.unmet(coef, intercept)


@dataclass
class LinearProblem:
    """An objective restricted to ``reward = columns @ coef (+ intercept) + offset``.

    ``kind`` selects the loss over rows:

    * ``"bernoulli"``: ``target`` is P(row's first segment is better); the prediction is
      ``noise/2 + (1 - noise) * sigmoid(X @ coef + offset)``; cross-entropy.
    * ``"pu"``: ``target`` is 1 for expert rows, 0 for unlabeled; balanced logistic loss, or the
      non-negative PU risk (Kiryo et al. 2017) when ``class_prior`` is set.
    * ``"squared"``: mean squared error against ``target``.

    A *reduced* problem (``objectives.moments.reduced_problem``) has few rows that stand for
    ``represented_rows`` rows of the loss: its weighted sums are theirs, so every loss, fit
    and accuracy is theirs too, and ``n_rows`` counts them; rows cannot be taken from it.
    """

    kind: str
    X: np.ndarray
    target: np.ndarray
    offset: np.ndarray
    weight: np.ndarray
    fit_intercept: bool = False
    noise: float = 0.0
    class_prior: float | None = None
    constraints: LinearConstraints | None = field(default=None, repr=False)
    represented_rows: int | None = None

    @property
    def n_rows(self) -> int:
        """The rows of the loss (those a reduced problem stands for)."""
        return int(self.X.shape[0] if self.represented_rows is None else self.represented_rows)

    def rows(self, index: np.ndarray) -> LinearProblem:
        """The same loss over the rows ``index`` only."""
        if self.represented_rows is not None:
            raise ValueError("a reduced problem's rows stand for others: none can be taken")
        return replace(self, X=self.X[index], target=self.target[index],
                       offset=self.offset[index], weight=self.weight[index])

    def with_columns(self, support: np.ndarray) -> LinearProblem:
        """The same loss over the columns ``support`` (indices) only."""
        constraints = (None if self.constraints is None
                       else self.constraints.with_columns(np.asarray(support, dtype=int)))
        return replace(self, X=self.X[:, support], constraints=constraints)

    def with_fixed(self, index: Sequence[int], values: Sequence[float], intercept: float
                   ) -> LinearProblem:
        """The loss over the other columns once the columns ``index`` are fixed at ``values``
        and the intercept at ``intercept``: their reward joins the offset (and the limits of
        the constraints), and no intercept is fitted."""
        index = np.asarray(index, dtype=int)
        values = np.asarray(values, dtype=float)
        rest = np.setdiff1d(np.arange(self.X.shape[1]), index)
        constraints = (None if self.constraints is None
                       else self.constraints.with_fixed(index, values, intercept))
        return replace(self, X=self.X[:, rest],
                       offset=self.offset + self.X[:, index] @ values + intercept,
                       fit_intercept=False, constraints=constraints)

    @staticmethod
    def stacked(parts: Sequence[LinearProblem]) -> LinearProblem:
        """The rows of ``parts`` (problems of one objective, as on its folds) as one problem,
        with the constraints of the first."""
        if any(p.represented_rows is not None for p in parts):
            raise ValueError("reduced problems stand for rows they do not hold: not stacked")
        return replace(parts[0], X=np.vstack([p.X for p in parts]),
                       target=np.concatenate([p.target for p in parts]),
                       offset=np.concatenate([p.offset for p in parts]),
                       weight=np.concatenate([p.weight for p in parts]))

    def predict(self, coef: np.ndarray, intercept: float = 0.0) -> np.ndarray:
        return self.X @ coef + intercept + self.offset

    def loss_and_grad_z(self, z: np.ndarray) -> tuple[float, np.ndarray]:
        """Loss at row scores ``z`` and its gradient with respect to ``z``."""
        return row_loss(self.kind, z, self.target, self.weight, self.noise, self.class_prior)

    def curvature_z(self, z: np.ndarray) -> np.ndarray:
        """The diagonal of the loss's Hessian in the row scores ``z`` (non-negative): exact for
        Bradley–Terry and squared error, by central differences of the gradient otherwise."""
        total = self.weight.sum()
        if self.kind == "bernoulli" and self.noise == 0.0:
            s = 1.0 / (1.0 + np.exp(-np.clip(z, -700.0, 700.0)))
            return self.weight * s * (1.0 - s) / total
        if self.kind == "squared":
            return 2.0 * self.weight / total
        step = 1e-4 * np.maximum(1.0, np.abs(z))
        return np.maximum((self.loss_and_grad_z(z + step)[1]
                           - self.loss_and_grad_z(z - step)[1]) / (2 * step), 0.0)

    def loss(self, coef: np.ndarray, intercept: float = 0.0) -> float:
        return self.loss_and_grad_z(self.predict(coef, intercept))[0]

    def loss_floor(self) -> float:
        """The lowest loss any reward could reach: the labels' mean entropy for soft
        preference labels (a model can at best predict each label's own probability), else 0."""
        if self.kind != "bernoulli" or self.weight.sum() <= 0:
            return 0.0
        p = np.clip(self.target, 0.0, 1.0)
        entropy = -(xlogy(p, p) + xlogy(1 - p, 1 - p))
        return float(self.weight @ entropy / self.weight.sum())

    def reachable_floor(self) -> float | None:
        """``loss_floor`` where a finite reward can reach it: probability labels (some strictly
        between 0 and 1 other than a tie's 0.5; a reward whose return differences are their
        logits, those that round to 0 or 1 included, reaches it to rounding), squared error
        (noiseless labels). ``None`` where it is only approached as the weights grow without
        bound (0/1 draws, ties) or bounds a risk no reward attains (PU)."""
        if self.kind == "squared":
            return 0.0
        graded = (self.target > 0.0) & (self.target < 1.0) & (self.target != 0.5)
        if self.kind == "bernoulli" and self.noise == 0.0 and bool(graded.any()):
            return self.loss_floor()
        return None

    def accuracy(self, coef: np.ndarray, intercept: float = 0.0) -> float:
        """Preference accuracy (bernoulli), balanced accuracy (pu) or R² (squared)."""
        z = self.predict(coef, intercept)
        if self.kind == "bernoulli":
            decided = self.target != 0.5
            if not decided.any():
                return float("nan")
            agree = (z[decided] > 0) == (self.target[decided] > 0.5)
            return float(np.average(agree, weights=self.weight[decided]))
        if self.kind == "pu":
            expert = self.target > 0.5
            if expert.all() or not expert.any():
                return float("nan")
            return float(0.5 * ((z[expert] > 0).mean() + (z[~expert] <= 0).mean()))
        residual = self.target - z
        spread = np.average((self.target - np.average(self.target, weights=self.weight)) ** 2,
                            weights=self.weight)
        if spread == 0:
            return float("nan")
        return float(1.0 - np.average(residual**2, weights=self.weight) / spread)


def row_loss(kind: str, z: np.ndarray, target: np.ndarray, weight: np.ndarray, noise: float,
             class_prior: float | None) -> tuple[float, np.ndarray]:
    """The loss of ``kind`` at row scores ``z`` and its gradient in ``z`` (``LinearProblem``
    says what each kind is); the objectives' ``loss_and_grad`` read it too."""
    total = weight.sum()
    if total <= 0:
        return 0.0, np.zeros_like(z)
    if kind == "bernoulli":
        if noise == 0.0:
            # -[p log s(z) + (1-p) log s(-z)] = softplus(-z) + (1-p) z, from one exp(-|z|).
            # Capped below 708 so exp never returns a subnormal (100x slower arithmetic).
            small = np.exp(-np.minimum(np.abs(z), 700.0))
            losses = np.log1p(small) + np.maximum(-z, 0.0) + (1 - target) * z
            sigmoid = np.where(z >= 0, 1.0, small) / (1.0 + small)
            grad = sigmoid - target
        else:
            q = noise / 2 + (1 - noise) * expit(z)
            q = np.clip(q, 1e-300, 1 - 1e-16)
            losses = -(target * np.log(q) + (1 - target) * np.log1p(-q))
            dq = (1 - noise) * expit(z) * expit(-z)
            grad = (-(target / q) + (1 - target) / (1 - q)) * dq
        return float(weight @ losses / total), weight * grad / total
    if kind == "pu":
        expert = target > 0.5
        n_expert, n_unlabeled = max(expert.sum(), 1), max((~expert).sum(), 1)
        positive_loss = -log_expit(z)          # expert labelled expert
        negative_loss = -log_expit(-z)         # labelled non-expert
        grad = np.zeros_like(z)
        if class_prior is None:
            risk = 0.5 * positive_loss[expert].mean() + 0.5 * negative_loss[~expert].mean()
            grad[expert] = -0.5 * expit(-z[expert]) / n_expert
            grad[~expert] = 0.5 * expit(z[~expert]) / n_unlabeled
            return float(risk), grad
        prior = class_prior
        negative_risk = negative_loss[~expert].mean() - prior * negative_loss[expert].mean()
        risk = prior * positive_loss[expert].mean() + max(negative_risk, 0.0)
        grad[expert] = -prior * expit(-z[expert]) / n_expert
        if negative_risk > 0:
            grad[~expert] += expit(z[~expert]) / n_unlabeled
            grad[expert] -= prior * expit(z[expert]) / n_expert
        return float(risk), grad
    residual = z - target
    return float(weight @ residual**2 / total), 2 * weight * residual / total
