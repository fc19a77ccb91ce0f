"""Where generated kernel modules live: one file per reward structure, named by its key, in the
cache directory, imported under the same name in every process so that numba's own
``cache=True`` files beside it (or under ``$NUMBA_CACHE_DIR``) are found again."""

from __future__ import annotations

import atexit
import hashlib
import importlib.util
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from types import ModuleType

import numba

from symreward.errors import SymrewardError
from symreward.kernels.codegen import CODEGEN_VERSION
from symreward.kernels.vecmath import VectorMath

ENV_CACHE_DIR = "SYMREWARD_CACHE_DIR"

_fallback_dir: Path | None = None


def module_key(source: str, math: VectorMath) -> str:
    """The key of a generated module: its source (which holds no number of the reward) and what
    the compiled code depends on besides."""
    digest = hashlib.sha256()
    # The source names the vector math too; the key says it outright.
    for part in (str(CODEGEN_VERSION), numba.__version__, math.key, source):
        digest.update(part.encode())
        digest.update(b"\0")
    return digest.hexdigest()


def cache_directory(cache_dir: str | os.PathLike[str] | None) -> Path:
    """``cache_dir``, else ``$SYMREWARD_CACHE_DIR``, else ``~/.cache/symreward/kernels``."""
    if cache_dir is None:
        cache_dir = os.environ.get(ENV_CACHE_DIR) or Path.home() / ".cache/symreward/kernels"
    return Path(cache_dir).expanduser()


def write_module(directory: Path, filename: str, source: str) -> Path:
    """Write ``source`` unless an identical file is there: rewriting would change its mtime,
    which numba's cache index checks, and so throw away the compiled code beside it. Where
    ``directory`` cannot be written, a private temporary directory is used with a warning."""
    global _fallback_dir
    try:
        return _write_if_changed(directory / filename, source)
    except OSError as exc:
        if _fallback_dir is None:
            # Private and fresh (mkdtemp is 0700): a shared, predictable directory would let
            # another user plant a module that we then import.
            _fallback_dir = Path(tempfile.mkdtemp(prefix="symreward-kernels-"))
            atexit.register(shutil.rmtree, _fallback_dir, ignore_errors=True)
        warnings.warn(f"kernel cache directory {str(directory)!r} is not writable ({exc}); "
                      f"using {str(_fallback_dir)!r}, which lasts only for this process",
                      RuntimeWarning, stacklevel=3)
        return _write_if_changed(_fallback_dir / filename, source)


def _write_if_changed(path: Path, source: str) -> Path:
    try:
        if path.read_text(encoding="utf-8") == source:
            return path
    except (OSError, UnicodeDecodeError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(source)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def import_module(path: Path, key: str, prefix: str = "reward") -> ModuleType:
    """The generated module at ``path``, imported once per process."""
    # The name must be the same in every process: numba's cached code refers to the module by it.
    name = f"_symreward_{prefix}_{key[:16]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SymrewardError(f"cannot import generated kernel module {str(path)!r}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module
