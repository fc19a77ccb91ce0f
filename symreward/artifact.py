"""The reward artifact: a small TOML file holding a reward as a sum of named symbolic terms.

Loading keeps the tomlkit document, so a person's comments and layout survive load → change →
save. Saving is atomic (temporary file, fsync, rename). The content hash covers what the reward
*is* — features, terms, invariants, in canonical form — not how the file is formatted, so
re-indenting a file does not change its identity, and a changed hash means a changed reward.

Lineage lives in provenance: ``hash`` is the content hash at the last save, ``parent`` the hash
of the version this one was derived from, and ``history`` a list of ``{change, parent}`` entries,
oldest first, one per change (``record_change``). A file changed in a text editor since its last
save (content hash ≠ recorded hash) is recorded on its next save, by whatever tool saves it, as
``{change = "edited by hand", parent = <recorded hash>}``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import sympy
import tomlkit
from tomlkit.items import AoT, Table

from symreward import formula
from symreward import provenance as lineage
from symreward.atomic import atomic_write_text
from symreward.errors import ArtifactError, FeatureError, FormulaError
from symreward.evaluate import (
    StateValues,
    compile_terms,
    evaluate_states,
    evaluate_terms,
    info_matrix,
)
from symreward.features import FeatureSet
from symreward.invariants.rules import RULES
from symreward.reuse import ImitationRewardFn, reward_function

if TYPE_CHECKING:
    from symreward.data import Dataset
    from symreward.kernels import RewardKernels

SCHEMA = "symreward/1"
INVARIANT_RULES = tuple(RULES)
_TOP_LEVEL_KEYS = ("schema", "name", "features", "terms", "invariants", "provenance")
_TERM_KEYS = ("name", "expr", "locked", "note")


@dataclass
class Term:
    """One named summand of the reward. ``locked`` terms belong to a person: re-learning keeps
    them as written."""

    name: str
    expr: str
    locked: bool = False
    note: str = ""

    def sympy(self, features: Sequence[str]) -> sympy.Expr:
        return formula.parse(self.expr, features)


@dataclass
class Evaluation:
    """Per-transition rewards of a dataset and each term's contribution to them."""

    rewards: np.ndarray
    term_columns: np.ndarray
    term_names: list[str]

    @property
    def non_finite(self) -> int:
        return int(np.count_nonzero(~np.isfinite(self.rewards)))


@dataclass
class RewardArtifact:
    """A reward: features, terms whose sum is the reward, invariants and provenance."""

    name: str
    features: FeatureSet
    terms: list[Term]
    invariants: list[dict[str, Any]] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    schema: str = SCHEMA
    source: str = "<memory>"
    _document: tomlkit.TOMLDocument | None = field(default=None, repr=False, compare=False)
    #: The hash recorded in the file when it was loaded, if the content had been edited by hand
    #: since; recorded in the lineage at the next save.
    _hand_edit_parent: str | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        problems = _term_problems(self.terms, self.features)
        if problems:
            raise ArtifactError([f"{self.source}: {p}" for p in problems])

    # -- reading and writing -------------------------------------------------------------

    @classmethod
    def load(cls, path: str | os.PathLike) -> RewardArtifact:
        """Read and validate an artifact; every problem found is reported at once."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ArtifactError(f"{path}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ArtifactError(f"{path}: cannot read: {exc}") from None
        return cls.loads(text, source=str(path))

    @classmethod
    def loads(cls, text: str, *, source: str = "<string>") -> RewardArtifact:
        try:
            document = tomlkit.parse(text)
        except tomlkit.exceptions.ParseError as exc:
            raise ArtifactError(f"{source}: not valid TOML: {exc}") from None
        lines = _KeyLines(text)
        problems: list[str] = []

        def report(message: str, *where: Any) -> None:
            line = lines.find(*where)
            problems.append(f"{source}:{line}: {message}" if line else f"{source}: {message}")

        data = document.unwrap()
        for key in data:
            if key not in _TOP_LEVEL_KEYS:
                report(f"unknown top-level key '{key}' (expected one of "
                       f"{', '.join(_TOP_LEVEL_KEYS)})", None, None, key)
        schema = data.get("schema")
        if schema != SCHEMA:
            report(f"schema: {schema!r} is not supported (expected {SCHEMA!r})"
                   if schema is not None else f"schema: missing (expected schema = {SCHEMA!r})",
                   None, None, "schema")
        name = data.get("name", "")
        if not isinstance(name, str):
            report(f"name: must be a string, not {type(name).__name__}", None, None, "name")
            name = ""
        features = _read_features(data.get("features"), report)
        terms = _read_terms(data.get("terms"), report)
        feature_names = list(data["features"]) if isinstance(data.get("features"), dict) else []
        for problem, index, key in _term_problem_sites(terms, feature_names):
            report(problem, "terms", index, key)
        invariants = _read_invariants(data.get("invariants", []), report)
        provenance = data.get("provenance", {})
        if not isinstance(provenance, dict):
            report("provenance: must be a table", None, None, "provenance")
            provenance = {}
        if problems:
            raise ArtifactError(problems)
        artifact = cls.__new__(cls)
        artifact.name = name
        artifact.features = features
        artifact.terms = [Term(**{k: v for k, v in t.items() if k != "_index"}) for t in terms]
        artifact.invariants = invariants
        artifact.provenance = provenance
        artifact.schema = SCHEMA
        artifact.source = source
        artifact._document = document
        recorded = provenance.get("hash")
        artifact._hand_edit_parent = (recorded if isinstance(recorded, str)
                                      and recorded != artifact.content_hash() else None)
        return artifact

    def dumps(self) -> str:
        """The TOML text, with the content hash recorded in provenance."""
        document = self._synced_document()
        return tomlkit.dumps(document)

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically: a crash mid-save leaves any previous file at ``path`` intact."""
        atomic_write_text(Path(path), self.dumps())
        self.source = str(path)

    # -- identity ------------------------------------------------------------------------

    def content(self) -> dict[str, Any]:
        """The canonical content the hash covers: formatting and provenance excluded."""
        names = self.features.names
        return {
            "schema": self.schema,
            "name": self.name,
            "features": {n: formula.to_text(self.features.exprs[n]) for n in names},
            "terms": [{"name": t.name, "expr": formula.to_text(t.sympy(names)),
                       "locked": t.locked, "note": t.note} for t in self.terms],
            "invariants": self.invariants,
        }

    def content_hash(self) -> str:
        canonical = json.dumps(self.content(), sort_keys=True, separators=(",", ":"),
                               default=str)
        return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def recorded_hash(self) -> str | None:
        return self.provenance.get("hash")

    @property
    def edited_by_hand(self) -> bool:
        """True when the content no longer matches the hash recorded at the last save."""
        recorded = self.recorded_hash
        return recorded is not None and recorded != self.content_hash()

    # -- lineage -------------------------------------------------------------------------

    @property
    def history(self) -> list[dict[str, Any]]:
        """The recorded changes, oldest first (``provenance.history``)."""
        return lineage.recorded_history(self.provenance)

    def record_change(self, change: str, parent: str) -> None:
        """Record a change made to this artifact: ``parent`` is the content hash before it.

        Sets ``provenance.parent`` and appends ``{change, parent}`` to ``provenance.history``.
        A pending hand edit is recorded first, so the history keeps the order things happened.
        The parent an artifact was learned from (``learn --from``) is kept as the first entry.
        """
        self.record_hand_edit()
        lineage.append_change(self.provenance, change, parent)

    def record_hand_edit(self) -> bool:
        """Record an edit made in a text editor since the last save, once; whether there was one.

        ``save``/``dumps`` call this, so any tool that saves records hand edits."""
        parent = self._hand_edit_parent
        if parent is None:
            return False
        self._hand_edit_parent = None
        lineage.append_change(self.provenance, lineage.HAND_EDIT, parent)
        return True

    # -- the reward ----------------------------------------------------------------------

    @property
    def term_names(self) -> list[str]:
        return [t.name for t in self.terms]

    def term_exprs(self) -> list[sympy.Expr]:
        return [t.sympy(self.features.names) for t in self.terms]

    def formula(self) -> sympy.Expr:
        """The total reward as sympy over feature symbols."""
        return sympy.Add(*self.term_exprs())

    def formula_text(self) -> str:
        return formula.to_text(self.formula())

    def compile(self, *, cache_dir: str | os.PathLike | None = None) -> RewardKernels:
        """The numba kernels of this reward (cached in memory and on disk)."""
        return compile_terms(self.features, self._named_terms(), cache_dir=cache_dir)

    def batch_reward(self) -> Callable[[np.ndarray, np.ndarray, np.ndarray,
                                        Mapping[str, np.ndarray]], np.ndarray]:
        """The compiled reward as ``fn(obs, act, next_obs, infos) -> rewards`` (e.g. for EPIC):
        (N, width) arrays and every info field of the features as ``infos[name]``."""
        kernels = self.compile()

        def reward(obs: np.ndarray, act: np.ndarray, next_obs: np.ndarray,
                   infos: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
            info = info_matrix(infos or {}, kernels.info_names, len(obs))
            return kernels.rewards(obs, act, next_obs, info)

        return reward

    def reward_fn(self) -> ImitationRewardFn:
        """The reward in the imitation library's protocol (``RewardVecEnvWrapper(venv,
        reward_fn=artifact.reward_fn())``): ``fn(state, action, next_state, done, *,
        infos=None) -> rewards``, batched, (N,) float64. ``done`` is ignored: the reward is a
        function of the transition. A reward reading ``info.<name>`` needs ``infos={name:
        values}``; without it the call raises ``DataError`` naming the fields
        (``symreward.reuse.reward_function``)."""
        return reward_function(self)

    def evaluate(self, dataset: Dataset, *, kernels: RewardKernels | None = None) -> Evaluation:
        """Per-transition rewards and per-term columns on ``dataset``."""
        rewards, columns = evaluate_terms(dataset, self.features, self._named_terms(),
                                          kernels=kernels)
        return Evaluation(rewards=rewards, term_columns=columns, term_names=self.term_names)

    def evaluate_states(self, states: Mapping[str, Any]) -> StateValues:
        """The reward and each term at feature values: ``states`` maps feature names to
        scalars or equal-length 1-D arrays (``evaluate.evaluate_states``). Same bits as
        ``evaluate`` where the features hold the same values."""
        return evaluate_states(self.features, self._named_terms(), states, source=self.source)

    def _named_terms(self) -> list[tuple[str, sympy.Expr]]:
        return list(zip(self.term_names, self.term_exprs(), strict=True))

    # -- keeping the document in step ----------------------------------------------------

    def _fresh_document(self) -> tomlkit.TOMLDocument:
        """A document laid out the way a person would write it, for an artifact made in code."""
        lines = [f"schema = {_toml_value(self.schema)}", f"name = {_toml_value(self.name)}", "",
                 "[features]"]
        lines += [f"{key} = {_toml_value(text)}" for key, text in self.features.items()]
        for term in self.terms:
            lines += ["", "[[terms]]", f"name = {_toml_value(term.name)}",
                      f"expr = {_toml_value(term.expr)}"]
            lines += ["locked = true"] if term.locked else []
            lines += [f"note = {_toml_value(term.note)}"] if term.note else []
        for invariant in self.invariants:
            lines += ["", "[[invariants]]"]
            lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in invariant.items()]
        return tomlkit.parse("\n".join([*lines, ""]) + "\n")

    def _synced_document(self) -> tomlkit.TOMLDocument:
        document = self._document if self._document is not None else self._fresh_document()
        _set(document, "schema", self.schema)
        _set(document, "name", self.name)
        features = document.get("features")
        if not isinstance(features, Table):
            features = tomlkit.table()
            document["features"] = features
        for key in [k for k in features if k not in self.features]:
            del features[key]
        for key, text in self.features.items():
            _set(features, key, text)
        _sync_terms(document, self.terms)
        stored = [dict(i) for i in document.get("invariants", [])]
        if (self.invariants or "invariants" in document) and stored != self.invariants:
            document["invariants"] = _aot(self.invariants)
        provenance = document.get("provenance")
        if not isinstance(provenance, Table):
            provenance = tomlkit.table()
            document["provenance"] = provenance
        self.record_hand_edit()
        self.provenance["hash"] = self.content_hash()
        for key in [k for k in provenance if k not in self.provenance]:
            del provenance[key]
        for key, value in self.provenance.items():
            if key == "history" and isinstance(value, list):
                current = provenance.get(key)
                if current is None or current.unwrap() != value:
                    provenance[key] = _history_array(value)
                continue
            _set(provenance, key, value)
        self._document = document
        return document


def _toml_value(value: Any) -> str:
    """One-line TOML for a value; tables become inline tables."""
    if isinstance(value, Mapping):
        inline = tomlkit.inline_table()
        inline.update({k: tomlkit.parse(f"v = {_toml_value(v)}")["v"] for k, v in value.items()})
        return inline.as_string()
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return tomlkit.item(value).as_string()


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_\-]+", key) else json.dumps(key)


def _set(container: Any, key: str, value: Any) -> None:
    """Assign only when the value changed, so untouched lines keep their comments."""
    if key in container:
        current = container[key]
        current = current.unwrap() if hasattr(current, "unwrap") else current
        if current == value:
            return
    container[key] = value


def _history_array(entries: Sequence[Mapping[str, Any]]) -> Any:
    """``history = [ {change = …, parent = …}, … ]``, one entry per line."""
    array = tomlkit.array()
    array.multiline(True)
    for entry in entries:
        row = tomlkit.inline_table()
        row.update(dict(entry))
        array.append(row)
    return array


def _aot(rows: Sequence[Mapping[str, Any]]) -> AoT:
    array = tomlkit.aot()
    for row in rows:
        table = tomlkit.table()
        for key, value in row.items():
            table[key] = value
        array.append(table)
    return array


def _sync_terms(document: tomlkit.TOMLDocument, terms: Sequence[Term]) -> None:
    """Edit the [[terms]] tables in place, so comments and spacing of kept terms survive."""
    existing = document.get("terms")
    if not isinstance(existing, AoT):
        existing = tomlkit.aot()
        document["terms"] = existing
    wanted = [t.name for t in terms]
    for index in reversed(range(len(existing))):
        if existing[index].get("name") not in wanted:
            del existing[index]
    present = [t.get("name") for t in existing]
    if present != [name for name in wanted if name in present]:
        reordered = sorted(existing, key=lambda t: wanted.index(t.get("name")))
        existing = tomlkit.aot()
        for table in reordered:
            existing.append(table)
        document["terms"] = existing
    for term in terms:
        if term.name not in present:
            if len(existing) and not existing[-1].as_string().endswith("\n\n"):
                existing[-1].add(tomlkit.nl())
            existing.append(tomlkit.table())
            present.append(term.name)
        table = existing[present.index(term.name)]
        _set(table, "name", term.name)
        _set(table, "expr", term.expr)
        for key, value, default in (("locked", term.locked, False), ("note", term.note, "")):
            if value != default:
                _set(table, key, value)
            elif key in table:
                del table[key]


class _KeyLines:
    """Line numbers of keys in TOML text, so errors can point at the line to fix."""

    _HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-]+)\s*\]\]?")
    _KEY = re.compile(r"^\s*([A-Za-z0-9_\-]+|\"[^\"]*\")\s*=")

    def __init__(self, text: str):
        self.lines: dict[tuple[str | None, int | None, str | None], int] = {}
        counts: dict[str, int] = {}
        section: str | None = None
        index: int | None = None
        for number, line in enumerate(text.splitlines(), start=1):
            header = self._HEADER.match(line)
            if header:
                section = header.group(2)
                if header.group(1) == "[[":
                    index = counts.get(section, 0)
                    counts[section] = index + 1
                else:
                    index = None
                self.lines.setdefault((section, index, None), number)
                continue
            key = self._KEY.match(line)
            if key:
                self.lines.setdefault((section, index, key.group(1).strip('"')), number)

    def find(self, section: str | None, index: int | None = None, key: str | None = None
             ) -> int | None:
        return self.lines.get((section, index, key)) or self.lines.get((section, index, None))


def _read_features(table: Any, report: Any) -> FeatureSet | None:
    if table is None:
        report("features: missing the [features] table", "features")
        return None
    if not isinstance(table, dict) or not table:
        report("features: must be a non-empty table of name = \"formula\"", "features")
        return None
    ok = True
    for name, text in table.items():
        if not formula.is_identifier(name):
            report(f"features.{name}: not a valid feature name", "features", None, name)
            ok = False
            continue
        try:
            formula.parse(text, list(table), allow_inputs=True)
        except FormulaError as exc:
            report(f"features.{name}: {exc}", "features", None, name)
            ok = False
    if not ok:
        return None
    try:
        return FeatureSet(table, source="features")
    except FeatureError as exc:
        report(str(exc), "features")
        return None


def _read_terms(rows: Any, report: Any) -> list[dict[str, Any]]:
    if rows is None:
        report("terms: no [[terms]] tables (a reward needs at least one term)", "terms")
        return []
    if not isinstance(rows, list):
        report("terms: must be an array of [[terms]] tables", None, None, "terms")
        return []
    terms = []
    for index, row in enumerate(rows):
        where = f"terms[{index}]"
        if not isinstance(row, dict):
            report(f"{where}: must be a table", "terms", index)
            continue
        good = True
        for key in row:
            if key not in _TERM_KEYS:
                report(f"{where}: unknown key '{key}' (expected {', '.join(_TERM_KEYS)})",
                       "terms", index, key)
                good = False
        for key, kind, required in (("name", str, True), ("expr", str, True),
                                    ("locked", bool, False), ("note", str, False)):
            if key not in row:
                if required:
                    report(f"{where}: missing '{key}'", "terms", index)
                    good = False
            elif not isinstance(row[key], kind):
                report(f"{where}.{key}: must be a {kind.__name__}, not "
                       f"{type(row[key]).__name__}", "terms", index, key)
                good = False
        if good:
            terms.append({k: row[k] for k in _TERM_KEYS if k in row} | {"_index": index})
    seen: dict[str, int] = {}
    for index, row in enumerate(rows):
        name = row.get("name") if isinstance(row, dict) else None
        if isinstance(name, str) and name in seen:
            report(f"terms[{index}]: duplicate term name '{name}' (first at terms[{seen[name]}])",
                   "terms", index, "name")
        elif isinstance(name, str):
            seen[name] = index
    return terms


def _term_problem_sites(terms: list[dict[str, Any]], feature_names: Sequence[str]
                        ) -> list[tuple[str, int, str]]:
    problems = []
    for term in terms:
        index = term["_index"]
        if not formula.is_identifier(term["name"]):
            problems.append((f"terms[{index}].name: {term['name']!r} must be an identifier",
                             index, "name"))
        try:
            formula.parse(term["expr"], feature_names)
        except FormulaError as exc:
            problems.append((f"terms[{index}] '{term['name']}'.expr: {exc}", index, "expr"))
    return problems


def _term_problems(terms: Sequence[Term], features: FeatureSet) -> list[str]:
    rows = [{"name": t.name, "expr": t.expr, "_index": i} for i, t in enumerate(terms)]
    problems = [p for p, _, _ in _term_problem_sites(rows, features.names)]
    names = [t.name for t in terms]
    problems += [f"duplicate term name '{n}'" for n in sorted({n for n in names
                                                               if names.count(n) > 1})]
    if not terms:
        problems.append("a reward needs at least one term")
    return problems


def _read_invariants(rows: Any, report: Any) -> list[dict[str, Any]]:
    if not isinstance(rows, list):
        report("invariants: must be an array of [[invariants]] tables", None, None, "invariants")
        return []
    invariants = []
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            report(f"invariants[{index}]: must be a table", "invariants", index)
            continue
        rule = row.get("rule")
        if rule not in INVARIANT_RULES:
            report(f"invariants[{index}].rule: {rule!r} is not one of "
                   f"{', '.join(INVARIANT_RULES)}", "invariants", index, "rule")
            continue
        invariants.append(dict(row))
    return invariants
