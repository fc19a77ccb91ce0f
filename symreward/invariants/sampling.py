"""Property tests with hypothesis: states inside the domain box (and near the data), and the
search for a counterexample that hypothesis then shrinks. Hypothesis is imported on first use."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

WIDE = 1e6  # property tests sample an unbounded side of a feature up to this magnitude


def float_range(lo: float, hi: float) -> tuple[float, float]:
    """A side of the domain box as property tests sample it: an unbounded end at ``WIDE`` from
    0, or at the other end where that is beyond ``WIDE`` (``[-inf, -1e9]`` gives
    ``[-1e9, -1e9]``), so the range always lies inside ``[lo, hi]``."""
    lo = min(-WIDE, hi) if math.isinf(lo) else lo
    hi = max(WIDE, lo) if math.isinf(hi) else hi
    return (lo, hi)


def state_strategy(names: Sequence[str], domain: Mapping[str, tuple[float, float]],
                   near: np.ndarray | None = None) -> Any:
    """Hypothesis strategy of ``{feature: float}`` inside the domain box; with ``near`` (rows of
    feature values), also those rows and small perturbations of them, clipped into the box."""
    from hypothesis import strategies as st

    ranges = {n: float_range(*domain[n]) for n in names}
    uniform = st.fixed_dictionaries({
        n: st.floats(lo, hi, allow_nan=False, allow_infinity=False)
        for n, (lo, hi) in ranges.items()})
    if near is None or len(near) == 0:
        return uniform
    rows = [tuple(float(v) for v in row) for row in near[:10_000]]
    scale = np.nanstd(near, axis=0) if len(near) > 1 else np.ones(len(names))

    def perturb(row: tuple[float, ...], noise: list[float]) -> dict[str, float]:
        state = {}
        for i, n in enumerate(names):
            lo, hi = ranges[n]
            value = row[i] + noise[i] * float(scale[i] if np.isfinite(scale[i]) else 0.0)
            state[n] = float(min(max(value, lo), hi)) if np.isfinite(value) else lo
        return state

    noise = st.lists(st.sampled_from([0.0, 0.0, 0.01, -0.01, 0.1, -0.1]), min_size=len(names),
                     max_size=len(names))
    return st.one_of(uniform, st.builds(perturb, st.sampled_from(rows), noise))


class _Found(Exception):
    """Stops hypothesis at the first counterexample, which ``search`` keeps."""


def search(strategy: Any, problem: Callable[[Any], Any], examples: int
           ) -> tuple[Any, Any, int]:
    """Run hypothesis: ``problem(value)`` returns None or a description of a violation.
    Returns (minimal failing value, its description, examples run before the first failure)."""
    from hypothesis import HealthCheck, Phase, given, settings

    found: list[tuple[Any, Any]] = []
    count = [0]

    @settings(max_examples=max(1, examples), database=None, deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck), report_multiple_bugs=False,
              phases=[Phase.generate, Phase.shrink], print_blob=False)
    @given(strategy)
    def run(value: Any) -> None:
        if not found:
            count[0] += 1
        outcome = problem(value)
        if outcome is not None:
            found.append((value, outcome))
            raise _Found

    try:
        run()
    except _Found:
        return found[-1][0], found[-1][1], count[0]
    return None, None, count[0]
