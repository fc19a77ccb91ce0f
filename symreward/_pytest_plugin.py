"""The pytest plugin's hooks (entry point ``pytest11``): collect ``*.reward.toml`` files as
invariant tests (``symreward.testing`` says how). pytest loads this module at every start in
any environment where symreward is installed, so it imports nothing heavy; the artifact,
sympy and the checker are imported when a reward file is collected."""

from __future__ import annotations

from typing import Any


def pytest_addoption(parser: Any) -> None:
    group = parser.getgroup("symreward", "reward artifact invariants (*.reward.toml)")
    group.addoption("--symreward-examples", type=int, default=None,
                    help="hypothesis examples per invariant (default 200)")
    group.addoption("--symreward-time-budget", type=float, default=None,
                    help="seconds each invariant's proof may take (default 2)")
    parser.addini("symreward_examples", "hypothesis examples per invariant", default="200")
    parser.addini("symreward_time_budget", "seconds each proof may take", default="2")


def pytest_collect_file(file_path: Any, parent: Any) -> Any:
    if file_path.name.endswith(".reward.toml"):
        from symreward.testing import reward_file_class

        return reward_file_class().from_parent(parent, path=file_path)
    return None
