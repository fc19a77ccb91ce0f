"""Commands that check and improve a reward: check, audit, harden."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from symreward.cli.output import (
    EXIT_CHECK_FAILED,
    EXIT_OK,
    add_scheduler_option,
    check_output,
    progress,
)
from symreward.errors import SymrewardError


def register(commands: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
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
    add_scheduler_option(audit)
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


def _rules_help() -> str:
    from symreward.invariants.rules import RULES

    lines = ["rules an [[invariants]] table may state (rule = NAME):"]
    for name, rule in RULES.items():
        keys = [*rule.required, *(f"[{key}]" for key in rule.optional)]
        summary = (rule.__doc__ or "").strip().splitlines()[0].replace("``", "")
        lines.append(f"  {name} {' '.join(keys)}: {summary}")
    return "\n".join(lines)


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

        data = load_dataset(args.data, lazy=False)
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


def _audit(args: argparse.Namespace) -> int:
    from symreward.artifact import RewardArtifact
    from symreward.audit.report import render_json, render_text, write_report
    from symreward.audit.run import audit, check_options
    from symreward.data import load_dataset
    from symreward.schedulers import scheduler

    check_options(discount=args.discount, seed=args.seed, worst=args.worst,
                  exploit_time=args.exploit_time)
    check_output("-o", args.output, "the report")
    check_output("--findings", args.findings, "the findings")
    artifact = RewardArtifact.load(args.artifact)
    compare = [RewardArtifact.load(path) for path in args.compare]
    with scheduler(args.scheduler):
        # A dataset read lazily is audited on a sample of its chunks (audit.run.SAMPLE_ROWS).
        dataset = load_dataset(args.data, lazy=True if args.scheduler is not None else None)
        report = audit(artifact, dataset, compare=compare, discount=args.discount,
                       seed=args.seed, worst=args.worst, exploit_time=args.exploit_time,
                       progress=progress)
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

    check_output("-o", args.output, "the artifact")
    artifact = RewardArtifact.load(args.artifact)
    findings = read_findings(args.findings, artifact) if args.findings is not None else None
    if findings is not None and findings.artifact_hash not in ("", artifact.content_hash()):
        print(f"note: {args.findings} was made for another version of the reward "
              f"({findings.artifact_hash[:19]}); its states are still read as "
              f"{', '.join(artifact.features.names)}")
    dataset = load_dataset(args.data, lazy=False)
    result = harden(artifact, dataset, findings.findings if findings is not None else (),
                    rounds=args.rounds, finding_weight=args.finding_weight,
                    margin=MARGIN if args.margin is None else args.margin,
                    time_budget=args.time_budget, examples=args.examples, progress=progress)
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
