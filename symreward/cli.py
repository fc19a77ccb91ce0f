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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from symreward.errors import OptionError, SymrewardError
from symreward.search import engines

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
        print(f"symreward {args.command}: error: {_message(exc)}", file=sys.stderr)
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


# The command-line flag of each learner option a flag sets.
_FLAGS = {"objective": "--objective", "engine": "--engine", "seed": "--seed",
          "max_terms": "--max-terms", "n_folds": "--folds", "selection": "--selection",
          "noise": "--noise", "discount": "--discount", "class_prior": "--class-prior",
          "time_limit": "--time-limit", "generations": "--generations",
          "population": "--population", "name": "--name", "worst": "--worst",
          "exploit_time": "--exploit-time",
          "rounds": "--rounds",
          "examples": "--examples", "time_budget": "--time-budget",
          "finding_weight": "--finding-weight", "margin": "--margin"}


def _message(error: SymrewardError) -> str:
    """An option's error in the words of the command line: the flag, not the argument."""
    if isinstance(error, OptionError) and error.option in _FLAGS:
        return f"{_FLAGS[error.option]} {error.value}: {error.reason}"
    return str(error)


class _Parser(argparse.ArgumentParser):
    """A parser whose help may end with text made only when the help is printed (so that the
    commands do not pay for what only their help shows)."""

    late_epilog: Callable[[], str] | None = None

    def format_help(self) -> str:
        text = super().format_help()
        return text if self.late_epilog is None else f"{text}\n{self.late_epilog()}\n"


def _rules_help() -> str:
    from symreward.invariants.rules import RULES

    lines = ["rules an [[invariants]] table may state (rule = NAME):"]
    for name, rule in RULES.items():
        keys = [*rule.required, *(f"[{key}]" for key in rule.optional)]
        summary = (rule.__doc__ or "").strip().splitlines()[0].replace("``", "")
        lines.append(f"  {name} {' '.join(keys)}: {summary}")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser = argparse.ArgumentParser(
        prog="symreward", parents=[common],
        description="Learn, read, edit and check symbolic reward functions.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

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

    evaluate = commands.add_parser("eval", parents=[common],
                                   help="per-transition rewards of a dataset, as a .npy file")
    evaluate.add_argument("artifact", type=Path)
    evaluate.add_argument("data", type=Path)
    evaluate.add_argument("-o", "--output", type=Path, required=True,
                          help="where to write the float64 rewards (.npy)")
    evaluate.set_defaults(run=_eval)

    relabelling = commands.add_parser(
        "relabel", parents=[common],
        help="copy an offline RL dataset with the artifact's rewards (npz, HDF5, Minari); the "
             "old rewards are kept as original_rewards")
    relabelling.add_argument("artifact", type=Path)
    relabelling.add_argument("data", help="an .npz, .h5/.hdf5, Minari directory or minari:ID")
    relabelling.add_argument("-o", "--output", required=True,
                             help="a file of the input's kind, or minari:NEW_ID for Minari")
    relabelling.set_defaults(run=_relabel)

    check = commands.add_parser("check", parents=[common],
                                help="decide a reward's invariants: proved, held under property "
                                     "tests, or violated (with a counterexample)")
    check.add_argument("artifact", type=Path)
    check.add_argument("--data", type=Path,
                       help="a dataset: property tests also try its states and nearby ones")
    check.add_argument("--examples", type=int, default=200,
                       help="hypothesis examples per invariant (default 200)")
    check.add_argument("--time-budget", type=float, default=2.0,
                       help="seconds each invariant's proof may take (default 2)")
    check.add_argument("--findings", type=Path, metavar="OUT.toml",
                       help="write the violated invariants' counterexamples here, as findings "
                            "a person can accept for `symreward harden`")
    check.set_defaults(run=_check)
    check.late_epilog = _rules_help

    learn = commands.add_parser("learn", parents=[common],
                                help="learn a symbolic reward offline from a dataset")
    learn.add_argument("data", type=Path)
    learn.add_argument("--features", type=Path,
                       help="features TOML ([features] name = \"formula\"); default: those of "
                            "--from")
    learn.add_argument("--objective", default="preferences",
                       choices=["preferences", "rankings", "demonstrations", "rewards"])
    learn.add_argument("--engine", default=engines.SPARSE, choices=list(engines.ENGINES),
                       help="; ".join(
                           f"{name}: {engines.SPARSE_HELP if engine is None else engine.help}"
                           for name, engine in engines.ENGINES.items()))
    learn.add_argument("--time-limit", type=float, default=None,
                       help="seconds the structure search may take (evolve default 90)")
    learn.add_argument("--generations", type=int, default=None,
                       help="generations of the structure search (evolve default 300; it stops "
                            "earlier when its front stops improving)")
    learn.add_argument("--population", type=int, default=None,
                       help="individuals per generation (evolve default 200)")
    learn.add_argument("--seed", type=int, default=0)
    learn.add_argument("--from", dest="base", type=Path,
                       help="an earlier artifact: its locked terms are kept as written and it "
                            "becomes the parent")
    learn.add_argument("--max-terms", type=int, default=8)
    learn.add_argument("--folds", type=int, default=5, help="cross-validation folds")
    learn.add_argument("--selection", default="1se", choices=["1se", "best", "accuracy",
                                                               "simplest"])
    learn.add_argument("--noise", type=float, default=0.0,
                       help="label-noise probability of the preference model")
    learn.add_argument("--discount", type=float, default=1.0,
                       help="discount within segments (preferences, rankings)")
    learn.add_argument("--class-prior", type=float, default=None,
                       help="share of expert-like transitions among unlabeled ones "
                            "(demonstrations)")
    learn.add_argument("--term", dest="user_terms", action="append", default=[],
                       metavar="FORMULA", help="an extra candidate term (repeatable)")
    learn.add_argument("--constraints", type=Path, action="append", default=[],
                       metavar="FILE.toml",
                       help="[[invariants]] and/or accepted findings the reward must respect "
                            "(repeatable); --from's invariants are constraints too")
    learn.add_argument("--name", help="name of the learned reward")
    learn.add_argument("-o", "--output", type=Path, required=True)
    learn.set_defaults(run=_learn)

    audit = commands.add_parser(
        "audit", parents=[common],
        help="audit a reward on a dataset: distances, term attribution, the pairs it gets most "
             "wrong, partial dependence; a text summary, an HTML report or JSON")
    audit.add_argument("artifact", type=Path)
    audit.add_argument("data", type=Path)
    audit.add_argument("--compare", type=Path, action="append", default=[], metavar="OTHER.toml",
                       help="an artifact to measure the EPIC distance to (repeatable)")
    audit.add_argument("--json", action="store_true",
                       help="JSON with every number instead of the page: to stdout, or to -o")
    audit.add_argument("-o", "--output", type=Path,
                       help="write the report here: the HTML page, or JSON with --json or a "
                            ".json name (default: print a summary)")
    audit.add_argument("--seed", type=int, default=0, help="seed of every random draw")
    audit.add_argument("--discount", type=float, default=0.99,
                       help="discount of the distances' canonicalisation (default 0.99)")
    audit.add_argument("--worst", type=int, default=10,
                       help="how many of the worst-predicted preference pairs to list")
    audit.add_argument("--exploit-time", type=float, default=10.0, metavar="S",
                       help="seconds the exploit search may take (default 10; 0 skips it)")
    audit.add_argument("--findings", type=Path, metavar="OUT.toml",
                       help="write an exploit far from the data as a finding, for harden")
    audit.set_defaults(run=_audit)
    harden = commands.add_parser(
        "harden", parents=[common],
        help="re-learn a reward with its invariants and accepted findings as constraints, "
             "then check it (exit 1, artifact still written, when a constraint is not met)")
    harden.add_argument("artifact", type=Path)
    harden.add_argument("data", type=Path)
    harden.add_argument("--findings", type=Path, metavar="FINDINGS.toml",
                        help="findings (from check or audit); those with accept = true are "
                             "constraints")
    harden.add_argument("-o", "--output", type=Path, required=True)
    harden.add_argument("--rounds", type=int, default=3,
                        help="most fits: counterexamples of still violated invariants are added "
                             "between them (default 3)")
    harden.add_argument("--finding-weight", type=float, default=None, metavar="W",
                        help="accepted 'below' findings as preference pairs of weight W "
                             "(preferences, rankings) instead of hard margins")
    harden.add_argument("--margin", type=float, default=None, metavar="M",
                        help="least gap of a hard 'below' finding, in reward units "
                             "(default 1e-6)")
    harden.add_argument("--examples", type=int, default=200,
                        help="hypothesis examples per invariant in the check (default 200)")
    harden.add_argument("--time-budget", type=float, default=2.0,
                        help="seconds each invariant's proof may take (default 2)")
    harden.set_defaults(run=_harden)

    export = commands.add_parser("export", parents=[common],
                                 help="the reward as standalone code (numpy, pure Python, C) "
                                      "or LaTeX, with no symreward import")
    export.add_argument("artifact", type=Path)
    export.add_argument("--to", required=True, choices=_export_formats())
    export.add_argument("-o", "--output", type=Path,
                        help="write the code here (default: print it)")
    export.set_defaults(run=_export)

    demo = commands.add_parser("demo", parents=[common],
                               help="learn Pendulum-v1's reward from preferences, end to end")
    demo.add_argument("-o", "--output", type=Path, default=Path("symreward-demo"),
                      help="folder for the artifact and rewards (default: symreward-demo)")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(run=_demo)
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

        dataset = load_dataset(args.data)
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


def _eval(args: argparse.Namespace) -> int:
    from symreward.artifact import RewardArtifact
    from symreward.atomic import save_npy
    from symreward.data import load_dataset

    artifact = RewardArtifact.load(args.artifact)
    dataset = load_dataset(args.data)
    rewards = artifact.evaluate(dataset).rewards
    save_npy(args.output, rewards.astype(np.float64))
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


def _relabel(args: argparse.Namespace) -> int:
    from symreward.data.relabel import relabel

    result = relabel(args.artifact, args.data, args.output)
    print(f"wrote {result.output}: {result.rows} rewards from {args.artifact}")
    print(f"  mean {result.mean:.6g}  min {result.minimum:.6g}  max {result.maximum:.6g}")
    print(f"  old rewards: {result.original_rewards}")
    print(f"  artifact hash: {result.artifact_hash}")
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    from symreward.artifact import RewardArtifact
    from symreward.invariants import STATUSES, check, format_result
    from symreward.invariants.domain import describe_domain, feature_domain

    if args.examples < 1 or args.time_budget < 0:
        raise SymrewardError("--examples must be >= 1 and --time-budget >= 0")
    artifact = RewardArtifact.load(args.artifact)
    data = None
    if args.data is not None:
        from symreward.data import load_dataset

        data = load_dataset(args.data)
    results = check(artifact, data, time_budget=args.time_budget, examples=args.examples)
    print(f"{artifact.name or '(unnamed reward)'}  [{artifact.source}]")
    if artifact.edited_by_hand:
        print("  note: edited by hand since last save (content hash differs from the recorded "
              "one)")
    # the features' bounds once; an invariant's own only where its domain differs
    domain = feature_domain(artifact).as_dict()
    print(f"  domain: {describe_domain(domain)}")
    if not results:
        print("  no invariants to check")
    for result in results:
        text = format_result(result, show_domain=result.domain != domain)
        print("  " + text.replace("\n", "\n  "))
    counts = {s: sum(r.status == s for r in results) for s in STATUSES}
    print("  " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    if args.findings is not None:
        from symreward.findings import findings_from_check, write_findings

        findings = findings_from_check(artifact, results)
        write_findings(args.findings, artifact, findings)
        print(f"wrote {args.findings}: {len(findings)} finding{'s' * (len(findings) != 1)}"
              + (" (set accept = true on those harden should enforce)" if findings else ""))
        without = counts["violated"] - len(findings)
        if without:
            print(f"  {without} violated invariant{'s' * (without != 1)} without a finding "
                  "(independent: harden enforces it from the invariant itself)")
    return EXIT_CHECK_FAILED if counts["violated"] else EXIT_OK


def _check_output(flag: str, path: Path | None, what: str) -> None:
    """Before any work: an output file ``path`` can be written (its folder exists, and it is no
    folder itself)."""
    if path is not None and (path.is_dir() or not path.parent.is_dir()):
        raise SymrewardError(f"{flag} {path}: " + (
            f"is a folder; give {what}'s file name" if path.is_dir() else
            f"folder {path.parent} does not exist"))


def _progress(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


def _print_front(front: Any, scored_by: str = "cross-validation") -> None:
    where = ("held-out by cross-validation" if scored_by == "cross-validation" else
             f"scored by {scored_by}")
    print(f"Pareto front ({where}; * = chosen):")
    sys.stdout.write(_table(["", "complexity", "loss", "accuracy", "formula"], front.table()))


def _learn(args: argparse.Namespace) -> int:
    from symreward.artifact import RewardArtifact
    from symreward.data import load_dataset
    from symreward.features import FeatureSet
    from symreward.learner import SymbolicRewardLearner
    from symreward.search.library import TermLibrary

    learner = SymbolicRewardLearner(
        objective=args.objective, engine=args.engine, seed=args.seed, max_terms=args.max_terms,
        n_folds=args.folds, selection=args.selection, noise=args.noise, discount=args.discount,
        class_prior=args.class_prior, name=args.name, time_limit=args.time_limit,
        generations=args.generations, population=args.population,
        library=TermLibrary(user_terms=tuple(args.user_terms)), progress=_progress)
    learner.check_options()
    _check_output("-o", args.output, "the artifact")
    base = RewardArtifact.load(args.base) if args.base else None
    if args.features is not None:
        features = FeatureSet.from_toml(args.features)
    elif base is not None:
        features = base.features
    else:
        raise SymrewardError("learn: give --features F.toml (or --from OLD.toml to reuse its "
                             "features)")
    if args.constraints:
        from symreward.constraints import read_constraints

        constraints = read_constraints(args.constraints[0], features)
        for path in args.constraints[1:]:
            constraints = constraints.merged(read_constraints(path, features))
        learner.set_params(constraints=constraints)
    dataset = load_dataset(args.data)
    learner.fit(dataset, features, base=base)
    _print_front(learner.front_, learner.folds_["scored_by"])
    artifact = learner.artifact_
    artifact.save(args.output)
    metrics = learner.metrics_
    print(f"\nreward = {artifact.formula_text()}")
    held = "held-out" if learner.folds_["scored_by"] == "cross-validation" else "training"
    print(f"{held} loss {metrics['heldout_loss']:.4f} ± {metrics['heldout_loss_se']:.4f}, "
          f"{held} accuracy {_fmt(metrics['heldout_accuracy'])}, "
          f"{metrics['learning_seconds']:.2f} s")
    print(f"wrote {args.output}")
    return EXIT_OK


def _audit(args: argparse.Namespace) -> int:
    from symreward.artifact import RewardArtifact
    from symreward.audit.report import render_json, render_text, write_report
    from symreward.audit.run import audit, check_options
    from symreward.data import load_dataset

    check_options(discount=args.discount, seed=args.seed, worst=args.worst,
                  exploit_time=args.exploit_time)
    _check_output("-o", args.output, "the report")
    _check_output("--findings", args.findings, "the findings")
    artifact = RewardArtifact.load(args.artifact)
    compare = [RewardArtifact.load(path) for path in args.compare]
    dataset = load_dataset(args.data)
    report = audit(artifact, dataset, compare=compare, discount=args.discount, seed=args.seed,
                   worst=args.worst, exploit_time=args.exploit_time, progress=_progress)
    as_json = args.json or (args.output is not None and args.output.suffix.lower() == ".json")
    if args.output is not None:
        write_report(args.output, report, form="json" if as_json else "html")
        sys.stdout.write(render_text(report))
        print(f"wrote {args.output}")
    elif as_json:
        sys.stdout.write(render_json(report))
    else:
        sys.stdout.write(render_text(report))
    if args.findings is not None:
        from symreward.findings import findings_from_exploits, write_findings

        findings = findings_from_exploits(artifact, report.get("exploits") or {})
        write_findings(args.findings, artifact, findings)
        print(f"wrote {args.findings}: {len(findings)} finding{'s' * (len(findings) != 1)}"
              + (" (set accept = true on those harden should enforce)" if findings else
                 " (no exploit far from the data and above its best)"),
              file=sys.stderr if as_json and args.output is None else sys.stdout)
    return EXIT_OK


def _harden(args: argparse.Namespace) -> int:
    from symreward.artifact import RewardArtifact
    from symreward.constraints import MARGIN
    from symreward.data import load_dataset
    from symreward.findings import read_findings
    from symreward.harden import harden
    from symreward.invariants import format_result

    _check_output("-o", args.output, "the artifact")
    artifact = RewardArtifact.load(args.artifact)
    findings = read_findings(args.findings, artifact) if args.findings is not None else None
    if findings is not None and findings.artifact_hash not in ("", artifact.content_hash()):
        print(f"note: {args.findings} was made for another version of the reward "
              f"({findings.artifact_hash[:19]}); its states are still read as "
              f"{', '.join(artifact.features.names)}")
    dataset = load_dataset(args.data)
    result = harden(artifact, dataset, findings.findings if findings is not None else (),
                    rounds=args.rounds, finding_weight=args.finding_weight,
                    margin=MARGIN if args.margin is None else args.margin,
                    time_budget=args.time_budget, examples=args.examples, progress=_progress)
    result.artifact.save(args.output)
    print(f"reward = {result.artifact.formula_text()}")
    print(f"hardened with {len(result.accepted)} accepted finding"
          f"{'s' * (len(result.accepted) != 1)} and {result.invariants} invariant"
          f"{'s' * (result.invariants != 1)} in {result.rounds} round"
          f"{'s' * (result.rounds != 1)}"
          + (f" ({len(result.counterexamples)} counterexamples added)"
             if result.counterexamples else ""))
    for invariant in result.results:
        print("  " + format_result(invariant).replace("\n", "\n  "))
    if result.unmet:
        print("not met:")
        for item in result.unmet:
            print(f"  {item}")
    print(f"wrote {args.output}" + ("" if result.passed else
                                     " (it does not meet every constraint: see above)"))
    return EXIT_OK if result.passed else EXIT_CHECK_FAILED


def _demo(args: argparse.Namespace) -> int:
    from symreward.demo import run_demo

    result = run_demo(args.output, seed=args.seed, progress=_progress)
    _print_front(result.learner.front_)
    metrics = result.learner.metrics_
    print(f"\ntrue reward    = {result.true_reward.formula_text()}")
    print(f"learned reward = {result.artifact.formula_text()}")
    print("  (preferences fix a reward only up to positive scale, an added constant and "
          "potential shaping)")
    print(f"held-out (CV) preference accuracy {_fmt(metrics['heldout_accuracy'])}, "
          f"loss {metrics['heldout_loss']:.4f}")
    print(f"on fresh held-out data: EPIC distance to the true reward {result.epic:.4f}, "
          f"accuracy on noiseless true preferences {result.heldout_accuracy_vs_truth:.3f}")
    print(f"wrote {result.output} and {result.rewards_path} "
          f"({result.train_transitions} transitions, {result.pairs} pairs, "
          f"{result.seconds:.1f} s)")
    return EXIT_OK


def _export_formats() -> tuple[str, ...]:
    from symreward.export import FORMATS

    return FORMATS


def _export(args: argparse.Namespace) -> int:
    from symreward.artifact import RewardArtifact
    from symreward.atomic import atomic_write_text
    from symreward.export import export

    _check_output("-o", args.output, "the exported code")
    artifact = RewardArtifact.load(args.artifact)
    text = export(artifact, args.to)
    if args.output is None:
        sys.stdout.write(text)
        return EXIT_OK
    atomic_write_text(args.output, text)
    print(f"wrote {args.output}: {args.to} code of {artifact.name or 'the reward'} "
          f"({len(artifact.terms)} terms, content hash {artifact.content_hash()})")
    return EXIT_OK


def _fmt(value: float) -> str:
    return "-" if value != value else f"{value:.3f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in cells]
    lines.insert(1, "  " + "  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
