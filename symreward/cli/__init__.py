"""The ``symreward`` command.

Exit codes: 0 ok; 1 a check failed; 2 bad input, with one line naming the file, field and reason.
A traceback is shown only with ``--debug``.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable, Sequence

from symreward.cli import artifacts, learning, quality, reuse
from symreward.cli.output import EXIT_BAD_INPUT, EXIT_INTERNAL
from symreward.errors import OptionError, SymrewardError


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
          "finding_weight": "--finding-weight", "margin": "--margin",
          "scheduler": "--scheduler"}


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


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    parser = argparse.ArgumentParser(
        prog="symreward", parents=[common],
        description="Learn, read, edit and check symbolic reward functions.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for group in (artifacts, learning, quality, reuse):
        group.register(commands, common)
    return parser

