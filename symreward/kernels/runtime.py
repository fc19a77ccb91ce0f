"""Compiled reward kernels: ``compile_reward`` and the ``RewardKernels`` it returns.

A reward's module is generated and written once per structure (``codegen``, ``cache``); each of
its kernels is compiled, or loaded from numba's disk cache, the first time it is called, so a
process that only needs rewards never compiles the others, and one that sees only small tables
never compiles the parallel ones. Rewards that differ only in their
numbers (an edited weight or threshold) share the module and its machine code: the numbers are
the kernels' ``constants`` argument.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numba
import numpy as np
import sympy

from symreward.errors import DataError
from symreward.kernels import vecmath
from symreward.kernels.cache import cache_directory, import_module, module_key, write_module
from symreward.kernels.codegen import BATCH_KERNELS, KERNELS, SERIAL, SERIAL_CHUNKED, Plan

__all__ = ["PARALLEL_ROWS", "RewardKernels", "compile_reward"]

# Inputs are typed read-only: numba accepts writable arrays for a read-only parameter, and
# datasets hand out read-only views.
_TABLE = numba.types.Array(numba.float64, 2, "C", readonly=True)
_ROW = numba.types.Array(numba.float64, 1, "C", readonly=True)
_SIGNATURES = {
    "rewards": numba.float64[::1](_TABLE, _TABLE, _TABLE, _TABLE, _ROW),
    "term_columns": numba.float64[:, ::1](_TABLE, _TABLE, _TABLE, _TABLE, _ROW),
    "feature_matrix": numba.float64[:, ::1](_TABLE, _TABLE, _TABLE, _TABLE, _ROW),
    "single": numba.float64(_ROW, _ROW, _ROW, _ROW),
}
_OPTIONS = {"cache": True, "error_model": "numpy", "fastmath": False}

#: Tables of at least this many rows go to the parallel kernels; smaller ones to their serial
#: copies, which compile in about half the time (the first reward after an edit comes sooner)
#: and lose milliseconds at this size. Every row gets the same bits from either.
PARALLEL_ROWS = 1 << 18


class _Module:
    """A generated module and its kernels, each compiled on first use; shared by every
    ``RewardKernels`` of the same structure."""

    def __init__(self, module: ModuleType):
        self._module = module
        self._compiled: dict[str, Any] = {}
        self._lock = threading.Lock()

    def kernel(self, name: str) -> Any:
        compiled = self._compiled.get(name)
        if compiled is None:
            with self._lock:
                compiled = self._compiled.get(name)
                if compiled is None:
                    compiled = _compile(getattr(self._module, name),
                                        name.removesuffix(SERIAL_CHUNKED).removesuffix(SERIAL),
                                        name in BATCH_KERNELS)
                    self._compiled[name] = compiled
        return compiled


def _compile(function: Callable[..., Any], kernel: str, parallel: bool) -> Any:
    # A batch kernel releases the GIL, so threads (dask's threads scheduler, a distributed
    # worker's event loop) run beside it; a single transition is too short to gain from that.
    compiled = numba.njit(_SIGNATURES[kernel], parallel=parallel, nogil=kernel != "single",
                          **_OPTIONS)(function)
    # Only the float64 signature exists: other argument types must fail fast with TypeError
    # (the wrappers convert and retry) instead of compiling.
    compiled.disable_compile()
    return compiled


class RewardKernels:
    """Compiled kernels of one reward; build it with ``compile_reward``.

    Every batch method takes ``obs`` (N, obs_dim), ``act`` (N, act_dim), ``next_obs`` (N, obs_dim)
    and ``info`` (N, len(info_names)) arrays of any float dtype, converted once to C-contiguous
    float64; ``info`` may be None when the kernel reads no info field. Each kernel is compiled
    (or loaded from the disk cache) on its first call. ``threads`` says which of its copies runs,
    all with the same bits: ``True``, numba's threads; ``False``, this thread alone with the
    fastest code (for a caller that is one of many parallel tasks itself, as a dask task is);
    ``None`` (the default), numba's threads from ``PARALLEL_ROWS`` rows, else this thread with
    the code that compiles soonest.
    """

    def __init__(self, *, key: str, source: str, path: Path, module: _Module,
                 constants: tuple[float, ...], single_source: str, math: vecmath.VectorMath,
                 feature_names: tuple[str, ...],
                 term_names: tuple[str, ...], info_names: tuple[str, ...],
                 info_read_by_terms: bool, info_read_by_features: bool):
        self.key = key
        self.source = source
        self.path = path
        #: The reward's numbers, read by the kernels as ``k_0, k_1, ...`` (read-only).
        self.constants = np.array(constants, dtype=np.float64)
        self.constants.flags.writeable = False
        self.feature_names = feature_names
        self.term_names = term_names
        self.info_names = info_names
        self._module = module
        #: The source of ``single``'s own module (the numbers written in).
        self.single_source = single_source
        self._math = math
        self._info_read_by_terms = info_read_by_terms
        self._info_read_by_features = info_read_by_features
        self._single: Callable[..., float] | None = None

    def __repr__(self) -> str:
        return (f"RewardKernels(key={self.key[:16]!r}, features={len(self.feature_names)}, "
                f"terms={len(self.term_names)}, path={str(self.path)!r})")

    @property
    def single_raw(self) -> Any:
        """The njit kernel behind ``single``: ``single_raw(obs, act, next_obs, info)`` with
        C-contiguous float64 1-D arrays, no conversion; pass any 1-D float64 array as ``info``
        when no info is read. Callable from other njit code. Its numbers are written into its
        code, so each reward compiles its own (once, on first use, then from the disk cache)."""
        if self._single is None:
            self._single = _single_kernel(self.single_source, self.path.parent, self._math)
        return self._single

    def rewards(self, obs: Any, act: Any, next_obs: Any, info: Any = None, *,
                threads: bool | None = None) -> np.ndarray:
        """The reward of every transition, (N,) float64, in one fused pass."""
        return self._run("rewards", self._tables(obs, act, next_obs, info,
                                                 self._info_read_by_terms), threads)

    def term_columns(self, obs: Any, act: Any, next_obs: Any, info: Any = None, *,
                     threads: bool | None = None) -> np.ndarray:
        """Each term's contribution, (N, n_terms) float64; the rows sum to ``rewards``."""
        return self._run("term_columns", self._tables(obs, act, next_obs, info,
                                                      self._info_read_by_terms), threads)

    def feature_matrix(self, obs: Any, act: Any, next_obs: Any, info: Any = None, *,
                       threads: bool | None = None) -> np.ndarray:
        """Every feature's value, (N, n_features) float64, in ``feature_names`` order."""
        return self._run("feature_matrix", self._tables(obs, act, next_obs, info,
                                                        self._info_read_by_features), threads)

    def single(self, obs: Any, act: Any, next_obs: Any, info: Any = None) -> float:
        """The reward of one transition from 1-D rows (for environment wrappers)."""
        kernel = self._single or self.single_raw
        if info is None:
            info = _NO_INFO_ROW
        try:
            # Rows that already are float64 1-D arrays go straight to the kernel; the dispatcher
            # refuses anything else with TypeError (compilation of new types is disabled).
            return kernel(obs, act, next_obs, info)
        except TypeError:
            pass
        return kernel(_row(obs, "obs"), _row(act, "act"), _row(next_obs, "next_obs"),
                      _row(info, "info"))

    def dispatchers(self) -> dict[str, Any]:
        """Every kernel's numba dispatcher, compiled (or loaded from the disk cache) now rather
        than on first use; their ``stats`` count numba's cache hits and misses."""
        return {**{name: self._module.kernel(name) for name in KERNELS},
                "single": self.single_raw}

    def _run(self, kernel: str, tables: tuple[np.ndarray, ...], threads: bool | None
             ) -> np.ndarray:
        if threads is None:
            copy = "" if len(tables[0]) >= PARALLEL_ROWS else SERIAL
        else:
            copy = "" if threads else SERIAL_CHUNKED
        return self._module.kernel(kernel + copy)(*tables, self.constants)

    def _tables(self, obs: Any, act: Any, next_obs: Any, info: Any, reads_info: bool
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        if not reads_info:
            info_table = _NO_INFO
        elif info is None:
            raise DataError(f"this reward reads info fields {list(self.info_names)}; pass info "
                            f"as an (N, {len(self.info_names)}) array")
        else:
            info_table = _table(info, "info")
        return _table(obs, "obs"), _table(act, "act"), _table(next_obs, "next_obs"), info_table


_NO_INFO = np.empty((0, 0))
_NO_INFO_ROW = np.empty(0)


def _table(values: Any, name: str) -> np.ndarray:
    array = np.ascontiguousarray(values, dtype=np.float64)
    if array.ndim != 2:
        raise DataError(f"{name} must be a 2-D array (N, columns), got shape {array.shape}")
    return array


def _row(values: Any, name: str) -> np.ndarray:
    array = np.ascontiguousarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise DataError(f"{name} must be a 1-D row for single(), got shape {array.shape}")
    return array


_MODULES: dict[str, _Module] = {}
_SINGLES: dict[str, Any] = {}
_REWARDS: dict[tuple[Any, ...], RewardKernels] = {}
_LOCK = threading.Lock()


def compile_reward(features: Sequence[tuple[str, sympy.Expr]],
                   terms: Sequence[tuple[str, sympy.Expr]],
                   info_names: Sequence[str] = (), *,
                   cache_dir: str | os.PathLike[str] | None = None) -> RewardKernels:
    """The numba kernels of a reward (the sum of ``terms``), from a cache where it can.

    ``features`` are ordered ``(name, expr)`` pairs over raw-input symbols (``obs[i]``,
    ``act[i]``, ``next_obs[i]``, ``info.<name>``) and earlier features; ``terms`` are
    ``(name, expr)`` pairs over feature symbols; ``info_names`` orders the columns of the info
    array. Names and formulas are checked here; each kernel is compiled (or loaded from numba's
    disk cache) on its first call. exp, log, sin, ... are computed as ``VECTOR_MATH`` says (part
    of the cache key). The generated module goes to ``cache_dir``, else
    ``$SYMREWARD_CACHE_DIR``, else ``~/.cache/symreward/kernels``; if that cannot be written, a
    private temporary directory is used with a warning. Rewards that differ only in their
    numbers share one module and its compiled code.
    """
    plan = Plan(features, terms, info_names)
    generated = plan.generate()
    key = module_key(generated.source, plan.math)
    directory = cache_directory(cache_dir)
    memory_key = (key, directory, plan.feature_names, plan.term_names, plan.info_names,
                  tuple(value.hex() for value in generated.constants))
    with _LOCK:
        kernels = _REWARDS.get(memory_key)
        if kernels is None:
            path = write_module(directory, f"reward_{key[:16]}.py", generated.source)
            module = _MODULES.get(key)
            if module is None:
                module = _MODULES[key] = _Module(import_module(path, key))
            kernels = RewardKernels(key=key, source=generated.source, path=path, module=module,
                                    constants=generated.constants,
                                    single_source=generated.single_source, math=plan.math,
                                    feature_names=plan.feature_names,
                                    term_names=plan.term_names, info_names=plan.info_names,
                                    info_read_by_terms=plan.info_read_by_terms,
                                    info_read_by_features=plan.info_read_by_features)
            _REWARDS[memory_key] = kernels
    return kernels


def _single_kernel(source: str, directory: Path, math: vecmath.VectorMath) -> Any:
    """The compiled ``single`` of a module source, written beside the batch kernels' module."""
    key = module_key(source, math)
    with _LOCK:
        kernel = _SINGLES.get(key)
        if kernel is None:
            path = write_module(directory, f"single_{key[:16]}.py", source)
            module = import_module(path, key, prefix="single")
            kernel = _SINGLES[key] = _compile(module.single, "single", parallel=False)
    return kernel
