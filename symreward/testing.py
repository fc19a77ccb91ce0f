"""Property testing of reward artifacts: hypothesis strategies and a pytest plugin.

Strategies::

    from symreward.testing import feature_states, transitions

    @given(feature_states(artifact))            # {feature: float} inside the domain box
    def test_never_positive(state):
        assert artifact.evaluate_states(state).reward <= 0

    @given(transitions(artifact, dataset))      # {"obs", "act", "next_obs", "info"} rows

The pytest plugin (entry point ``pytest11``: ``symreward = "symreward._pytest_plugin"``, whose
hooks import this module only when there is a reward file to collect) collects files
named ``*.reward.toml`` — no other TOML file — and runs each ``[[invariants]]`` table as its own
test item: a violated invariant fails with the counterexample in the report; proved and held
pass; vacuous and unknown are skipped with the reason. Options (ini or command line):
``symreward_examples`` / ``--symreward-examples`` (hypothesis examples per invariant, default 200)
and ``symreward_time_budget`` / ``--symreward-time-budget`` (proof seconds, default 2).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from symreward.errors import SymrewardError
from symreward.invariants import (
    InvariantResult,
    check,
    format_result,
    parse_invariants,
    state_strategy,
)
from symreward.invariants.domain import feature_domain

if TYPE_CHECKING:
    from symreward.artifact import RewardArtifact

__all__ = ["feature_states", "transitions"]


def feature_states(artifact: RewardArtifact,
                   domain: Mapping[str, tuple[float, float]] | None = None) -> Any:
    """Strategy of ``{feature: float}`` inside the feature domain
    (``symreward.invariants.domain.feature_domain``): each feature's recorded range, or
    ``domain``'s range for the features it names, intersected with its natural range (the
    values its formula can take: a distance is never negative); an unbounded side reaches
    ±1e6 (finite floats only). Raises ``InvariantError`` for an unknown feature or a range
    outside a feature's natural range."""
    return state_strategy(artifact.features.names, feature_domain(artifact, domain))


def transitions(artifact: RewardArtifact, dataset: Any = None, *, scale: float = 0.05) -> Any:
    """Strategy of raw transitions ``{"obs", "act", "next_obs": 1-D float64 arrays, "info":
    {name: float}}`` for the inputs the artifact's features read.

    Without a dataset every input is a float in [-10, 10]; with one, a row of the dataset with
    each value moved by up to ``scale`` times its column's standard deviation.
    """
    from hypothesis import strategies as st

    used = artifact.features.inputs()
    info_names = sorted(used["info"])
    if dataset is None:
        dims = {k: (max(used[k]) + 1 if used[k] else 0) for k in ("obs", "act")}
        dims["obs"] = max(dims["obs"], max(used["next_obs"]) + 1 if used["next_obs"] else 0)
        value = st.floats(-10, 10, allow_nan=False)

        def row(n: int) -> Any:
            return st.lists(value, min_size=n, max_size=n).map(
                lambda v: np.asarray(v, dtype=np.float64))

        return st.fixed_dictionaries({
            "obs": row(dims["obs"]), "act": row(dims["act"]), "next_obs": row(dims["obs"]),
            "info": st.fixed_dictionaries({n: value for n in info_names})})
    tables = {"obs": np.asarray(dataset.observations, dtype=np.float64),
              "act": np.asarray(dataset.actions, dtype=np.float64),
              "next_obs": np.asarray(dataset.next_observations, dtype=np.float64)}
    infos = {n: np.asarray(dataset.infos[n], dtype=np.float64) for n in info_names}
    spread = {k: np.nan_to_num(t.std(axis=0)) if len(t) else np.zeros(t.shape[1])
              for k, t in tables.items()}
    info_spread = {n: float(np.nan_to_num(v.std())) for n, v in infos.items()}
    width = sum(t.shape[1] for t in tables.values()) + len(info_names)
    moves = st.lists(st.floats(-scale, scale, allow_nan=False), min_size=width, max_size=width)

    def build(index: int, move: list[float]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        offset = 0
        for key, table in tables.items():
            n = table.shape[1]
            out[key] = table[index] + np.asarray(move[offset:offset + n]) * spread[key]
            offset += n
        out["info"] = {}
        for name in info_names:
            out["info"][name] = float(infos[name][index] + move[offset] * info_spread[name])
            offset += 1
        return out

    return st.builds(build, st.integers(0, max(0, dataset.n - 1)), moves)


# -- pytest items (collected by ``symreward._pytest_plugin``) ------------------------------


def _setting(config: Any, option: str, ini: str, kind: type) -> Any:
    value = config.getoption(option)
    return kind(config.getini(ini)) if value is None else value


class InvariantViolation(AssertionError):
    """Raised by an invariant test item when the invariant is violated."""

    def __init__(self, result: InvariantResult):
        self.result = result
        super().__init__(format_result(result))


def reward_file_class() -> type:
    """The pytest collector of a ``*.reward.toml`` file (built on first use: pytest is only
    imported where the plugin runs)."""
    return _plugin_classes()[0]


@functools.cache
def _plugin_classes() -> tuple[type, type]:
    import pytest

    from symreward.artifact import RewardArtifact

    class RewardFile(pytest.File):
        def collect(self) -> Any:
            try:
                self.artifact = RewardArtifact.load(self.path)
                parse_invariants(self.artifact)
            except SymrewardError as exc:
                raise self.CollectError(str(exc)) from None
            for index, invariant in enumerate(self.artifact.invariants):
                yield InvariantItem.from_parent(
                    self, name=f"invariants[{index}]:{invariant.get('rule')}", index=index)

    class InvariantItem(pytest.Item):
        def __init__(self, *, index: int, **kwargs: Any):
            super().__init__(**kwargs)
            self.index = index

        def runtest(self) -> None:
            config = self.config
            result = check(
                self.parent.artifact, indices=[self.index],
                examples=_setting(config, "symreward_examples", "symreward_examples", int),
                time_budget=_setting(config, "symreward_time_budget", "symreward_time_budget",
                                     float))[0]
            self.user_properties.append(("symreward_status", result.status))
            if result.status == "violated":
                raise InvariantViolation(result)
            if result.status in ("vacuous", "unknown"):
                pytest.skip(f"{result.status}: {result.detail or result.method}")

        def repr_failure(self, excinfo: Any, style: Any = None) -> Any:
            if isinstance(excinfo.value, InvariantViolation):
                return (f"{self.path.name}: invariant violated\n"
                        f"{format_result(excinfo.value.result)}")
            return super().repr_failure(excinfo)

    return RewardFile, InvariantItem
