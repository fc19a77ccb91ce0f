"""What an artifact is compared with by default: its parent and the runners-up of its front.

The parent. Lineage records content hashes, not paths (``provenance.parent`` is the content
hash of the version an artifact was derived from; see ``symreward.provenance``). The parent is
therefore *found*: among the ``.toml`` files beside the artifact (and in any directories or
files passed), the one whose content hash is the recorded parent. A parent that was overwritten
(``patch`` in place) or lives elsewhere is not found, and is not compared.

The front. ``provenance.front`` (written by the learner) lists the Pareto front of complexity
against held-out loss, one entry per model: ``complexity``, ``heldout_loss``,
``heldout_accuracy``, ``formula`` and ``chosen = true`` on the selected one. ``formula`` is the
model's learned part over the artifact's features with its weights at four significant digits;
it leaves out the locked terms (the fixed offset the model was fitted on top of) and the
intercept (a constant, which no distance sees). A runner-up is rebuilt as the artifact's locked
terms plus its formula. The runners-up are the other entries, lowest held-out loss first: the
alternatives the data support almost as well as the chosen one. The front describes the
artifact as it was learned; an artifact edited since is compared with what was learned.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from symreward.artifact import RewardArtifact, Term
from symreward.audit.distances import Counterpart
from symreward.errors import SymrewardError

__all__ = ["FrontMember", "default_comparisons", "find_parent", "front_members", "runners_up"]

#: Runners-up compared by default: the front's best alternatives, not its every simplification.
DEFAULT_RUNNERS_UP = 3


@dataclass(frozen=True)
class FrontMember:
    """One entry of an artifact's recorded front, rebuilt as a reward where that is possible.

    ``artifact`` is None, and ``problem`` says why, when the entry cannot be compared: its
    formula does not parse over the artifact's features, or (with the locked terms) it is a
    constant, which no distance can compare."""

    index: int
    complexity: int | None
    heldout_loss: float | None
    formula: str
    chosen: bool
    artifact: RewardArtifact | None
    problem: str | None = None

    @property
    def label(self) -> str:
        shown = "?" if self.complexity is None else self.complexity
        return f"front #{self.index} (complexity {shown})"


def front_members(artifact: RewardArtifact) -> list[FrontMember]:
    """Every entry of ``artifact.provenance["front"]``, in the recorded order (simplest first);
    an empty list when none is recorded (an artifact written by hand)."""
    front = artifact.provenance.get("front")
    if not isinstance(front, list):
        return []
    locked = [t for t in artifact.terms if t.locked]
    members = []
    for index, entry in enumerate(front):
        if not isinstance(entry, Mapping):
            continue
        formula = entry.get("formula")
        if not isinstance(formula, str):
            continue
        rebuilt, problem = _rebuild(artifact, locked, index, formula)
        members.append(FrontMember(
            index=index, complexity=_int(entry.get("complexity")),
            heldout_loss=_float(entry.get("heldout_loss")), formula=formula,
            chosen=entry.get("chosen") is True, artifact=rebuilt, problem=problem))
    return members


def runners_up(artifact: RewardArtifact, limit: int | None = DEFAULT_RUNNERS_UP
               ) -> list[FrontMember]:
    """The comparable entries of the front other than the chosen one, lowest held-out loss
    first (ties: the simpler first), at most ``limit`` (all with None)."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                              or limit < 0):
        raise SymrewardError(f"runners_up limit must be a non-negative integer or None; got "
                             f"{limit!r}")
    others = [m for m in front_members(artifact) if not m.chosen and m.artifact is not None]
    others.sort(key=lambda m: (math.inf if m.heldout_loss is None else m.heldout_loss,
                               math.inf if m.complexity is None else m.complexity, m.index))
    return others if limit is None else others[:limit]


def find_parent(artifact: RewardArtifact, search: Iterable[str | os.PathLike] = ()
                ) -> Path | None:
    """The file holding ``artifact``'s parent version: a ``.toml`` artifact whose content hash
    is ``provenance.parent``, looked for beside the artifact's own file and in ``search``
    (directories, whose ``*.toml`` are read, or files); None when there is no recorded parent
    or no such file. Files that are not artifacts are passed over."""
    parent = artifact.provenance.get("parent")
    if not isinstance(parent, str):
        return None
    places: list[Path] = []
    own = Path(artifact.source)
    if own.is_file():
        places.append(own.parent)
    places.extend(Path(p) for p in search)
    candidates: list[Path] = []
    for place in places:
        candidates.extend(sorted(place.glob("*.toml")) if place.is_dir() else [place])
    seen: set[Path] = set()
    for candidate in candidates:
        resolved = candidate.resolve()
        if resolved in seen or (own.is_file() and resolved == own.resolve()):
            continue
        seen.add(resolved)
        try:
            if RewardArtifact.load(candidate).content_hash() == parent:
                return candidate
        except SymrewardError:
            continue
    return None


def default_comparisons(artifact: RewardArtifact, *, search: Iterable[str | os.PathLike] = (),
                        limit: int | None = DEFAULT_RUNNERS_UP) -> dict[str, Counterpart]:
    """The audit's comparisons when none are given: the parent (``find_parent``) when its file
    is found, then the runners-up of the front (``runners_up``), as ``compare_rewards`` takes
    them."""
    out: dict[str, Counterpart] = {}
    parent = find_parent(artifact, search)
    if parent is not None:
        out[f"parent ({parent.name})"] = Counterpart(RewardArtifact.load(parent),
                                                     source="parent", path=str(parent))
    for member in runners_up(artifact, limit):
        assert member.artifact is not None  # runners_up keeps comparable members only
        out[member.label] = Counterpart(member.artifact, source="front",
                                        formula=member.artifact.formula_text())
    return out


def _rebuild(artifact: RewardArtifact, locked: list[Term], index: int, formula: str
             ) -> tuple[RewardArtifact | None, str | None]:
    try:
        rebuilt = RewardArtifact(
            name=f"{artifact.name} front #{index}", features=artifact.features,
            terms=[*locked, Term(f"front_{index}", formula)],
            source=f"{artifact.source} provenance.front[{index}]")
    except SymrewardError as error:
        return None, f"its formula cannot be read: {error}"
    if not rebuilt.formula().free_symbols:
        return None, "a constant reward, which no distance can compare"
    return rebuilt, None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None
