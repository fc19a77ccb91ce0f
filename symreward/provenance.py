"""Lineage in an artifact's provenance, with one owner for its rules.

``provenance.parent`` is the content hash of the version an artifact was derived from, and
``provenance.history`` lists ``{change, parent}`` entries, oldest first, each naming the
content hash before that change. An artifact learned with ``learn --from`` from an artifact
without history records only a parent: its history is then implied, one step "learned".
``hash`` is the content hash at the last save, so an artifact whose content differs from it
was edited by hand since. An entry may hold more keys than ``change`` and ``parent`` (a harden
records its counts, ``hardened_history``).
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from symreward.artifact import RewardArtifact

HAND_EDIT = "edited by hand"
HARDEN = "harden"


def recorded_history(provenance: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The entries of ``provenance.history`` (copies; anything but tables ignored)."""
    history = provenance.get("history", [])
    if not isinstance(history, list):
        return []
    return [dict(entry) for entry in history if isinstance(entry, Mapping)]


def implied_history(provenance: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The recorded history, or, where there is none but a parent is recorded, the one step
    "learned (objective)" from it."""
    history = recorded_history(provenance)
    if not history and isinstance(provenance.get("parent"), str):
        objective = provenance.get("objective")
        history = [{"change": "learned" + (f" ({objective})" if objective else ""),
                    "parent": provenance["parent"]}]
    return history


def append_change(provenance: MutableMapping[str, Any], change: str, parent: str) -> None:
    """Record ``change``, made to the version whose content hash is ``parent``: the entry is
    appended (after the implied "learned" step, unless that step's parent is this one) and
    ``parent`` becomes the artifact's parent."""
    history = recorded_history(provenance) or [
        entry for entry in implied_history(provenance) if entry["parent"] != parent]
    history.append({"change": change, "parent": parent})
    provenance["parent"] = parent
    provenance["history"] = history


def learned_history(base: RewardArtifact, change: str, **details: Any
                    ) -> list[dict[str, Any]]:
    """The history of an artifact learned from ``base``: base's history, a hand edit of base
    not yet recorded, then ``change`` with base's content hash as its parent (and
    ``details``, plain values that say more about the change)."""
    hand_edit = ([{"change": HAND_EDIT, "parent": base.recorded_hash}]
                 if base.edited_by_hand else [])
    return [*base.history, *hand_edit,
            {"change": change, "parent": base.content_hash(), **details}]


def hardened_history(base: RewardArtifact, *, findings: int, invariants: int,
                     counterexamples: int, rounds: int) -> list[dict[str, Any]]:
    """The history of an artifact hardened from ``base`` (``symreward harden``): its last
    entry is the change "harden", with how many accepted findings and invariants were
    constraints, how many counterexamples of the invariants were added between the rounds of
    fitting, and how many rounds ran."""
    change = (f"{HARDEN}: {findings} accepted finding{'s' * (findings != 1)}, {invariants} "
              f"invariant{'s' * (invariants != 1)} as constraints"
              + (f", {counterexamples} counterexample{'s' * (counterexamples != 1)} added"
                 if counterexamples else "") + f" ({rounds} round{'s' * (rounds != 1)})")
    return learned_history(base, change, findings=findings, invariants=invariants,
                           counterexamples=counterexamples, rounds=rounds)
