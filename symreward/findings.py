"""Findings: what ``check`` and ``audit`` found wrong with a reward, as states a person can
accept as constraints of the next fit (``symreward harden``).

A findings file (TOML, ``SCHEMA``) names the artifact it was made for and lists findings:

    schema = "symreward-findings/1"
    artifact = "reward.toml"
    artifact_hash = "sha256:…"

    [[findings]]
    id = "check-0"                 # unique in the file
    source = "check"               # check | audit | hand
    probe = "decreasing"           # the rule or exploit probe that found it
    description = "…"              # one line for a person
    state = { x = 0.5, y = 0.0 }   # a value for every feature of the artifact
    other = { x = 0.4, y = 0.0 }   # the compared state (want = "below" only)
    want = "below"                 # below: R(state) < R(other);
                                   # at_most / at_least: R(state) <= / >= bound
    bound = 0.0                    # at_most / at_least only
    margin = 0.0                   # below only, optional: the least gap R(other) - R(state)
                                   # a fit keeps; 0 makes it R(state) <= R(other)
    accept = false                 # a person sets true to make it a constraint

``findings_from_check`` turns violated invariants into findings (``independent`` gives none:
an equality has no ``want``; harden enforces that rule from the invariant itself, by leaving out
every term that reads the feature); ``findings_from_exploits`` turns the exploit search's
maximiser, when it lies far from the data above the data's best reward, into one.
``write_findings`` writes a file atomically, ``read_findings`` reads and validates one: every
problem is reported at once, each naming the file, the finding's index and the field.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tomlkit

from symreward.atomic import atomic_write_text
from symreward.errors import SymrewardError
from symreward.tomlfiles import read_toml

if TYPE_CHECKING:
    from symreward.artifact import RewardArtifact
    from symreward.features import FeatureSet
    from symreward.invariants.report import InvariantResult

SCHEMA = "symreward-findings/1"
WANTS = ("below", "at_most", "at_least")
SOURCES = ("check", "audit", "hand")
# An exploit's maximiser is far from the data at this distance from the nearest recorded state,
# in the exploit search's standardised feature space (standard deviations of each feature).
FAR = 1.0
_TOP_LEVEL_KEYS = ("schema", "artifact", "artifact_hash", "findings")
_KEYS = ("id", "source", "probe", "description", "state", "other", "want", "bound", "margin",
         "accept")
_REQUIRED = ("id", "source", "probe", "state", "want")
_HEADER = """\
Findings for {artifact}: states where the reward breaks an invariant or can be exploited.
To make a finding a constraint of the next fit, set its `accept = true`, then run
  symreward harden {artifact} DATA --findings THIS_FILE -o NEW.toml
want = "below": the reward at `state` must be below the reward at `other`;
want = "at_most" / "at_least": the reward at `state` must be at most / at least `bound`."""


class FindingsError(SymrewardError):
    """A findings file that cannot be read or is invalid; lists every problem found."""

    def __init__(self, problems: list[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("; ".join(self.problems) if len(self.problems) < 2 else
                         f"{len(self.problems)} problems:\n  " + "\n  ".join(self.problems))


@dataclass(frozen=True)
class Finding:
    """One finding: a state (and for ``want = "below"`` a compared state) and what the reward
    should do there."""

    id: str
    source: str
    probe: str
    description: str
    state: Mapping[str, float]
    want: str
    other: Mapping[str, float] | None = None
    bound: float | None = None
    accept: bool = False
    margin: float | None = None

    @property
    def strict(self) -> bool:
        """Whether ``below`` means strictly below (no ``margin`` of 0)."""
        return self.margin is None or self.margin > 0

    def as_dict(self) -> dict[str, Any]:
        """The finding's table as in the file (``other``, ``bound`` and ``margin`` only where
        set)."""
        table: dict[str, Any] = {"id": self.id, "source": self.source, "probe": self.probe,
                                 "description": self.description,
                                 "state": {k: float(v) for k, v in self.state.items()}}
        if self.other is not None:
            table["other"] = {k: float(v) for k, v in self.other.items()}
        table["want"] = self.want
        if self.bound is not None:
            table["bound"] = float(self.bound)
        if self.margin is not None:
            table["margin"] = float(self.margin)
        table["accept"] = self.accept
        return table


@dataclass
class Findings:
    """A findings file: the artifact it was made for (path and content hash) and its
    findings."""

    artifact: str
    artifact_hash: str
    findings: list[Finding] = field(default_factory=list)
    source: str = "<memory>"

    @property
    def accepted(self) -> list[Finding]:
        """The findings a person accepted (``accept = true``)."""
        return [f for f in self.findings if f.accept]


# ------------------------------------------------------------------------------ from results


def findings_from_check(artifact: RewardArtifact, results: Sequence[InvariantResult]
                        ) -> list[Finding]:
    """One finding for each violated invariant in ``results`` (``check(artifact)``'s), in
    their order, none accepted: ``bounded`` and ``sign`` give ``at_most`` / ``at_least`` the
    bound at the counterexample; ``prefers``, ``decreasing`` and ``increasing`` give ``below``
    with the pair of states in the order the rule wants (``margin = 0`` for the monotone
    rules, which allow equal rewards). ``independent`` gives none (module docstring)."""
    found = []
    for result in results:
        if result.status != "violated" or result.counterexample is None:
            continue
        table = artifact.invariants[result.index]
        state, reward = result.counterexample, result.reward
        other = result.other["state"] if result.other is not None else None
        other_reward = result.other["reward"] if result.other is not None else None
        common = {"id": f"check-{result.index}", "source": "check", "probe": result.rule}
        if result.rule in ("bounded", "sign"):
            want, bound = _bound_wanted(result.rule, table, reward)
            word = "at most" if want == "at_most" else "at least"
            found.append(Finding(**common, state=state, want=want, bound=bound,
                                 description=f"{result.description}: the reward here is "
                                             f"{_shown(reward)}, must be {word} {bound:g}"))
        elif result.rule in ("prefers", "decreasing", "increasing") and other is not None:
            low, high = (other, state) if result.rule == "increasing" else (state, other)
            low_r, high_r = ((other_reward, reward) if result.rule == "increasing"
                             else (reward, other_reward))
            found.append(Finding(**common, state=low, other=high, want="below",
                                 margin=None if result.rule == "prefers" else 0.0,
                                 description=f"{result.description}: the reward at state is "
                                             f"{_shown(low_r)}, must be below the "
                                             f"{_shown(high_r)} at other"))
    return found


def _bound_wanted(rule: str, table: Mapping[str, Any], reward: float | None
                  ) -> tuple[str, float]:
    if rule == "sign":
        return ("at_most", 0.0) if table["is"] in ("negative", "nonpositive") else \
            ("at_least", 0.0)
    hi, lo = table.get("hi"), table.get("lo")
    if hi is not None and (lo is None or reward is None or not reward <= hi):
        return "at_most", float(hi)
    return "at_least", float(lo)


def findings_from_exploits(artifact: RewardArtifact, exploits: Mapping[str, Any], *,
                           best_state: Mapping[str, float] | None = None,
                           far: float = FAR) -> list[Finding]:
    """A finding from the audit's exploit search (the ``exploits`` section of
    ``symreward/audit``, see ``audit.run``): where the reward's maximiser lies at least ``far``
    from the data (``distance_to_data``) and scores above the best reward seen in the data
    (``data_best``), the reward there should be below the data's best: ``want = "below"``
    against ``best_state`` (the features of the data's best-scoring transition: by default the
    section's ``data_best_state``) when there is one, else ``at_most`` the data's best
    reward. Nothing otherwise (an exploit inside the data, or no data to compare with)."""
    maximum = exploits.get("maximum")
    if not isinstance(maximum, Mapping):
        return []
    value, best = maximum.get("value"), maximum.get("data_best")
    distance, state = maximum.get("distance_to_data"), maximum.get("state")
    if value is None or best is None or distance is None or not isinstance(state, Mapping):
        return []
    if not (distance >= far and value > best):
        return []
    names = artifact.features.names
    if best_state is None and isinstance(maximum.get("data_best_state"), Mapping):
        best_state = maximum["data_best_state"]
    problems = _state_problems(state, names, "exploits.maximum.state")
    if best_state is not None:
        problems += _state_problems(best_state, names, "best_state")
    if problems:
        raise FindingsError([f"{artifact.source}: {p}" for p in problems])
    description = (f"exploit: the reward's maximum {value:.6g} lies {distance:.3g} from the "
                   f"data (standardised) and above the data's best {best:.6g}")
    common = {"id": "audit-max", "source": "audit", "probe": "exploit-maximum",
              "description": description, "state": {n: float(state[n]) for n in names}}
    if best_state is not None:
        return [Finding(**common, other={n: float(best_state[n]) for n in names},
                        want="below")]
    return [Finding(**common, want="at_most", bound=float(best))]


def _shown(value: float | None) -> str:
    return "undefined" if value is None or value != value else f"{value:.6g}"


# -------------------------------------------------------------------------- reading, writing


def write_findings(path: str | os.PathLike, artifact: RewardArtifact,
                   findings: Sequence[Finding]) -> None:
    """Write ``findings`` for ``artifact`` to ``path`` atomically, with a header that tells a
    person how to accept them."""
    document = tomlkit.document()
    for line in _HEADER.format(artifact=artifact.source).splitlines():
        document.add(tomlkit.comment(line))
    document.add(tomlkit.nl())
    document["schema"] = SCHEMA
    document["artifact"] = artifact.source
    document["artifact_hash"] = artifact.content_hash()
    rows = tomlkit.aot()
    for finding in findings:
        table = tomlkit.table()
        for key, value in finding.as_dict().items():
            if isinstance(value, dict):
                inline = tomlkit.inline_table()
                inline.update(value)
                table[key] = inline
            else:
                table[key] = value
        rows.append(table)
    # tomlkit writes an empty array of tables at the top of the file, above the header.
    document["findings"] = rows if findings else tomlkit.array()
    atomic_write_text(Path(path), tomlkit.dumps(document))


def read_findings(path: str | os.PathLike, artifact: RewardArtifact | FeatureSet
                  ) -> Findings:
    """Read and validate the findings file at ``path`` against the features of ``artifact``
    (an artifact or a feature set); raises ``FindingsError`` listing every problem."""
    data = read_toml(path, FindingsError).unwrap()
    features = getattr(artifact, "features", artifact)
    return parse_findings(data, features.names, str(path))


def parse_findings(data: Mapping[str, Any], names: Sequence[str], source: str, *,
                   other_keys: Sequence[str] = ()) -> Findings:
    """The findings document ``data`` (a parsed TOML table) over the features ``names``;
    ``other_keys`` are further top-level keys the caller reads (a constraints file's
    ``invariants``). Raises ``FindingsError`` listing every problem."""
    problems: list[str] = []
    for key in data:
        if key not in (*_TOP_LEVEL_KEYS, *other_keys):
            problems.append(f"{source}: unknown top-level key '{key}' (expected "
                            f"{', '.join((*_TOP_LEVEL_KEYS, *other_keys))})")
    if data.get("schema") != SCHEMA:
        problems.append(f"{source}: schema: {data.get('schema')!r} is not supported (expected "
                        f"{SCHEMA!r})" if "schema" in data
                        else f"{source}: schema: missing (expected schema = {SCHEMA!r})")
    for key in ("artifact", "artifact_hash"):
        if key in data and not isinstance(data[key], str):
            problems.append(f"{source}: {key}: must be a string, not {type(data[key]).__name__}")
    rows = data.get("findings", [])
    findings: list[Finding] = []
    if not isinstance(rows, list):
        problems.append(f"{source}: findings: must be an array of [[findings]] tables")
        rows = []
    seen: dict[str, int] = {}
    for index, row in enumerate(rows):
        where = f"{source}: findings[{index}]"
        found, row_problems = _read_finding(row, names, where)
        problems += row_problems
        if found is not None and found.id in seen:
            problems.append(f"{where}.id: duplicate id {found.id!r} (first at "
                            f"findings[{seen[found.id]}])")
        elif found is not None:
            seen[found.id] = index
            findings.append(found)
    if problems:
        raise FindingsError(problems)
    return Findings(artifact=str(data.get("artifact", "")),
                    artifact_hash=str(data.get("artifact_hash", "")), findings=findings,
                    source=source)


def _read_finding(row: Any, names: Sequence[str], where: str
                  ) -> tuple[Finding | None, list[str]]:
    """The finding in ``row``, or None, and the problems found."""
    if not isinstance(row, Mapping):
        return None, [f"{where}: must be a table"]
    problems = [f"{where}: unknown key '{key}' (expected {', '.join(_KEYS)})"
                for key in row if key not in _KEYS]
    problems += [f"{where}: missing '{key}'" for key in _REQUIRED if key not in row]
    for key in ("id", "source", "probe", "description", "want"):
        if key in row and not isinstance(row[key], str):
            problems.append(f"{where}.{key}: must be a string, not {type(row[key]).__name__}")
    if isinstance(row.get("source"), str) and row["source"] not in SOURCES:
        problems.append(f"{where}.source: {row['source']!r} is not one of {', '.join(SOURCES)}")
    want = row.get("want")
    if isinstance(want, str) and want not in WANTS:
        problems.append(f"{where}.want: {want!r} is not one of {', '.join(WANTS)}")
    if "accept" in row and not isinstance(row["accept"], bool):
        problems.append(f"{where}.accept: must be true or false, not {row['accept']!r}")
    if "state" in row:
        problems += _state_problems(row["state"], names, f"{where}.state")
    if want == "below":
        if "other" not in row:
            problems.append(f"{where}.other: needed for want = \"below\" (the compared state)")
        if "bound" in row:
            problems.append(f"{where}.bound: only for want = \"at_most\" or \"at_least\"")
        if "margin" in row and not (_finite_number(row["margin"]) and row["margin"] >= 0):
            problems.append(f"{where}.margin: must be a finite number >= 0, not "
                            f"{row['margin']!r}")
    elif want in ("at_most", "at_least"):
        if "other" in row:
            problems.append(f"{where}.other: only for want = \"below\"")
        if "margin" in row:
            problems.append(f"{where}.margin: only for want = \"below\"")
        if "bound" not in row:
            problems.append(f"{where}.bound: needed for want = {want!r}")
        elif not _finite_number(row["bound"]):
            problems.append(f"{where}.bound: must be a finite number, not {row['bound']!r}")
    if "other" in row:
        problems += _state_problems(row["other"], names, f"{where}.other")
    if problems:
        return None, problems
    return Finding(id=row["id"], source=row["source"], probe=row["probe"],
                   description=row.get("description", ""),
                   state={n: float(row["state"][n]) for n in names}, want=want,
                   other=({n: float(row["other"][n]) for n in names} if "other" in row
                          else None),
                   bound=float(row["bound"]) if "bound" in row else None,
                   accept=row.get("accept", False),
                   margin=float(row["margin"]) if "margin" in row else None), []


def _state_problems(state: Any, names: Sequence[str], where: str) -> list[str]:
    if not isinstance(state, Mapping):
        return [f"{where}: must be a table of feature = number"]
    problems = [f"{where}.{key}: unknown feature {key!r} (known: {', '.join(names)})"
                for key in state if key not in names]
    problems += [f"{where}: missing a value for feature {name!r}"
                 for name in names if name not in state]
    problems += [f"{where}.{key}: must be a finite number, not {value!r}"
                 for key, value in state.items() if key in names and not _finite_number(value)]
    return problems


def _finite_number(value: Any) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))
