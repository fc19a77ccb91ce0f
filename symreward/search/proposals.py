"""Terms a structure-search engine proposes, as candidates and columns beside the term
library's, and each proposed term set as a support over them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import sympy

from symreward import formula
from symreward.data import Dataset
from symreward.errors import FormulaError
from symreward.evaluate import term_columns
from symreward.features import FeatureSet
from symreward.search import trees
from symreward.search.library import Candidate


def with_engine_terms(candidates: list[Candidate], columns: np.ndarray,
                term_sets: Sequence[Sequence[sympy.Expr]], matrix: np.ndarray, dataset: Dataset,
                features: FeatureSet) -> tuple[list[Candidate], np.ndarray,
                                                list[tuple[int, ...]]]:
    """The library extended by an engine's terms, and each term set as a support over it.
    Terms that are not finite on the data are left out."""
    index = {c.text: k for k, c in enumerate(candidates)}
    taken = {c.name for c in candidates}
    new: list[Candidate] = []
    for terms in term_sets:
        for expr in terms:
            text = formula.to_text(expr)
            if text in index or any(c.text == text for c in new):
                continue
            try:
                formula.parse(text, features.names)
            except FormulaError:
                continue  # outside the language (an engine's form sympy could not print back)
            name = unique_name(_term_name(text), taken)
            taken.add(name)
            new.append(Candidate(name, text, expr, formula.complexity(expr), "evolved"))
    if new:
        values = _engine_term_columns(new, matrix, dataset, features)
        finite = np.isfinite(values).all(axis=0)
        new = [c for c, ok in zip(new, finite, strict=True) if ok]
        columns = np.column_stack([columns, values[:, finite]])
        candidates = [*candidates, *new]
        index.update({c.text: len(index) + k for k, c in enumerate(new)})
    proposals = []
    for terms in term_sets:
        support = [index.get(formula.to_text(e)) for e in terms]
        if all(k is not None for k in support):
            proposals.append(tuple(sorted(dict.fromkeys(support))))
    return candidates, np.ascontiguousarray(columns), proposals


def _engine_term_columns(candidates: list[Candidate], matrix: np.ndarray, dataset: Dataset,
                         features: FeatureSet) -> np.ndarray:
    """Columns of engine terms over the feature matrix: by the evolutionary engine's
    interpreter where its operators cover a term (no compile; the same floating-point
    operations as the artifact's kernel up to rounding), compiled otherwise."""
    values = np.empty((matrix.shape[0], len(candidates)))
    nodes, where, compiled = [], [], []
    for k, candidate in enumerate(candidates):
        try:
            nodes.append(trees.from_sympy(candidate.expr, features.names))
            where.append(k)
        except trees.Unsupported:
            compiled.append(k)
    with np.errstate(all="ignore"):
        values[:, where] = trees.evaluate_terms(nodes, matrix.T).T
    if compiled:
        values[:, compiled] = term_columns(
            dataset, features, [(f"user_{j}", formula.parse(candidates[k].text, features.names))
                                for j, k in enumerate(compiled)])
    return values


def _term_name(text: str) -> str:
    """A readable identifier for a term: ``sqrt(dx**2 + dy**2)`` → ``sqrt_dx_pow2_dy_pow2``."""
    for symbol, word in (("**", "_pow"), ("<", "_lt_"), (">", "_gt_"), ("/", "_over_"),
                         ("*", "_"), ("-", "_m_"), (".", "_")):
        text = text.replace(symbol, word)
    name = "_".join(part for part in "".join(ch if ch.isalnum() else "_" for ch in text)
                    .split("_") if part)
    name = name[:40].rstrip("_") or "term"
    return name if formula.is_identifier(name) and not name[0].isdigit() else f"t_{name}"


def unique_name(name: str, taken: set[str]) -> str:
    """``name``, or ``name_2``, ``name_3``, ... where it is taken."""
    if name not in taken:
        return name
    k = 2
    while f"{name}_{k}" in taken:
        k += 1
    return f"{name}_{k}"
