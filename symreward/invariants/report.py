"""The decision on one invariant (``InvariantResult``) and how it is shown."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

STATUSES = ("proved", "held", "violated", "vacuous", "unknown")


@dataclass
class InvariantResult:
    """The decision on one invariant."""

    index: int
    rule: str
    description: str
    status: str  # one of STATUSES
    method: str
    examples: int = 0
    counterexample: dict[str, float] | None = None
    reward: float | None = None
    contributions: dict[str, float] | None = None
    other: dict[str, Any] | None = None  # the compared state of a pairwise rule
    detail: str = ""
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    # the domain searched: {feature: {"lo", "hi" (None: unbounded), "source"}}
    domain: dict[str, dict[str, Any]] | None = None


def format_result(result: InvariantResult, *, show_domain: bool = True) -> str:
    """One line per invariant, the domain it was decided on (each feature's bounds and where
    they come from) unless ``show_domain`` is false, and the counterexample block of a
    violation."""
    from symreward.invariants.domain import describe_domain

    shown = f"N={result.examples}" if result.examples else ""
    line = (f"[{result.index}] {result.status:<8}  {result.description}  — {result.method}"
            f"{'  ' + shown if shown else ''}  ({result.seconds:.2f} s)")
    lines = [line]
    if result.detail:
        lines.append(f"    {result.detail}")
    if show_domain and result.domain:
        lines.append(f"    domain: {describe_domain(result.domain)}")
    if result.counterexample is not None:
        lines += _state_block("counterexample", result.counterexample, result.reward,
                              result.contributions)
    if result.other is not None:
        lines += _state_block("compared with", result.other["state"], result.other["reward"],
                              result.other["contributions"])
    return "\n".join(lines)


def _state_block(title: str, state: Mapping[str, float], reward: float | None,
                 contributions: Mapping[str, float] | None) -> list[str]:
    lines = [f"    {title}: " + ", ".join(f"{k} = {v:.6g}" for k, v in state.items())]
    if reward is not None:
        lines.append(f"      reward = {reward:.6g}")
    for name, value in (contributions or {}).items():
        lines.append(f"        {name:<16} {value:+.6g}")
    return lines
