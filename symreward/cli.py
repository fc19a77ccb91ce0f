"""The ``symreward`` command.

Exit codes: 0 ok; 1 a check failed; 2 bad input, with one line naming the file, field and reason.
A traceback is shown only with ``--debug``.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from symreward.errors import SymrewardError

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 3


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        return args.run(args)
    except SymrewardError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"symreward {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("symreward: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            traceback.print_exc()
        print(f"symreward {args.command}: internal error: {type(exc).__name__}: {exc} "
              "(run with --debug for the traceback, and please report it)", file=sys.stderr)
        return EXIT_INTERNAL


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser = argparse.ArgumentParser(
        prog="symreward", parents=[common],
        description="Learn, read, edit and check symbolic reward functions.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    show = commands.add_parser("show", parents=[common],
                               help="print a reward artifact: formula, terms, features, provenance")
    show.add_argument("artifact", type=Path)
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(run=_show)

    evaluate = commands.add_parser("eval", parents=[common],
                                   help="per-transition rewards of a dataset, as a .npy file")
    evaluate.add_argument("artifact", type=Path)
    evaluate.add_argument("data", type=Path)
    evaluate.add_argument("-o", "--output", type=Path, required=True,
                          help="where to write the float64 rewards (.npy)")
    evaluate.set_defaults(run=_eval)
    return parser


def _show(args: argparse.Namespace) -> int:
    from symreward.artifact import RewardArtifact

    artifact = RewardArtifact.load(args.artifact)
    if args.json:
        payload = {
            "name": artifact.name,
            "formula": artifact.formula_text(),
            "terms": [{"name": t.name, "expr": t.expr, "locked": t.locked, "note": t.note}
                      for t in artifact.terms],
            "features": artifact.features.to_dict(),
            "invariants": artifact.invariants,
            "provenance": artifact.provenance,
            "hash": artifact.content_hash(),
            "edited_by_hand": artifact.edited_by_hand,
        }
        print(json.dumps(payload, indent=2, default=str))
        return EXIT_OK
    out = io.StringIO()
    out.write(f"{artifact.name or '(unnamed reward)'}  [{artifact.source}]\n")
    out.write(f"  reward = {artifact.formula_text()}\n")
    if artifact.edited_by_hand:
        out.write("  note: edited by hand since last save (content hash differs from the "
                  "recorded one)\n")
    out.write("\nterms\n")
    out.write(_table(["name", "expr", "locked", "note"],
                     [[t.name, t.expr, "yes" if t.locked else "", t.note]
                      for t in artifact.terms]))
    out.write("\nfeatures\n")
    out.write(_table(["name", "formula"], [[n, artifact.features[n]] for n in artifact.features]))
    if artifact.invariants:
        out.write("\ninvariants\n")
        for invariant in artifact.invariants:
            fields = ", ".join(f"{k} = {v!r}" for k, v in invariant.items() if k != "rule")
            out.write(f"  {invariant['rule']}: {fields}\n")
    if artifact.provenance:
        out.write("\nprovenance\n")
        for key, value in artifact.provenance.items():
            shown = json.dumps(value, default=str) if isinstance(value, dict | list) else value
            out.write(f"  {key}: {shown}\n")
    out.write(f"\ncontent hash: {artifact.content_hash()}\n")
    sys.stdout.write(out.getvalue())
    return EXIT_OK


def _eval(args: argparse.Namespace) -> int:
    from symreward.artifact import RewardArtifact, atomic_write_bytes
    from symreward.data import load_dataset

    artifact = RewardArtifact.load(args.artifact)
    dataset = load_dataset(args.data)
    rewards = artifact.evaluate(dataset).rewards
    buffer = io.BytesIO()
    np.save(buffer, rewards.astype(np.float64), allow_pickle=False)
    atomic_write_bytes(args.output, buffer.getvalue())
    finite = rewards[np.isfinite(rewards)]
    non_finite = rewards.size - finite.size
    print(f"wrote {args.output}: {rewards.size} rewards")
    if finite.size:
        print(f"  mean {finite.mean():.6g}  min {finite.min():.6g}  max {finite.max():.6g}"
              + ("  (over finite values)" if non_finite else ""))
    print(f"  non-finite: {non_finite}" + (
        f"  (NaN {int(np.isnan(rewards).sum())}, inf {int(np.isinf(rewards).sum())}; first at "
        f"row {int(np.flatnonzero(~np.isfinite(rewards))[0])})" if non_finite else ""))
    return EXIT_OK


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in cells]
    lines.insert(1, "  " + "  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
