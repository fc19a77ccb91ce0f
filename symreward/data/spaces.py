"""Which gymnasium spaces a dataset can hold: flat Box observations, Box or Discrete actions."""

from __future__ import annotations

from typing import Any

from symreward.errors import DataError


def require_supported_spaces(observation_space: Any, action_space: Any, shown: str) -> None:
    """Raise ``DataError`` naming ``shown`` unless the spaces fit the (N, dim) array layout."""
    from gymnasium import spaces

    if not isinstance(observation_space, spaces.Box):
        raise DataError(
            f"{shown}: observation space {observation_space} is not supported; only Box "
            "observation spaces are (flatten Dict/Tuple observations into a Box first)"
        )
    if not isinstance(action_space, spaces.Box | spaces.Discrete):
        raise DataError(
            f"{shown}: action space {action_space} is not supported; only Box and Discrete are"
        )
