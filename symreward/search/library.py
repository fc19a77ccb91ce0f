"""The candidate-term library: simple, readable functions of the features to choose terms from.

From the features it builds the features themselves, small integer powers, ``abs``, pairwise
products, hinges ``max(0, x - k)`` / ``max(0, k - x)`` and indicators ``(x > k)`` at knots taken
from the data's quantiles (rounded to two significant digits so the formulas read cleanly), plus
any terms a user lists. Columns that carry nothing new are pruned: constants, duplicates and
columns collinear with a simpler one (``abs(d)`` where ``d >= 0`` is ``d``).

Each candidate comes with its recipe (``recipe_columns``): the library is chosen from samples
of rows (``TermLibrary.choose``), and its columns are then computed on any rows, the whole
data's or one chunk's at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import sympy

from symreward import formula
from symreward.errors import FeatureError, FormulaError
from symreward.objectives.rounding import round_significant

if TYPE_CHECKING:
    from symreward.features import FeatureSet


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


# How a candidate's column is computed from the feature matrix (and the user terms' columns): a
# tuple of plain values, so the columns of a chunk of data can be computed where the chunk is.
# ("feature", i), ("power", i, p), ("abs", i), ("above", i, knot), ("below", i, knot),
# ("gt", i, knot), ("product", i, j), ("user", k).
Recipe = tuple


def recipe_columns(recipes: Sequence[Recipe], matrix: np.ndarray,
                   user_columns: np.ndarray | None = None) -> np.ndarray:
    """The (n, len(recipes)) columns of ``recipes`` on the rows of the feature ``matrix``
    (n, F) and of ``user_columns`` (n, user terms): each row's values depend on that row
    only, so a chunk's columns are the whole data's rows."""
    columns = np.empty((len(matrix), len(recipes)))
    for k, recipe in enumerate(recipes):
        columns[:, k] = _recipe_column(recipe, matrix, user_columns)
    return columns


def _recipe_column(recipe: Recipe, matrix: np.ndarray, user_columns: np.ndarray | None
                   ) -> np.ndarray:
    kind = recipe[0]
    if kind == "user":
        if user_columns is None:
            raise ValueError("user_terms need their user_columns")
        return user_columns[:, recipe[1]]
    values = matrix[:, recipe[1]]
    if kind == "feature":
        return values
    if kind == "power":
        return values**recipe[2]
    if kind == "abs":
        return np.abs(values)
    if kind == "above":
        return np.maximum(0.0, values - recipe[2])
    if kind == "below":
        return np.maximum(0.0, recipe[2] - values)
    if kind == "gt":
        return (values > recipe[2]).astype(np.float64)
    if kind == "product":
        return values * matrix[:, recipe[2]]
    raise ValueError(f"unknown column recipe {recipe!r}")


# Seeds the knot sample apart from the pruning's, which is drawn from the seed alone.
_KNOT_STREAM = 1


def sample_rows(n: int, size: int, seed: int) -> np.ndarray | None:
    """A seeded sample of ``size`` of ``n`` rows, sorted; None (every row) where ``n <= size``.
    It depends on ``n`` and the seed only, so the rows of data read chunk by chunk are the same
    as in memory."""
    if n <= size:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))


def spread_rows(n: int, size: int, seed: int) -> np.ndarray | None:
    """As ``sample_rows``, one row drawn in each of ``size`` runs of consecutive rows, as long
    as each other to a row: spread over the whole data (no stretch of episodes left out),
    never in step with a period of the data, and drawn in ``size``'s memory whatever ``n``."""
    if n <= size:
        return None
    bounds = np.arange(size + 1, dtype=np.int64) * n // size
    draws = np.random.default_rng([seed, _KNOT_STREAM]).random(size)
    return bounds[:-1] + (draws * np.diff(bounds)).astype(np.int64)


@dataclass
class TermLibrary:
    """Which candidate terms to generate (options in ``__init__``, as in scikit-learn).

    Knots are the ``knot_quantiles`` of each feature over at most ``knot_rows`` rows (one
    drawn in each of ``knot_rows`` runs of rows where the data hold more: ``spread_rows``);
    pruning compares the columns on at most ``prune_rows`` rows (a seeded sample,
    ``sample_rows``). Both samples are drawn from the number of rows and the seed alone, so
    data too large for memory, read chunk by chunk, give the same library as in memory."""

    powers: Sequence[int] = (1, 2, 3)
    absolute: bool = True
    products: bool = True
    hinges: bool = True
    indicators: bool = True
    knot_quantiles: Sequence[float] = (0.1, 0.25, 0.5, 0.75, 0.9)
    user_terms: Sequence[str] = ()
    collinearity: float = 1e-9
    prune_rows: int = 20_000
    knot_rows: int = 1_000_000

    def check_user_terms(self, features: FeatureSet) -> None:
        """Each of ``user_terms`` parses over ``features``; one that does not is a
        ``FeatureError`` naming it."""
        for text in self.user_terms:
            try:
                formula.parse(text, features.names)
            except FormulaError as exc:
                raise FeatureError(f"user term {text!r}: {exc}") from None

    def build(self, feature_names: Sequence[str], matrix: np.ndarray,
              user_columns: np.ndarray | None = None, seed: int = 0
              ) -> tuple[list[Candidate], np.ndarray]:
        """Candidates and their (N, K) columns over the feature ``matrix`` (N, F), pruned.

        ``user_columns`` holds the values of ``user_terms`` (the caller compiles them).
        """
        n = len(matrix)
        knot_rows, probe_rows = self.knot_sample(n, seed), self.probe_sample(n, seed)
        probe = slice(None) if probe_rows is None else probe_rows
        candidates, recipes = self.choose(
            feature_names, matrix if knot_rows is None else matrix[knot_rows],
            matrix.min(axis=0, initial=np.inf), matrix.max(axis=0, initial=-np.inf),
            matrix[probe], None if user_columns is None else user_columns[probe])
        return candidates, recipe_columns(recipes, matrix, user_columns)

    def knot_sample(self, n: int, seed: int) -> np.ndarray | None:
        """The rows of ``n`` whose quantiles are the knots (None: all of them)."""
        return spread_rows(n, self.knot_rows, seed)

    def probe_sample(self, n: int, seed: int) -> np.ndarray | None:
        """The rows of ``n`` the pruning compares columns on (None: all of them)."""
        return sample_rows(n, self.prune_rows, seed)

    def choose(self, feature_names: Sequence[str], knot_values: np.ndarray, low: np.ndarray,
               high: np.ndarray, probe: np.ndarray, probe_user: np.ndarray | None = None
               ) -> tuple[list[Candidate], list[Recipe]]:
        """The pruned candidates and their recipes (``recipe_columns``), from the feature
        values at the ``knot_sample`` rows, each feature's lowest and highest value on all
        rows (a knot lies strictly between them), and the features and user terms' columns at
        the ``probe_sample`` rows."""
        names = list(feature_names)
        generated: list[tuple[Candidate, Recipe]] = []

        def add(kind: str, name: str, text: str, recipe: Recipe,
                parents: tuple[str, ...] = ()) -> None:
            expr = formula.parse(text, names)
            candidate = Candidate(name, formula.to_text(expr), expr, formula.complexity(expr),
                                  kind, parents)
            generated.append((candidate, recipe))

        for i, x in enumerate(names):
            for power in self.powers:
                if power == 1:
                    add("feature", x, x, ("feature", i))
                else:
                    add("power", f"{x}_pow{power}", f"{x}**{power}", ("power", i, power), (x,))
            if self.absolute:
                add("abs", f"abs_{x}", f"abs({x})", ("abs", i), (x,))
            for knot in self._knots(knot_values[:, i], float(low[i]), float(high[i])):
                label = _knot_label(knot)
                if self.hinges:
                    add("hinge", f"{x}_above_{label}", f"max(0, {x} - {knot!r})",
                        ("above", i, knot), (x,))
                    add("hinge", f"{x}_below_{label}", f"max(0, {knot!r} - {x})",
                        ("below", i, knot), (x,))
                if self.indicators:
                    add("indicator", f"{x}_gt_{label}", f"({x} > {knot!r})", ("gt", i, knot),
                        (x,))
        if self.products:
            for i, x in enumerate(names):
                for j in range(i + 1, len(names)):
                    add("product", f"{x}_times_{names[j]}", f"{x}*{names[j]}",
                        ("product", i, j), (x, names[j]))
        for k, text in enumerate(self.user_terms):
            if probe_user is None:
                raise ValueError("user_terms need their user_columns")
            add("user", f"user_{k}", text, ("user", k))
        kept = self._pruned([candidate for candidate, _ in generated],
                            recipe_columns([r for _, r in generated], probe, probe_user))
        return [generated[k][0] for k in kept], [generated[k][1] for k in kept]

    def _knots(self, values: np.ndarray, low: float, high: float) -> list[float]:
        if not (self.hinges or self.indicators) or not self.knot_quantiles:
            return []
        knots = []
        for q in np.quantile(values, self.knot_quantiles):
            knot = round_significant(float(q), 2)
            if low < knot < high and knot not in knots:
                knots.append(knot)
        return knots

    def _pruned(self, generated: list[Candidate], columns: np.ndarray) -> list[int]:
        """Which of ``generated`` (their ``columns`` on the probe rows) are kept, simplest
        first: not constant, and not collinear with a simpler kept one."""
        if not generated:
            return []
        order = sorted(range(len(generated)), key=lambda k: generated[k].complexity)
        probe = columns[:, order]
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
        return [order[int(candidates[position])] for position in kept]


def _knot_label(knot: float) -> str:
    text = f"{knot:g}".replace("-", "m").replace(".", "_").replace("+", "")
    return text
