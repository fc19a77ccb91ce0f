"""Rules of the house that a test can hold: ruff is clean, and nothing in the package can run
text from a file."""

import ast
import importlib
import importlib.util
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


RUFF = shutil.which("ruff") or str(Path(sys.prefix, "bin", "ruff"))
needs_ruff = pytest.mark.skipif(not Path(RUFF).exists(),
                                reason="ruff is not installed (pip install -e '.[test]')")


def ruff(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([RUFF, "check", *args], capture_output=True, text=True, cwd=cwd)


def linted(root: Path, *args: str, cwd: Path = ROOT) -> list[str]:
    """The files ``ruff check`` would lint, relative to ``root``."""
    result = ruff("--show-files", *args, cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    return sorted(Path(line).resolve().relative_to(root.resolve()).as_posix()
                  for line in result.stdout.splitlines() if line.strip())


@needs_ruff
def test_ruff_is_clean():
    result = ruff(str(ROOT))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_ruff
def test_ruff_lints_what_the_project_owns_and_nothing_else(tmp_path):
    """With the project's configuration, ``ruff check ROOT`` (as above) and a developer's
    ``ruff check .`` lint the project's folders, and not a kernel cache, a virtual environment,
    a build, a generated file at the root, a hidden folder or ``__pycache__`` that a user keeps
    under the repository root. Shown on a copy of the configuration over such a tree, so the
    repository itself is never written to."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    owned = ["symreward/module.py", "symreward/search/deep.py", "tests/test_thing.py",
             "benchmarks/bench.py", "examples/pendulum/make.py"]
    stray = ["generated.py", "kernels/reward_0123456789abcdef.py", "venv/lib/mod.py",
             "env/lib/python3.11/site-packages/pkg/mod.py", ".venv/symreward-cache/reward_0.py",
             "build/lib/symreward/module.py", "symreward/__pycache__/module.py",
             "benchmarks/.out/run.py", "examples/pendulum/.cache/reward_1.py"]
    for name, text in [*((n, "VALUE = 1\n") for n in owned),
                       *((n, "import os\nx=1;y  =  2\n") for n in stray)]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    expected = sorted(["pyproject.toml", *owned])
    assert linted(tmp_path, str(tmp_path)) == expected
    assert linted(tmp_path, ".", cwd=tmp_path) == expected
    assert ruff(str(tmp_path)).returncode == 0
    (tmp_path / "tests/test_thing.py").write_text("import os\n")  # the project's own: linted
    result = ruff(".", cwd=tmp_path)
    assert result.returncode == 1 and "test_thing.py" in result.stdout, result.stdout


@needs_ruff
def test_ruff_lints_every_tracked_python_file():
    """The configuration's folders cover the repository: a new top-level folder of code must
    be added to ``[tool.ruff] include``. (Needs a git checkout.)"""
    try:
        tracked = subprocess.run(["git", "ls-files", "*.py"], capture_output=True, text=True,
                                 cwd=ROOT, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    if not tracked:
        pytest.skip("not a git checkout")
    missing = set(tracked) - set(linted(ROOT, str(ROOT)))
    assert not missing, sorted(missing)


def _symreward_imports(path: Path) -> list[tuple[str, str, int]]:
    """Every ``from symreward... import name`` of a script: (module, name, line)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [(node.module, alias.name, node.lineno) for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module
            and node.module.split(".")[0] == "symreward" for alias in node.names]


def test_benchmarks_import_names_the_package_has():
    """A benchmark is a script no test runs: a name moved in the package must not leave it
    failing at its first line (benchmarks/recovery.py once imported a removed function)."""
    missing = []
    for path in sorted((ROOT / "benchmarks").glob("*.py")):
        for module, name, line in _symreward_imports(path):
            found = importlib.import_module(module)
            submodule = (hasattr(found, "__path__")
                         and importlib.util.find_spec(f"{module}.{name}") is not None)
            if not (hasattr(found, name) or submodule):
                missing.append(f"{path.relative_to(ROOT)}:{line}: {module}.{name}")
    assert not missing, "names the package no longer has:\n" + "\n".join(missing)
