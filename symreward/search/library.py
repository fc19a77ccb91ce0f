"""The candidate-term library: simple, readable functions of the features to choose terms from.

From the features it builds the features themselves, small integer powers, ``abs``, pairwise
products, hinges ``max(0, x - k)`` / ``max(0, k - x)`` and indicators ``(x > k)`` at knots taken
from the data's quantiles (rounded to two significant digits so the formulas read cleanly), plus
any terms a user lists. Columns that carry nothing new are pruned: constants, duplicates and
columns collinear with a simpler one (``abs(d)`` where ``d >= 0`` is ``d``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import sympy

from symreward import formula
from symreward.objectives.rounding import round_significant


@dataclass(frozen=True)
class Candidate:
    """One candidate term: its text in the formula language, sympy form and complexity;
    ``parents`` are the simpler candidates (features) it was built from."""

    name: str
    text: str
    expr: sympy.Expr = field(compare=False, repr=False)
    complexity: int
    kind: str
    parents: tuple[str, ...] = ()


@dataclass
class TermLibrary:
    """Which candidate terms to generate (options in ``__init__``, as in scikit-learn)."""

    powers: Sequence[int] = (1, 2, 3)
    absolute: bool = True
    products: bool = True
    hinges: bool = True
    indicators: bool = True
    knot_quantiles: Sequence[float] = (0.1, 0.25, 0.5, 0.75, 0.9)
    user_terms: Sequence[str] = ()
    collinearity: float = 1e-9
    prune_rows: int = 20_000

    def build(self, feature_names: Sequence[str], matrix: np.ndarray,
              user_columns: np.ndarray | None = None, seed: int = 0
              ) -> tuple[list[Candidate], np.ndarray]:
        """Candidates and their (N, K) columns over the feature ``matrix`` (N, F), pruned.

        ``user_columns`` holds the values of ``user_terms`` (the caller compiles them).
        """
        names = list(feature_names)
        generated: list[tuple[Candidate, np.ndarray]] = []

        def add(kind: str, name: str, text: str, column: np.ndarray,
                parents: tuple[str, ...] = ()) -> None:
            expr = formula.parse(text, names)
            candidate = Candidate(name, formula.to_text(expr), expr, formula.complexity(expr),
                                  kind, parents)
            generated.append((candidate, column))

        for i, x in enumerate(names):
            values = matrix[:, i]
            for power in self.powers:
                if power == 1:
                    add("feature", x, x, values)
                else:
                    add("power", f"{x}_pow{power}", f"{x}**{power}", values**power, (x,))
            if self.absolute:
                add("abs", f"abs_{x}", f"abs({x})", np.abs(values), (x,))
            knots = self._knots(values)
            for knot in knots:
                label = _knot_label(knot)
                if self.hinges:
                    add("hinge", f"{x}_above_{label}", f"max(0, {x} - {knot!r})",
                        np.maximum(0.0, values - knot), (x,))
                    add("hinge", f"{x}_below_{label}", f"max(0, {knot!r} - {x})",
                        np.maximum(0.0, knot - values), (x,))
                if self.indicators:
                    add("indicator", f"{x}_gt_{label}", f"({x} > {knot!r})",
                        (values > knot).astype(np.float64), (x,))
        if self.products:
            for i, x in enumerate(names):
                for j in range(i + 1, len(names)):
                    y = names[j]
                    add("product", f"{x}_times_{y}", f"{x}*{y}", matrix[:, i] * matrix[:, j],
                        (x, y))
        for k, text in enumerate(self.user_terms):
            if user_columns is None:
                raise ValueError("user_terms need their user_columns")
            add("user", f"user_{k}", text, user_columns[:, k])
        return self._pruned(generated, seed)

    def _knots(self, values: np.ndarray) -> list[float]:
        if not (self.hinges or self.indicators) or not self.knot_quantiles:
            return []
        knots = []
        for q in np.quantile(values, self.knot_quantiles):
            knot = round_significant(float(q), 2)
            if values.min() < knot < values.max() and knot not in knots:
                knots.append(knot)
        return knots

    def _pruned(self, generated: list[tuple[Candidate, np.ndarray]], seed: int
                ) -> tuple[list[Candidate], np.ndarray]:
        """Drop constant columns and any column collinear with a simpler kept one."""
        if not generated:
            return [], np.zeros((0, 0))
        order = sorted(range(len(generated)), key=lambda k: generated[k][0].complexity)
        columns = np.column_stack([generated[k][1] for k in order])
        rows = columns.shape[0]
        sample = (np.sort(np.random.default_rng(seed).choice(rows, self.prune_rows, replace=False))
                  if rows > self.prune_rows else slice(None))
        probe = columns[sample]
        finite = np.isfinite(probe).all(axis=0)
        centred = probe - probe.mean(axis=0, where=np.isfinite(probe), keepdims=True)
        norms = np.sqrt((np.where(np.isfinite(centred), centred, 0.0) ** 2).sum(axis=0))
        scale = np.maximum(np.abs(probe).max(axis=0, initial=0.0, where=np.isfinite(probe)),
                           1e-300)
        varying = finite & (norms > 1e-12 * scale * np.sqrt(len(centred)))
        kept: list[int] = []
        candidates = np.flatnonzero(varying)
        unit = centred[:, candidates] / norms[candidates]
        correlation = np.abs(unit.T @ unit)
        for position in range(len(candidates)):
            if kept and correlation[position, kept].max() >= 1.0 - self.collinearity:
                continue
            kept.append(position)
        kept = [int(candidates[position]) for position in kept]
        candidates = [generated[order[k]][0] for k in kept]
        return candidates, np.ascontiguousarray(columns[:, kept])


def _knot_label(knot: float) -> str:
    text = f"{knot:g}".replace("-", "m").replace(".", "_").replace("+", "")
    return text
