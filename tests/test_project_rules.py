"""Rules of the house that a test can hold: ruff is clean, and nothing in the package can run
text from a file."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = re.compile(
    r"(^|[^_.a-zA-Z])(eval|exec)\(|sympify\(|parse_expr\(|pickle\.loads?\(|yaml\.load\(|"
    r"__import__\(|allow_pickle=True")


def test_no_code_execution_primitives_in_the_package():
    offenders = []
    for path in sorted((ROOT / "symreward").rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if FORBIDDEN.search(line) and "# safe:" not in line:
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


@pytest.mark.skipif(shutil.which("ruff") is None and not Path(sys.prefix, "bin", "ruff").exists(),
                    reason="ruff is not installed (pip install -e '.[test]')")
def test_ruff_is_clean():
    ruff = shutil.which("ruff") or str(Path(sys.prefix, "bin", "ruff"))
    result = subprocess.run([ruff, "check", str(ROOT)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
