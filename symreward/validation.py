"""Checks of option values: each raises an ``OptionError`` that names the option, its value and
the values it can take, before any work is done with it."""

from __future__ import annotations

import math
from collections.abc import Collection
from numbers import Integral, Real

from symreward.errors import OptionError


def choice(option: str, value: object, choices: Collection[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise OptionError(option, value, f"choose from {', '.join(choices)}")
    return value


def whole(option: str, value: object, minimum: int, *, optional: bool = False) -> int | None:
    """An integer of at least ``minimum`` (``None`` too when ``optional``)."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise OptionError(option, value, f"must be a whole number >= {minimum}")
    return int(value)


def number(option: str, value: object, low: float, high: float = math.inf, *,
           low_open: bool = False, high_open: bool = False, optional: bool = False
           ) -> float | None:
    """A finite number in the interval from ``low`` to ``high`` (open at either end as asked;
    ``None`` too when ``optional``)."""
    if value is None and optional:
        return None
    interval = (f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
                if math.isfinite(high) else f"{'>' if low_open else '>='} {low:g}")
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise OptionError(option, value, f"must be a finite number {_in(interval)}")
    x = float(value)
    if x < low or (low_open and x == low) or x > high or (high_open and x == high):
        raise OptionError(option, value, f"must be {_in(interval)}")
    return x


def _in(interval: str) -> str:
    return interval if interval[0] in "<>" else f"in {interval}"


def unused(option: str, value: object, default: object, reason: str) -> None:
    """An option set away from its default where it has no effect is an error, not a no-op."""
    if value != default:
        raise OptionError(option, value, f"has no effect {reason}")
