"""The audit's figures, drawn from the report's numbers as PNG images to embed in a page.

Each function takes one section of the report (plain data, as ``audit.run.audit`` returns it)
and returns the PNG's bytes, or None when the section has nothing to draw. matplotlib is
imported only here and only when a figure is drawn, so ``import symreward`` and the other
commands do not pay for it; its object-oriented API (``Figure`` with an Agg canvas) is used, not
``pyplot``, so drawing changes no global state of a user's session (backend, open figures).

The images are deterministic for the same numbers and matplotlib: no timestamp or software
version is written into them.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["calibration_figure", "front_figure", "partial_dependence_figure", "shares_figure"]

#: Resolution of the images; sizes are given in inches.
DPI = 100
#: Partial-dependence panels per row, and at most this many panels (the features whose curves
#: move the most); the page's table lists every feature.
COLUMNS = 3
MAX_PANELS = 12
_INK, _ACCENT, _MUTED, _DATA = "#1f4e79", "#c0392b", "#7f8c8d", "#d6e4f0"


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def partial_dependence_figure(dependence: Mapping[str, Mapping[str, Any]]) -> bytes | None:
    """One panel per feature: the reward's partial dependence (line) with the band of the
    reward over the averaged states, the data's range shaded and the recorded (training)
    range dashed."""
    movement = {name: _spread(curve.get("mean") or []) for name, curve in dependence.items()}
    names = sorted(movement, key=lambda n: -movement[n])[:MAX_PANELS]
    names = [n for n in dependence if n in names]  # back in the artifact's order
    if not names:
        return None
    rows = math.ceil(len(names) / COLUMNS)
    columns = min(len(names), COLUMNS)
    figure = _figure(3.2 * columns, 2.5 * rows)
    axes = figure.subplots(rows, columns, squeeze=False)
    for k, name in enumerate(names):
        ax = axes[k // COLUMNS][k % COLUMNS]
        curve = dependence[name]
        grid = curve["grid"]
        points = [(x, m, lo, hi) for x, m, lo, hi in
                  zip(grid, curve["mean"], curve["lower"], curve["upper"], strict=True)
                  if _finite(m) and _finite(lo) and _finite(hi)]
        low, high = curve["data_range"]
        ax.axvspan(low, high, color=_DATA)
        recorded = curve.get("recorded_range")
        if recorded is not None:
            for edge in recorded:
                ax.axvline(edge, color=_MUTED, linestyle="--", linewidth=1)
        if points:
            xs, means, lows, highs = zip(*points, strict=True)
            ax.fill_between(xs, lows, highs, color=_INK, alpha=0.15, linewidth=0)
            ax.plot(xs, means, color=_INK, linewidth=1.8)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(name, fontsize=8)
        ax.tick_params(labelsize=7)
        if k % COLUMNS == 0:
            ax.set_ylabel("reward", fontsize=8)
    for k in range(len(names), rows * columns):
        axes[k // COLUMNS][k % COLUMNS].set_visible(False)
    return _png(figure)


def _spread(values: Sequence[Any]) -> float:
    finite = [v for v in values if _finite(v)]
    return max(finite) - min(finite) if finite else -1.0


def shares_figure(attribution: Mapping[str, Any]) -> bytes | None:
    """Horizontal bars: each term's share of the reward's variance over the data and, where
    there are preference pairs, of the pairs' logits; a line at 0 (shares may be negative)."""
    variance = attribution.get("variance_share") or {}
    pairs = attribution.get("pair_share") or {}
    names = list(variance)
    series = [(label, values, colour) for label, values, colour in
              (("variance over the data", variance, _INK),
               ("preference-pair logits", pairs, _ACCENT))
              if any(_finite(values.get(n)) for n in names)]
    if not names or not series:
        return None
    figure = _figure(6.4, 0.9 + 0.42 * len(names) * len(series))
    ax = figure.subplots()
    height = 0.8 / len(series)
    for s, (label, values, colour) in enumerate(series):
        ys = [len(names) - 1 - i + (len(series) - 1 - 2 * s) * height / 2
              for i in range(len(names))]
        widths = [values.get(n) if _finite(values.get(n)) else 0.0 for n in names]
        ax.barh(ys, widths, height=height, color=colour, label=label)
    ax.set_yticks(range(len(names)), list(reversed(names)), fontsize=8)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ax.set_xlabel("share (sums to 1 over the terms)", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    ax.legend(fontsize=7, loc="best")
    return _png(figure)


def front_figure(front: Sequence[Mapping[str, Any]]) -> bytes | None:
    """Complexity against held-out loss for the recorded Pareto front; the chosen model is
    marked."""
    points = [(e["complexity"], e["heldout_loss"], bool(e.get("chosen"))) for e in front
              if _finite(e.get("complexity")) and _finite(e.get("heldout_loss"))]
    if not points:
        return None
    figure = _figure(5.2, 3.4)
    ax = figure.subplots()
    xs, ys, _ = zip(*points, strict=True)
    ax.step(xs, ys, where="post", color=_MUTED, linewidth=1)
    ax.plot(xs, ys, "o", color=_INK, markersize=5, label="front")
    chosen = [(x, y) for x, y, c in points if c]
    if chosen:
        ax.plot(*zip(*chosen, strict=True), "*", color=_ACCENT, markersize=15, label="chosen")
    ax.set_xlabel("complexity", fontsize=8)
    ax.set_ylabel("held-out loss", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7)
    return _png(figure)


def calibration_figure(calibration: Mapping[str, Any]) -> bytes | None:
    """Predicted against empirical preference probability, one point per bin (its area
    proportional to the pairs in it), and the diagonal a calibrated reward lies on."""
    bins = [b for b in calibration.get("bins") or []
            if _finite(b.get("predicted")) and _finite(b.get("empirical"))]
    if not bins:
        return None
    figure = _figure(4.2, 4.0)
    ax = figure.subplots()
    ax.plot([0, 1], [0, 1], color=_MUTED, linestyle="--", linewidth=1, label="calibrated")
    most = max(b["pairs"] for b in bins)
    ax.plot([b["predicted"] for b in bins], [b["empirical"] for b in bins], color=_INK,
            linewidth=1)
    ax.scatter([b["predicted"] for b in bins], [b["empirical"] for b in bins],
               s=[20 + 200 * b["pairs"] / most for b in bins], color=_INK, zorder=3,
               label="bins (area: pairs)")
    ax.set_xlim(-0.03, 1.03)  # room for the markers of the end bins
    ax.set_ylim(-0.03, 1.03)
    ax.set_aspect("equal")
    ax.set_xlabel("predicted P(a preferred)", fontsize=8)
    ax.set_ylabel("labelled P(a preferred)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="upper left")
    return _png(figure)
