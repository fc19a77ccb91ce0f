"""The audit report in three forms: JSON (every number), a self-contained HTML page, and the
plain-text summary the command line prints.

A report is plain data (``audit.run.audit`` returns it): dicts, lists, strings, finite floats,
ints, booleans and None. Each form renders whichever sections are present, so a section added
by a later module shows up without a change here; a section this module does not know is shown
as its JSON.

The page needs no JavaScript and loads nothing: its style is inline, its figures are PNG images
embedded as ``data:`` URIs, and a Content-Security-Policy forbids scripts and outside
resources, so even a string that escaped escaping could not run. Every string that comes from
an artifact or a dataset (names, notes, formulas, paths) is escaped with ``html.escape``.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from symreward._version import __version__
from symreward.atomic import atomic_write_text

__all__ = ["plain", "render_html", "render_json", "render_text", "write_report"]

#: Sections this module renders itself, in the page's order; any other key of the report is
#: shown as JSON after them.
SECTIONS = ("artifact", "data", "distances", "uncertainty", "exploits", "attribution",
            "calibration", "partial_dependence", "front")
_QUIET = ("schema", "options")  # shown in the page's header and footer, not as sections


def plain(value: Any) -> Any:
    """``value`` as JSON-able plain data: numpy scalars and arrays become Python numbers and
    lists, tuples lists, NaN and infinities None (JSON has no such numbers, and a reader should
    not guess what a sentinel means)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [plain(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        number = float(value)
        return number if math.isfinite(number) else None
    return value


def render_json(report: Mapping[str, Any]) -> str:
    """The report as JSON: sorted keys, two-space indent, a final newline; deterministic.
    Raises ``ValueError`` on a NaN or infinity (``plain`` removes them)."""
    return json.dumps(report, sort_keys=True, indent=2, allow_nan=False) + "\n"


def write_report(path: str | os.PathLike[str], report: Mapping[str, Any], *,
                 form: str = "html") -> None:
    """Write the report's ``form`` (``"html"`` or ``"json"``) to ``path``, atomically."""
    renderers: dict[str, Callable[[Mapping[str, Any]], str]] = {
        "html": render_html, "json": render_json}
    if form not in renderers:
        raise ValueError(f"form must be 'html' or 'json'; got {form!r}")
    atomic_write_text(path, renderers[form](report))


# ---------------------------------------------------------------------------- numbers


def _num(value: Any, digits: int = 4) -> str:
    """A number as a person reads it: 4 significant digits, ints whole, None as a dash."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _interval(ci: Any) -> str:
    if isinstance(ci, Sequence) and len(ci) == 2:
        return f"[{_num(ci[0])}, {_num(ci[1])}]"
    return "–"


def _state(state: Any) -> str:
    if not isinstance(state, Mapping):
        return "–"
    return ", ".join(f"{k} = {_num(v)}" for k, v in state.items())


# ---------------------------------------------------------------------------- text


def render_text(report: Mapping[str, Any]) -> str:
    """The summary the command line prints: the reward, the data, then each section's key
    numbers (the page and the JSON hold the rest)."""
    out: list[str] = []
    artifact = report.get("artifact") or {}
    data = report.get("data") or {}
    out.append(f"audit of {artifact.get('name') or '(unnamed reward)'}  "
               f"[{artifact.get('path') or '<memory>'}]")
    if artifact.get("formula"):
        out.append(f"  reward = {artifact['formula']}")
    if data:
        out.append(f"  data: {data.get('source')}, {data.get('transitions')} transitions, "
                   f"{data.get('preference_pairs') or 0} preference pairs"
                   + _training_note(data))
        sample = data.get("sample")
        if sample:
            out.append(f"  audited on a sample: {sample['rows']} of {sample['of_rows']} "
                       f"transitions ({sample['chunks']} of {sample['of_chunks']} chunks, drawn "
                       "with the seed)")
        reward = data.get("reward") or {}
        if reward:
            out.append(f"  reward on the {'sample' if sample else 'data'}: mean "
                       f"{_num(reward.get('mean'))}, std "
                       f"{_num(reward.get('std'))}, min {_num(reward.get('min'))}, max "
                       f"{_num(reward.get('max'))}, non-finite {reward.get('non_finite')}")
    for entry in report.get("distances") or []:
        for measure in entry.get("measures") or []:
            shown = _num(measure.get("value"))
            if measure.get("ci"):
                shown += f" {_interval(measure['ci'])}"
            if measure.get("error"):
                shown += f" (undefined: {measure['error']})"
            out.append(f"  {measure.get('name')} to {entry.get('against')} "
                       f"({entry.get('source')}): {shown}")
    attribution = report.get("attribution")
    if attribution:
        out.append("\nterms (share of the reward's variance over the data; of the pairs' "
                   "logits)")
        variance = attribution.get("variance_share") or {}
        pairs = attribution.get("pair_share")
        if pairs is None:
            out.append(_table(["term", "variance"],
                              [[name, _num(share)] for name, share in variance.items()]))
        else:
            out.append(_table(["term", "variance", "pairs"],
                              [[name, _num(variance.get(name)), _num(pairs.get(name))]
                               for name in variance]))
    calibration = report.get("calibration")
    if calibration:
        out.append(f"preference fit on {calibration.get('pairs')} pairs: log loss "
                   f"{_num(calibration.get('log_loss'))}, accuracy "
                   f"{_num(calibration.get('accuracy'))}")
    worst = (attribution or {}).get("worst_pairs") or []
    if worst:
        out.append("\npairs the reward gets most wrong (look at these labels first)")
        out.append(_table(["pair", "segment a", "segment b", "label", "predicted", "excess loss"],
                          [[p["pair"], _segment(p["segments"][0]), _segment(p["segments"][1]),
                            _num(p["label"]), _num(p["predicted"]), _num(p["excess_loss"])]
                           for p in worst]))
    exploits = report.get("exploits")
    if exploits:
        for side in ("maximum", "minimum"):
            found = exploits.get(side)
            if found:
                out.append(f"{side} of the reward over the domain: {_num(found.get('value'))} "
                           f"(certified bound {_num(found.get('bound'))}) at "
                           f"{_state(found.get('state'))}")
    uncertainty = report.get("uncertainty")
    if uncertainty:
        out.append(f"front disagreement over {uncertainty.get('members')} members: mean "
                   f"{_num(uncertainty.get('mean'))}, p90 {_num(uncertainty.get('p90'))}, "
                   f"max {_num(uncertainty.get('max'))}")
    return "\n".join(out).rstrip("\n") + "\n"


def _training_note(data: Mapping[str, Any]) -> str:
    same = data.get("same_as_training")
    if same is None:
        return ""
    return " (the data the reward was learned from)" if same else " (not the training data)"


def _segment(segment: Sequence[int]) -> str:
    return f"[{segment[0]}, {segment[1]})"


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [list(header)] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in cells]
    lines.insert(1, "  " + "  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------- HTML

_STYLE = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1b1b1b;background:#fff;
margin:0}
main{max-width:1100px;margin:0 auto;padding:1.5rem 1.25rem 3rem}
h1{font-size:1.6rem;margin:.2rem 0}h2{font-size:1.25rem;margin:2.2rem 0 .6rem;
border-bottom:2px solid #1f4e79;padding-bottom:.2rem}h3{font-size:1.05rem;margin:1.2rem 0 .4rem}
.meta{color:#555;font-size:.9rem;margin:.2rem 0}
code,pre{font-family:ui-monospace,"DejaVu Sans Mono",monospace;font-size:.88rem}
pre{background:#f5f7fa;padding:.6rem;overflow-x:auto;white-space:pre-wrap;word-break:break-word}
.formula{background:#f5f7fa;padding:.5rem .7rem;border-left:4px solid #1f4e79;
overflow-x:auto}
table{border-collapse:collapse;margin:.4rem 0 1rem;font-size:.9rem;display:block;
max-width:100%;overflow-x:auto}
th,td{border-bottom:1px solid #dde3ea;padding:.25rem .6rem;text-align:left;vertical-align:top}
th{background:#eef2f7}td.n{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:.6rem 0 1.2rem}figure img{max-width:100%;height:auto;border:1px solid #e3e8ee}
figcaption{color:#555;font-size:.85rem;max-width:60rem}
nav ul{columns:2;padding-left:1.2rem;margin:.4rem 0}
.note{color:#555;font-size:.9rem;max-width:60rem}
.bad{color:#a61b1b;font-weight:600}
"""
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
_TITLES = {"artifact": "The reward", "data": "The data", "distances": "Distances",
           "uncertainty": "Disagreement of the Pareto front", "exploits": "Exploit search",
           "attribution": "Attribution", "calibration": "Calibration of the preference model",
           "partial_dependence": "Partial dependence", "front": "The Pareto front"}


def _e(value: Any) -> str:
    """Escaped text of anything: the only way a string reaches the page."""
    return html.escape(value if isinstance(value, str) else _num(value), quote=True)


def _html_table(header: Sequence[str], rows: Sequence[Sequence[Any]],
                numeric: Sequence[bool] | None = None) -> str:
    """A table; cells are escaped here, numbers right-aligned where ``numeric`` says."""
    numeric = numeric or [False] * len(header)
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td class="n">{_e(c)}</td>' if n else f"<td>{_e(c)}</td>"
                         for c, n in zip(row, numeric, strict=True)) + "</tr>"
        for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _image(png: bytes | None, alt: str, caption: str) -> str:
    if png is None:
        return ""
    data = base64.b64encode(png).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{_e(alt)}">'
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def render_html(report: Mapping[str, Any]) -> str:
    """The report as one self-contained HTML page (see the module's docstring)."""
    artifact = report.get("artifact") or {}
    name = artifact.get("name") or "(unnamed reward)"
    present = [key for key in SECTIONS if report.get(key) not in (None, [], {})]
    others = sorted(key for key in report if key not in SECTIONS and key not in _QUIET)
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">',
             '<meta name="viewport" content="width=device-width, initial-scale=1">',
             f"<title>symreward audit: {_e(name)}</title><style>{_STYLE}</style></head>",
             "<body><main>", f"<h1>Audit of {_e(name)}</h1>",
             f'<p class="meta">artifact {_e(artifact.get("path") or "(in memory)")} · '
             f'{_e(artifact.get("hash") or "")}</p>']
    data = report.get("data") or {}
    if data:
        sample = data.get("sample")
        drawn = (f' · audited on {_e(sample["rows"])} of them ({_e(sample["chunks"])} of '
                 f'{_e(sample["of_chunks"])} chunks, drawn with the seed)' if sample else "")
        parts.append(f'<p class="meta">data {_e(data.get("source"))} · '
                     f'{_e(data.get("transitions"))} transitions{drawn}</p>')
    contents = [(key, _TITLES[key]) for key in present] + [(key, key) for key in others]
    parts.append("<nav><ul>" + "".join(f'<li><a href="#{_e(key)}">{_e(title)}</a></li>'
                                       for key, title in contents) + "</ul></nav>")
    for key in present:
        parts.append(f'<section id="{key}"><h2>{_e(_TITLES[key])}</h2>')
        parts.append(_RENDERERS[key](report[key], report))
        parts.append("</section>")
    for key in others:
        parts.append(f'<section id="{_e(key)}"><h2>{_e(key)}</h2>'
                     f"<pre>{_e(json.dumps(report[key], sort_keys=True, indent=2))}</pre>"
                     "</section>")
    options = report.get("options") or {}
    parts.append(f'<footer><p class="meta">symreward {_e(__version__)} · report schema '
                 f'{_e(report.get("schema") or "")} · options '
                 f'{_e(json.dumps(options, sort_keys=True))} · every number of this page is in '
                 "<code>symreward audit ART DATA --json</code>.</p></footer>")
    parts.append("</main></body></html>")
    return "\n".join(parts) + "\n"


def _artifact(section: Mapping[str, Any], _: Mapping[str, Any]) -> str:
    parts = [f'<p class="formula"><code>reward = {_e(section.get("formula") or "")}</code></p>']
    if section.get("edited_by_hand"):
        parts.append('<p class="note">Edited by hand since its last save (the content hash '
                     "differs from the recorded one).</p>")
    facts = [(label, section.get(key)) for label, key in
             (("objective", "objective"), ("engine", "engine"), ("seed", "seed"),
              ("parent", "parent")) if section.get(key) is not None]
    facts += [(f"recorded {k}", v) for k, v in sorted((section.get("metrics") or {}).items())]
    if facts:
        parts.append(_html_table(["", "value"], facts))
    terms = section.get("terms") or []
    parts.append("<h3>Terms</h3>")
    parts.append(_html_table(["name", "expression", "locked", "note"],
                             [[t.get("name"), t.get("expr"), bool(t.get("locked")),
                               t.get("note") or ""] for t in terms]))
    features = section.get("features") or {}
    parts.append("<h3>Features</h3>")
    ranges = section.get("feature_ranges") or {}
    parts.append(_html_table(
        ["name", "formula", "recorded range"],
        [[k, v, _interval(ranges.get(k))] for k, v in features.items()]))
    invariants = section.get("invariants") or []
    if invariants:
        parts.append("<h3>Invariants</h3>")
        parts.append(_html_table(["rule", "fields"], [
            [i.get("rule"), json.dumps({k: v for k, v in i.items() if k != "rule"},
                                       sort_keys=True)] for i in invariants]))
    return "\n".join(parts)


def _data(section: Mapping[str, Any], _: Mapping[str, Any]) -> str:
    rows = [["source", section.get("source")],
            ["transitions", section.get("transitions")], ["episodes", section.get("episodes")],
            ["observation / action width",
             f"{_num(section.get('obs_dim'))} / {_num(section.get('act_dim'))}"],
            ["infos", ", ".join(section.get("infos") or []) or "none"],
            ["preference pairs", section.get("preference_pairs")],
            ["ranked segments", section.get("ranked_segments")],
            ["expert transitions", section.get("expert_transitions")],
            ["sha256", section.get("sha256")],
            ["the data the reward was learned from", section.get("same_as_training")]]
    sample = section.get("sample")
    if sample:
        rows.append(["audited on a sample (whole chunks drawn with the seed)",
                     f"{sample['rows']} of {sample['of_rows']} transitions, "
                     f"{sample['chunks']} of {sample['of_chunks']} chunks"])
    parts = [_html_table(["", "value"], rows)]
    reward = section.get("reward") or {}
    if reward:
        parts.append(f"<h3>The reward on the {'sample' if sample else 'data'}</h3>")
        keys = ["mean", "std", "min", "max", "non_finite"]
        parts.append(_html_table(keys, [[reward.get(k) for k in keys]], [True] * len(keys)))
    return "\n".join(parts)


def _distances(section: Sequence[Mapping[str, Any]], _: Mapping[str, Any]) -> str:
    rows = []
    for entry in section:
        for measure in entry.get("measures") or []:
            level = measure.get("level")
            rows.append([entry.get("against"), entry.get("source"), entry.get("path") or "–",
                         measure.get("name"), measure.get("value"),
                         _interval(measure.get("ci"))
                         + (f" ({_num(100 * level, 3)}%)" if isinstance(level, float) else ""),
                         measure.get("resamples"), measure.get("transitions"),
                         measure.get("error") or ""])
    return ('<p class="note">0: the rewards are equivalent (same optimal policies, up to '
            "scale, offset and potential shaping); 1: opposite.</p>"
            + _html_table(["against", "source", "file", "measure", "value", "interval",
                           "resamples", "transitions", "note"], rows,
                          [False, False, False, False, True, False, True, True, False]))


def _uncertainty(section: Mapping[str, Any], _: Mapping[str, Any]) -> str:
    keys = ["members", "mean", "p90", "max"]
    parts = [_html_table(keys, [[section.get(k) for k in keys]], [True] * len(keys))]
    spots = section.get("most_uncertain") or []
    if spots:
        parts.append("<h3>Transitions where the front's members disagree most</h3>")
        parts.append(_html_table(["transition", "spread"],
                                 [[s.get("index"), s.get("spread")] for s in spots],
                                 [True, True]))
    return "\n".join(parts)


def _exploits(section: Mapping[str, Any], _: Mapping[str, Any]) -> str:
    parts = []
    rows = []
    for side, reference, beyond in (("maximum", "data_best", "above_data_best"),
                                    ("minimum", "data_worst", "below_data_worst")):
        found = section.get(side)
        if found:
            rows.append([side, found.get("value"), found.get("bound"), found.get("gap"),
                         found.get("certified"), found.get(reference), found.get(beyond),
                         found.get("distance_to_data"), found.get("nearest_index"),
                         _state(found.get("state")), found.get("boxes")])
    if rows:
        parts.append(_html_table(
            ["", "reward", "certified bound", "gap", "certified", "data's extreme",
             "beyond the data", "distance to data", "nearest transition", "state", "boxes"],
            rows, [False, True, True, True, False, True, True, True, True, False, True]))
    unbounded = section.get("unbounded_terms") or []
    if unbounded:
        parts.append("<h3>Terms that grow without bound</h3>")
        parts.append(_html_table(["term", "feature", "reason"],
                                 [[u.get("term"), u.get("feature"), u.get("reason")]
                                  for u in unbounded]))
    ood = section.get("out_of_distribution")
    if ood:
        parts.append(f"<h3>Outside the recorded ranges: {_e(ood.get('fraction'))} of the "
                     "transitions</h3>")
        parts.append(_html_table(["feature", "fraction outside"],
                                 sorted((ood.get("per_feature") or {}).items()), [False, True]))
    domain = section.get("domain") or {}
    if domain:
        parts.append("<h3>The domain searched</h3>")
        parts.append(_html_table(["feature", "low", "high", "bounds from"],
                                 [[k, v.get("lo"), v.get("hi"), v.get("source")]
                                  for k, v in domain.items()], [False, True, True, False]))
    return "\n".join(parts)


def _attribution(section: Mapping[str, Any], report: Mapping[str, Any]) -> str:
    from symreward.audit.figures import shares_figure

    variance = section.get("variance_share") or {}
    pairs = section.get("pair_share")
    parts = ['<p class="note">Variance share: cov(term, reward) / var(reward) over the data\'s '
             "transitions. Pair share: the same split of the preference pairs' logits "
             "(return differences), taken about zero. Each sums to 1 over the terms; a "
             "negative share is a term that works against the reward's overall variation "
             "(correlated terms can cancel).</p>"]
    parts.append(_html_table(
        ["term", "share of variance", "share of pair logits"],
        [[name, variance.get(name), None if pairs is None else pairs.get(name)]
         for name in variance], [False, True, True]))
    parts.append(f'<p class="note">{_e(section.get("transitions"))} transitions'
                 + (f", {_e(section.get('excluded_transitions'))} left out (a term not "
                    "finite)" if section.get("excluded_transitions") else "")
                 + (f"; {_e(section.get('pairs'))} pairs, {_e(section.get('excluded_pairs'))} "
                    "left out (a segment compared with itself, or a term not finite)"
                    if section.get("pairs") is not None else "") + ".</p>")
    parts.append(_image(shares_figure(section), "bar chart of each term's shares",
                        "Each term's share of the reward's variance over the data and of the "
                        "preference pairs' logits."))
    worst = section.get("worst_pairs") or []
    if worst:
        parts.append("<h3>Pairs the reward gets most wrong</h3>")
        parts.append('<p class="note">Ranked by the excess loss KL(label ‖ predicted) under '
                     "the Bradley–Terry model the reward was fitted with: the labels a person "
                     "should look at first. Segments are [start, stop) transition indices; the "
                     "last column names the term that moved the return difference most.</p>")
        parts.append(_html_table(
            ["pair", "segment a", "segment b", "label", "predicted P(a)", "excess loss",
             "return difference", "largest term"],
            [[p.get("pair"), _segment(p["segments"][0]), _segment(p["segments"][1]),
              p.get("label"), p.get("predicted"), p.get("excess_loss"),
              p.get("return_difference"), _largest(p.get("term_differences") or {})]
             for p in worst],
            [True, False, False, True, True, True, True, False]))
    return "\n".join(parts)


def _largest(differences: Mapping[str, Any]) -> str:
    finite = {k: v for k, v in differences.items() if isinstance(v, int | float)}
    if not finite:
        return "–"
    name = max(finite, key=lambda k: abs(finite[k]))
    return f"{name} ({_num(finite[name])})"


def _calibration(section: Mapping[str, Any], _: Mapping[str, Any]) -> str:
    from symreward.audit.figures import calibration_figure

    parts = [_html_table(
        ["pairs", "log loss", "accuracy (non-tied labels)", "segment discount", "label noise"],
        [[section.get("pairs"), section.get("log_loss"), section.get("accuracy"),
          section.get("discount"), section.get("noise")]], [True] * 5)]
    parts.append(_image(calibration_figure(section), "calibration plot",
                        "Predicted probability that segment a is preferred against the labels' "
                        "mean, in bins of the prediction; a calibrated reward lies on the "
                        "diagonal."))
    parts.append(_html_table(["bin", "pairs", "mean predicted", "mean label"],
                             [[_interval([b.get("lo"), b.get("hi")]), b.get("pairs"),
                               b.get("predicted"), b.get("empirical")]
                              for b in section.get("bins") or []],
                             [False, True, True, True]))
    return "\n".join(parts)


def _partial_dependence(section: Mapping[str, Any], _: Mapping[str, Any]) -> str:
    from symreward.audit.figures import partial_dependence_figure

    parts = [_image(partial_dependence_figure(section), "partial dependence plots",
                    "The reward's mean over the data's states with one feature moved (line), "
                    "the 10–90% band of the reward over those states, the data's range shaded "
                    "and the recorded training range dashed.")]
    rows = []
    for name, curve in section.items():
        means = [m for m in curve.get("mean") or [] if m is not None]
        rows.append([name, _interval(curve.get("data_range")),
                     _interval(curve.get("recorded_range")),
                     _interval([curve["grid"][0], curve["grid"][-1]]) if curve.get("grid")
                     else "–",
                     (max(means) - min(means)) if means else None, curve.get("states")])
    parts.append(_html_table(["feature", "data range", "recorded range", "plotted",
                              "change of the mean reward", "states averaged"], rows,
                             [False, False, False, False, True, True]))
    return "\n".join(parts)


def _front(section: Sequence[Mapping[str, Any]], _: Mapping[str, Any]) -> str:
    from symreward.audit.figures import front_figure

    parts = [_image(front_figure(section), "Pareto front plot",
                    "Complexity against held-out loss of the models on the recorded Pareto "
                    "front; the star is the chosen one.")]
    parts.append(_html_table(["", "complexity", "held-out loss", "held-out accuracy",
                              "formula"],
                             [["chosen" if e.get("chosen") else "", e.get("complexity"),
                               e.get("heldout_loss"), e.get("heldout_accuracy"),
                               e.get("formula")] for e in section],
                             [False, True, True, True, False]))
    return "\n".join(parts)


_RENDERERS: dict[str, Callable[[Any, Mapping[str, Any]], str]] = {
    "artifact": _artifact, "data": _data, "distances": _distances,
    "uncertainty": _uncertainty, "exploits": _exploits, "attribution": _attribution,
    "calibration": _calibration, "partial_dependence": _partial_dependence, "front": _front}
