"""Lineage in an artifact's provenance, with one owner for its rules.

``provenance.parent`` is the content hash of the version an artifact was derived from, and
``provenance.history`` lists ``{change, parent}`` entries, oldest first, each naming the
content hash before that change. An artifact learned with ``learn --from`` from an artifact
without history records only a parent: its history is then implied, one step "learned".
``hash`` is the content hash at the last save, so an artifact whose content differs from it
was edited by hand since.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from symreward.artifact import RewardArtifact

HAND_EDIT = "edited by hand"


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


def learned_history(base: RewardArtifact, change: str) -> list[dict[str, Any]]:
    """The history of an artifact learned from ``base``: base's history, a hand edit of base
    not yet recorded, then ``change`` with base's content hash as its parent."""
    hand_edit = ([{"change": HAND_EDIT, "parent": base.recorded_hash}]
                 if base.edited_by_hand else [])
    return [*base.history, *hand_edit, {"change": change, "parent": base.content_hash()}]
