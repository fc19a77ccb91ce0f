"""What every command shares: exit codes, tables, progress lines, checks of output paths."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from symreward.errors import SymrewardError

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT, EXIT_INTERNAL = 0, 1, 2, 3


def add_scheduler_option(parser: argparse.ArgumentParser) -> None:
    """``--scheduler``: where the dask work of a sharded or lazy dataset runs
    (``symreward.schedulers.scheduler``)."""
    parser.add_argument(
        "--scheduler", metavar="SCHEDULER",
        help="run the work on a sharded or lazy dataset with dask: threads, processes, "
             "synchronous, or a dask.distributed scheduler's address (tcp://host:8786); "
             "given, the data is read lazily even where it would fit in memory")


def check_output(flag: str, path: Path | None, what: str) -> None:
    """Before any work: an output file ``path`` can be written (its folder exists, and it is no
    folder itself)."""
    if path is not None and (path.is_dir() or not path.parent.is_dir()):
        raise SymrewardError(f"{flag} {path}: " + (
            f"is a folder; give {what}'s file name" if path.is_dir() else
            f"folder {path.parent} does not exist"))


def progress(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


def print_front(front: Any, scored_by: str = "cross-validation") -> None:
    where = ("held-out by cross-validation" if scored_by == "cross-validation" else
             f"scored by {scored_by}")
    print(f"Pareto front ({where}; * = chosen):")
    sys.stdout.write(table(["", "complexity", "loss", "accuracy", "formula"], front.table()))


def fmt(value: float) -> str:
    return "-" if value != value else f"{value:.3f}"


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(c) for c in header]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
             for row in cells]
    lines.insert(1, "  " + "  ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"
