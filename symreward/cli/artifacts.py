"""Commands that read and edit an artifact: show, patch, diff, log."""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path
from typing import Any

from symreward.cli.output import EXIT_CHECK_FAILED, EXIT_OK, table
from symreward.errors import SymrewardError


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    show = commands.add_parser("show", parents=[common],
                               help="print a reward artifact: formula, terms, features, provenance")
    show.add_argument("artifact", type=Path)
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(run=_show)
    patch = commands.add_parser(
        "patch", parents=[common],
        help="edit terms (set/add/drop/lock/unlock/note), keeping comments; records lineage")
    patch.add_argument("artifact", type=Path)
    for option, metavar, text in (
            ("--set", "NAME=EXPR", "replace a term's expression"),
            ("--add", "NAME=EXPR", "add a term"),
            ("--drop", "NAME", "remove a term"),
            ("--lock", "NAME", "lock a term (learn --from keeps it as written)"),
            ("--unlock", "NAME", "unlock a term"),
            ("--note", "NAME=TEXT", "set a term's note (empty TEXT removes it)")):
        patch.add_argument(option, dest="operations", action=_PatchOperation,
                           const=option[2:], metavar=metavar, help=text + " (repeatable)")
    patch.add_argument("-o", "--output", type=Path,
                       help="write the patched artifact here (default: edit in place)")
    patch.set_defaults(run=_patch, operations=[])
    diff = commands.add_parser(
        "diff", parents=[common],
        help="terms added/removed/changed, symbolic difference, behavioural distance")
    diff.add_argument("a", type=Path, help="the old artifact")
    diff.add_argument("b", type=Path, help="the new artifact")
    diff.add_argument("--data", type=Path,
                      help="dataset for the EPIC distance and preference agreement")
    diff.add_argument("--max-epic", type=float, metavar="X",
                      help="exit 1 when the EPIC distance exceeds X (needs --data)")
    diff.add_argument("--json", action="store_true", help="machine-readable output")
    diff.set_defaults(run=_diff)
    log = commands.add_parser("log", parents=[common],
                              help="the lineage recorded in an artifact's provenance")
    log.add_argument("artifact", type=Path)
    log.set_defaults(run=_log)


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
    out.write(table(["name", "expr", "locked", "note"],
                     [[t.name, t.expr, "yes" if t.locked else "", t.note]
                      for t in artifact.terms]))
    out.write("\nfeatures\n")
    out.write(table(["name", "formula"], [[n, artifact.features[n]] for n in artifact.features]))
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


class _PatchOperation(argparse.Action):
    """Collects --set/--add/--drop/--lock/--unlock/--note in the order given."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        operations = list(getattr(namespace, self.dest, None) or [])
        operations.append((self.const, values))
        setattr(namespace, self.dest, operations)


def _patch(args: argparse.Namespace) -> int:
    from symreward.artifact import RewardArtifact
    from symreward.editing import parse_assignment, patch, render_patch

    artifact = RewardArtifact.load(args.artifact)
    operations = [parse_assignment(op, text, source=str(args.artifact))
                  for op, text in args.operations]
    result = patch(artifact, operations)
    output = args.output or args.artifact
    result.artifact.save(output)
    sys.stdout.write(render_patch(result, str(output)))
    return EXIT_OK


def _diff(args: argparse.Namespace) -> int:
    from symreward.artifact import RewardArtifact
    from symreward.editing import diff, render_diff

    if args.max_epic is not None and args.data is None:
        raise SymrewardError("--max-epic needs --data (the EPIC distance is measured on "
                             "a dataset)")
    if args.max_epic is not None and not 0 <= args.max_epic <= 1:
        raise SymrewardError(f"--max-epic {args.max_epic}: must be in [0, 1]")
    a = RewardArtifact.load(args.a)
    b = RewardArtifact.load(args.b)
    dataset = None
    if args.data is not None:
        from symreward.data import load_dataset

        dataset = load_dataset(args.data, lazy=False)
    result = diff(a, b, dataset)
    over = args.max_epic is not None and result.epic is not None and result.epic > args.max_epic
    if args.json:
        print(json.dumps(result.to_dict() | {"max_epic": args.max_epic, "exceeded": over},
                         indent=2, default=str))
    else:
        sys.stdout.write(render_diff(result))
        if args.max_epic is not None:
            verdict = "exceeds" if over else "is within"
            print(f"\nEPIC {result.epic:.4f} {verdict} --max-epic {args.max_epic:g}")
    return EXIT_CHECK_FAILED if over else EXIT_OK


def _log(args: argparse.Namespace) -> int:
    from symreward.artifact import RewardArtifact
    from symreward.editing import render_lineage

    sys.stdout.write(render_lineage(RewardArtifact.load(args.artifact)))
    return EXIT_OK
