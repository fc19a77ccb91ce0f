"""Editing, comparing and tracing reward artifacts: ``patch``, ``diff`` and ``lineage``.

Plain data in and out; the text renderers (``render_*``) are what the command line prints.

* ``patch(artifact, [(op, name, value), ...])`` applies ``set``/``add``/``drop``/``lock``/
  ``unlock``/``note`` in order to a copy of the artifact (the tomlkit document travels along, so
  a person's comments and layout survive the save) and records one lineage entry for the whole
  patch: ``provenance.parent`` becomes the content hash before the patch and
  ``provenance.history`` gains ``{change = "set effort: a -> b; lock effort", parent = …}``.
  Nothing is recorded when the patch changes no content. A hand edit pending from the loaded file
  is recorded first (see ``RewardArtifact.record_hand_edit``).
* ``diff(a, b, dataset=None)`` compares terms by name (and notices renames: a removed and an
  added term with the same expression), the features tables, the simplified symbolic difference
  of the totals, and with data the EPIC distance and the agreement on the data's preference pairs.
* ``lineage(artifact)`` lists the recorded changes, newest first.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import sympy

from symreward import formula
from symreward.artifact import RewardArtifact, Term
from symreward.errors import FormulaError, SymrewardError
from symreward.provenance import implied_history

if TYPE_CHECKING:
    from symreward.data import Dataset
    from symreward.features import FeatureSet

__all__ = [
    "OPERATIONS",
    "ArtifactDiff",
    "LineageEntry",
    "PatchError",
    "PatchResult",
    "TermChange",
    "diff",
    "learned_from",
    "lineage",
    "parse_assignment",
    "patch",
    "render_diff",
    "render_lineage",
    "render_patch",
]

#: Patch operations, and whether each takes a value (``NAME=VALUE``) or only a term name.
OPERATIONS = {"set": True, "add": True, "drop": False, "lock": False, "unlock": False,
              "note": True}

Operation = tuple[str, str, "str | None"]


class PatchError(SymrewardError):
    """A patch that cannot be applied: unknown term, duplicate name, bad formula, bad syntax."""


# ---------------------------------------------------------------------------------- patch


@dataclass
class PatchResult:
    """The patched artifact (a copy; the input is untouched) and what happened to it."""

    artifact: RewardArtifact
    parent: str
    changes: list[str]
    notices: list[str]
    diff: ArtifactDiff

    @property
    def changed(self) -> bool:
        return self.artifact.content_hash() != self.parent


def parse_assignment(op: str, text: str, *, source: str = "") -> Operation:
    """``"NAME=VALUE"`` (or ``"NAME"`` for drop/lock/unlock) as an operation tuple."""
    if op not in OPERATIONS:
        raise PatchError(f"{source}: unknown patch operation {op!r} (expected one of "
                         f"{', '.join(OPERATIONS)})")
    if not OPERATIONS[op]:
        return (op, text.strip(), None)
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        what = "NAME=TEXT" if op == "note" else "NAME=EXPR"
        raise PatchError(f"{source}: --{op} {text!r}: malformed, expected {what}")
    return (op, name.strip(), value.strip() if op != "note" else value)


def patch(artifact: RewardArtifact, operations: Sequence[Operation]) -> PatchResult:
    """Apply ``operations`` in order to a copy of ``artifact`` and record the change.

    Raises ``PatchError`` (naming the artifact, the operation and the reason) before anything is
    changed if any operation is invalid.
    """
    where = artifact.source
    patched = copy.deepcopy(artifact)
    parent = artifact.content_hash()
    names = patched.features.names
    changes: list[str] = []
    notices: list[str] = []
    if not operations:
        raise PatchError(f"{where}: nothing to patch (give --set, --add, --drop, --lock, "
                         "--unlock or --note)")
    for operation in operations:
        if len(operation) != 3:
            raise PatchError(f"{where}: a patch operation is (op, name, value), not "
                             f"{operation!r}")
        op, name, value = operation
        if op not in OPERATIONS:
            raise PatchError(f"{where}: unknown patch operation {op!r} (expected one of "
                             f"{', '.join(OPERATIONS)})")
        label = f"--{op} {name}" + (f"={value}" if value is not None else "")
        if OPERATIONS[op] and not isinstance(value, str):
            raise PatchError(f"{where}: {label}: needs a value (NAME=...)")
        terms = {t.name: t for t in patched.terms}
        if op == "add":
            if not formula.is_identifier(name):
                raise PatchError(f"{where}: {label}: term name {name!r} must be an identifier "
                                 "(letters, digits, _) that is not a function or input name")
            if name in terms:
                raise PatchError(f"{where}: {label}: a term named '{name}' already exists "
                                 "(use --set to change it)")
            _check_formula(where, label, value, names)
            patched.terms.append(Term(name, value))
            changes.append(f"add {name} = {value}")
            continue
        term = terms.get(name)
        if term is None:
            known = ", ".join(terms) or "none"
            raise PatchError(f"{where}: {label}: no term named '{name}' (terms: {known})")
        if op == "set":
            _check_formula(where, label, value, names)
            if term.locked:
                notices.append(f"'{name}' is locked (human-owned; learn --from keeps it): "
                               "changed because you asked")
            if _canonical(value, names) == _canonical(term.expr, names):
                notices.append(f"--set {name}: same expression as before, no change")
                continue
            changes.append(f"set {name}: {term.expr} -> {value}")
            term.expr = value
        elif op == "drop":
            if len(patched.terms) == 1:
                raise PatchError(f"{where}: {label}: cannot drop the only term (a reward needs "
                                 "at least one)")
            if term.locked:
                notices.append(f"'{name}' was locked (human-owned): dropped because you asked")
            patched.terms.remove(term)
            changes.append(f"drop {name} ({term.expr})")
        elif op in ("lock", "unlock"):
            wanted = op == "lock"
            if term.locked == wanted:
                notices.append(f"--{op} {name}: already {op}ed, no change")
                continue
            term.locked = wanted
            changes.append(f"{op} {name}")
        else:  # note
            if term.note == value:
                notices.append(f"--note {name}: same note as before, no change")
                continue
            changes.append(f"note {name}: {term.note!r} -> {value!r}")
            term.note = value
    if patched.content_hash() != parent:
        patched.record_change("; ".join(changes), parent)
    else:
        notices.append("the patch leaves the reward as it was; no lineage entry recorded")
    return PatchResult(artifact=patched, parent=parent, changes=changes, notices=notices,
                       diff=diff(artifact, patched))


def _check_formula(where: str, label: str, text: str, names: Sequence[str]) -> None:
    try:
        formula.parse(text, names)
    except FormulaError as exc:
        raise PatchError(f"{where}: {label}: formula {text!r}: {exc}") from None


def _canonical(text: str, names: Sequence[str]) -> str:
    return formula.to_text(formula.parse(text, names))


# ----------------------------------------------------------------------------------- diff


@dataclass
class TermChange:
    """A term present in both artifacts (same name) whose content differs."""

    name: str
    old: Term
    new: Term
    details: list[str]


@dataclass
class ArtifactDiff:
    """What changed from artifact A to artifact B."""

    a: str
    b: str
    a_hash: str
    b_hash: str
    added: list[Term] = field(default_factory=list)
    removed: list[Term] = field(default_factory=list)
    changed: list[TermChange] = field(default_factory=list)
    renamed: list[tuple[str, str, str]] = field(default_factory=list)
    features_added: dict[str, str] = field(default_factory=dict)
    features_removed: dict[str, str] = field(default_factory=dict)
    features_changed: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: simplified ``B.formula() - A.formula()``, as formula text
    difference: str = "0"
    #: "features" or, when the features tables differ, "raw inputs"
    difference_over: str = "features"
    #: k when B = k·A for a number k (k > 0: the same preferences and optimal policies)
    scale: float | None = None
    data: str | None = None
    epic: float | None = None
    agreement: float | None = None
    pairs: int = 0

    @property
    def same_terms(self) -> bool:
        return not (self.added or self.removed or self.changed or self.renamed)

    @property
    def same_features(self) -> bool:
        return not (self.features_added or self.features_removed or self.features_changed)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def diff(a: RewardArtifact, b: RewardArtifact, dataset: Dataset | None = None, *,
         epic_options: dict[str, Any] | None = None) -> ArtifactDiff:
    """Compare two artifacts: terms, features, symbolic difference, and behaviour on data."""
    result = ArtifactDiff(a=a.source, b=b.source, a_hash=a.content_hash(),
                          b_hash=b.content_hash())
    a_feats, b_feats = _feature_texts(a.features), _feature_texts(b.features)
    result.features_added = {n: b.features[n] for n in b.features if n not in a_feats}
    result.features_removed = {n: a.features[n] for n in a.features if n not in b_feats}
    result.features_changed = {n: (a.features[n], b.features[n]) for n in a_feats
                               if n in b_feats and a_feats[n] != b_feats[n]}
    raw = not result.same_features
    result.difference_over = "raw inputs" if raw else "features"

    a_terms = {t.name: t for t in a.terms}
    b_terms = {t.name: t for t in b.terms}
    for term in b.terms:
        if term.name not in a_terms:
            result.added.append(term)
    for term in a.terms:
        if term.name not in b_terms:
            result.removed.append(term)
            continue
        details = _term_details(term, b_terms[term.name], a.features.names, b.features.names)
        if details:
            result.changed.append(TermChange(term.name, term, b_terms[term.name], details))
    for old in list(result.removed):
        old_expr = _term_expr(old, a.features, raw)
        for new in result.added:
            if _same(_term_expr(new, b.features, raw), old_expr):
                result.renamed.append((old.name, new.name, new.expr))
                result.removed.remove(old)
                result.added.remove(new)
                break

    total_a, total_b = a.formula(), b.formula()
    if raw:
        total_a, total_b = _resolve(total_a, a.features), _resolve(total_b, b.features)
    difference = _rounded(_expanded(total_b - total_a))
    result.difference = formula.to_text(difference)
    if difference != 0 and total_a != 0:
        result.scale = _common_scale(total_a, total_b)

    if dataset is not None:
        _behaviour(result, a, b, dataset, epic_options or {})
    return result


def _expanded(expr: sympy.Expr) -> sympy.Expr:
    """Products and integer powers of sums multiplied out, so that like terms cancel
    (``x*(y + 1) - x*y - x`` is 0); exponentials and logarithms kept as written. Not
    ``sympy.simplify``: it took seconds on a seven-term reward (trigonometric rewriting of
    ``tanh`` and ``exp``), and more as a reward grows, for every ``patch``."""
    return sympy.expand(expr, power_exp=False, power_base=False, log=False)


def _common_scale(a: sympy.Expr, b: sympy.Expr) -> float | None:
    """``c`` where ``b`` is ``c * a`` term by term (every weight scaled alike), else None."""
    def weights(expr: sympy.Expr) -> dict[sympy.Expr, sympy.Expr]:
        terms = sympy.Add.make_args(_expanded(expr))
        return {rest: coefficient for coefficient, rest in (t.as_coeff_Mul() for t in terms)}

    weights_a, weights_b = weights(a), weights(b)
    if weights_a.keys() != weights_b.keys():
        return None
    ratios = [float(weights_b[k] / weights_a[k]) for k in weights_a]
    if all(math.isclose(r, ratios[0], rel_tol=1e-9) for r in ratios):
        return ratios[0]
    return None


def _rounded(expr: sympy.Expr, digits: int = 12) -> sympy.Expr:
    """Floats to ``digits`` significant digits, so 0.1 - 0.7 prints as -0.6."""
    return expr.xreplace({f: sympy.Float(float(f"{float(f):.{digits}g}"))
                          for f in expr.atoms(sympy.Float)})


def _feature_texts(features: FeatureSet) -> dict[str, str]:
    return {n: formula.to_text(features.exprs[n]) for n in features.names}


def _resolve(expr: sympy.Expr, features: FeatureSet) -> sympy.Expr:
    return expr.xreplace({formula.symbol(n): features.resolved(n) for n in features.names})


def _term_expr(term: Term, features: FeatureSet, raw: bool) -> sympy.Expr:
    expr = term.sympy(features.names)
    return _resolve(expr, features) if raw else expr


def _same(a: sympy.Expr, b: sympy.Expr) -> bool:
    """Equal as formulas: the same text, or a difference that expands to zero."""
    return formula.to_text(a) == formula.to_text(b) or sympy.expand(a - b) == 0


def _term_details(old: Term, new: Term, old_names: Sequence[str], new_names: Sequence[str]
                  ) -> list[str]:
    details = []
    old_expr, new_expr = old.sympy(old_names), new.sympy(new_names)
    if formula.to_text(old_expr) != formula.to_text(new_expr):
        old_coef, old_rest = old_expr.as_coeff_Mul()
        new_coef, new_rest = new_expr.as_coeff_Mul()
        if _same(old_expr, new_expr):
            details.append(f"expr {old.expr} -> {new.expr} (the same value, written "
                           "differently)")
        elif old_rest == new_rest and old_rest != 1:
            details.append(f"coefficient {formula.to_text(old_coef)} -> "
                           f"{formula.to_text(new_coef)}")
        else:
            details.append(f"expr {old.expr} -> {new.expr}")
    if old.locked != new.locked:
        details.append("locked" if new.locked else "unlocked")
    if old.note != new.note:
        details.append(f"note {old.note!r} -> {new.note!r}")
    return details


def _behaviour(result: ArtifactDiff, a: RewardArtifact, b: RewardArtifact, dataset: Dataset,
               epic_options: dict[str, Any]) -> None:
    from symreward.audit import epic_distance
    from symreward.data.oracle import return_differences

    result.data = dataset.source
    rewards_a = a.evaluate(dataset).rewards
    rewards_b = b.evaluate(dataset).rewards
    result.epic = float(epic_distance(a.batch_reward(), b.batch_reward(), dataset, **epic_options))
    prefs = dataset.preferences
    if prefs is not None and len(prefs):
        margin_a = return_differences(rewards_a, prefs)
        margin_b = return_differences(rewards_b, prefs)
        result.pairs = len(prefs)
        result.agreement = float(np.mean(np.sign(margin_a) == np.sign(margin_b)))


# -------------------------------------------------------------------------------- lineage


@dataclass
class LineageEntry:
    """One step of an artifact's history: ``parent`` → ``hash`` by ``change``."""

    change: str
    parent: str | None
    hash: str | None
    saved: bool = True


def lineage(artifact: RewardArtifact) -> list[LineageEntry]:
    """The recorded changes, newest first.

    An edit by hand that is not yet recorded (the file changed since its last save) comes first,
    marked ``saved=False``. Without history, a parent recorded by ``learn --from`` shows as the
    step "learned"."""
    recorded = artifact.recorded_hash
    history = implied_history(artifact.provenance)
    entries = []
    for index, entry in enumerate(history):
        after = history[index + 1].get("parent") if index + 1 < len(history) else recorded
        entries.append(LineageEntry(change=str(entry.get("change", "")),
                                    parent=entry.get("parent"), hash=after))
    if artifact.edited_by_hand:
        entries.append(LineageEntry(change="edited by hand (not yet recorded; the next save "
                                    "records it)", parent=recorded,
                                    hash=artifact.content_hash(), saved=False))
    return entries[::-1]


def learned_from(artifact: RewardArtifact) -> dict[str, Any]:
    """What the artifact was learned from, as recorded: objective, engine, seed, data."""
    provenance = artifact.provenance
    info = {k: provenance[k] for k in ("created_by", "objective", "engine", "seed")
            if k in provenance}
    data = provenance.get("data")
    if isinstance(data, dict):
        info.update({f"data_{k}": v for k, v in data.items()
                     if k in ("source", "sha256", "transitions")})
    return info


# ------------------------------------------------------------------------------ rendering


def _short(digest: str | None) -> str:
    if not digest:
        return "-"
    return digest[:19] if digest.startswith("sha256:") else digest


def render_terms(result: ArtifactDiff) -> str:
    """The term-level part of a diff: ``+`` added, ``-`` removed, ``~`` changed, renamed."""
    lines = []
    for term in result.added:
        lines.append(f"  + {term.name} = {term.expr}" + (" (locked)" if term.locked else ""))
    for term in result.removed:
        lines.append(f"  - {term.name} = {term.expr}" + (" (locked)" if term.locked else ""))
    for change in result.changed:
        lines.extend(f"  ~ {change.name}: {detail}" for detail in change.details)
    for old, new, expr in result.renamed:
        lines.append(f"  > renamed {old} -> {new} (same expression: {expr})")
    return "\n".join(lines) + "\n" if lines else "  (no term changes)\n"


def render_diff(result: ArtifactDiff) -> str:
    lines = [f"diff {result.a} -> {result.b}",
             f"  {_short(result.a_hash)} -> {_short(result.b_hash)}", "", "terms"]
    text = "\n".join(lines) + "\n" + render_terms(result)
    lines = []
    if not result.same_features:
        lines += ["", "features"]
        lines += [f"  + {n} = {t}" for n, t in result.features_added.items()]
        lines += [f"  - {n} = {t}" for n, t in result.features_removed.items()]
        lines += [f"  ~ {n}: {old} -> {new}" for n, (old, new) in
                  result.features_changed.items()]
        lines.append("  (the features tables differ: the difference below is over raw inputs)")
    lines += ["", f"difference (B - A, over {result.difference_over})",
              f"  {result.difference}"]
    if result.difference in ("0", "0.0"):
        lines.append("  (the two rewards are the same formula)")
    elif result.scale is not None:
        kind = ("a positive rescaling: same preferences and optimal policies"
                if result.scale > 0 else "a negative rescaling: reversed preferences")
        lines.append(f"  (B = {result.scale:.6g} * A, {kind})")
    if result.data is not None:
        lines += ["", f"behaviour on {result.data}",
                  f"  EPIC distance {result.epic:.4f}  (0 = same up to scale, offset and "
                  "shaping; 1 = opposite)"]
        if result.agreement is None:
            lines.append("  preference agreement: - (the data has no preference pairs)")
        else:
            lines.append(f"  preference agreement {result.agreement:.3f} over {result.pairs} "
                         "pairs (share where A and B order the segments the same way)")
    return text + "\n".join(lines) + "\n"


def render_patch(result: PatchResult, output: str | None = None) -> str:
    artifact = result.artifact
    lines = [f"patched {artifact.source if output is None else output}"]
    lines += [f"  note: {notice}" for notice in result.notices]
    text = "\n".join(lines) + "\n\nterms\n" + render_terms(result.diff)
    text += f"\nreward = {artifact.formula_text()}\n"
    if result.changed:
        text += (f"parent {_short(result.parent)} -> hash {_short(artifact.content_hash())}"
                 f"\n")
    return text


def render_lineage(artifact: RewardArtifact) -> str:
    lines = [f"{artifact.name or '(unnamed reward)'}  [{artifact.source}]",
             f"  hash: {artifact.content_hash()}"]
    if artifact.edited_by_hand:
        lines.append(f"  edited by hand since last save (recorded hash "
                     f"{artifact.recorded_hash})")
    if isinstance(artifact.provenance.get("parent"), str):
        lines.append(f"  parent: {artifact.provenance['parent']}")
    entries = lineage(artifact)
    lines += ["", "history (newest first)"]
    if not entries:
        lines.append("  (no recorded changes)")
    for entry in entries:
        lines.append(f"  {_short(entry.parent)} -> {_short(entry.hash)}  {entry.change}")
    info = learned_from(artifact)
    if info:
        lines += ["", "learned from"]
        lines += [f"  {key.replace('_', ' ')}: {value}" for key, value in info.items()]
    return "\n".join(lines) + "\n"
