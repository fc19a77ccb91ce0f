"""sympy → generated numba source → cached njit kernels, batch and single-transition.

A reward is a list of features (formulas over raw inputs and earlier features) and a list of terms
(formulas over features) whose sum is the reward. ``compile_reward`` prints them as the Python
source of one module holding four numba kernels, writes it to a cache directory and imports it, so
numba's own ``cache=True`` machinery keeps the machine code beside it and a new process loading
the same reward does not compile again.

The generated arithmetic follows ``sympy.lambdify(..., "numpy")``: the printer is sympy's NumPy
printer (same operand order, same numerator/denominator split), with the numpy idioms that numba
cannot run on scalars (``select``, ``reduce(minimum, ...)``, ``less``) replaced by scalar
equivalents with the same NaN behaviour, and ``error_model="numpy"`` so that division by zero
gives inf/nan instead of raising. ``fastmath`` stays off: it would let LLVM assume there is no NaN.
Constants are computed on doubles as numpy would (``exp(E)`` is ``numpy.exp(numpy.e)``).

exp, log, sin, cos, tanh, arctan, arctan2 and power come from glibc's libmvec when it has them and
numba generates AVX-512 or AVX2 code (``VECTOR_MATH``): the scalar libm functions numba would call
cost 6-24 ns each, against 1-3 ns per value for the vector ones (numpy has SIMD loops of its
own). The batch kernels then run in chunks of rows: a loop over the chunk computes the arguments of
the calls it can, the calls run on whole vectors, the next loop goes on with their results. Each
lane of a vector call depends on that lane's inputs only, so every row gets the same bits wherever
it falls in a chunk and whatever the number of threads, and ``single`` (which calls the same
functions with its value in every lane) agrees with ``rewards`` to the bit. Elsewhere the scalar
libm functions are used, in one plain loop over rows.

Nothing a user wrote is pasted into the generated code: it is printed from sympy trees only,
symbols become locals with mangled names checked to be identifiers, and strings in it (error
messages) are built from integers.
"""

from __future__ import annotations

import atexit
import dataclasses
import functools
import hashlib
import importlib.util
import json
import math
import os
import re
import shutil
import sys
import tempfile
import threading
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import llvmlite.binding as llvm
import numba
import numpy as np
import sympy
from llvmlite import ir
from numba.core import cgutils, types
from numba.core.registry import cpu_target
from numba.extending import intrinsic
from sympy.core.numbers import Exp1, Pi
from sympy.core.relational import Relational
from sympy.logic.boolalg import ITE, And, BooleanFalse, BooleanTrue, Not, Or
from sympy.printing.numpy import NumPyPrinter

from symreward.errors import DataError, FeatureError, SymrewardError
from symreward.formula import Comparison, Where, is_identifier

__all__ = ["CODEGEN_VERSION", "VECTOR_MATH", "VECTOR_MATH_OPTIONS", "RewardKernels", "VectorMath",
           "compile_reward", "kernel_math"]

# Part of every key: bump it whenever the generated code changes for the same input, so stale
# modules (and numba caches beside them) are never picked up.
CODEGEN_VERSION = 4

ENV_CACHE_DIR = "SYMREWARD_CACHE_DIR"

_INPUT_ARRAYS = ("obs", "act", "next_obs")
_RAW_INPUT = re.compile(r"(obs|act|next_obs)\[([0-9]+)\]")
_INFO_PREFIX = "info."

# Inputs are typed read-only (names defined in the generated module's header): numba accepts
# writable arrays for a read-only parameter, and datasets hand out read-only views.
_BATCH_ARGS = "_TABLE, _TABLE, _TABLE, _TABLE"
_ROW_ARGS = "_ROW, _ROW, _ROW, _ROW"
_SIGNATURES = {
    "rewards": f"numba.float64[::1]({_BATCH_ARGS})",
    "term_columns": f"numba.float64[:, ::1]({_BATCH_ARGS})",
    "feature_matrix": f"numba.float64[:, ::1]({_BATCH_ARGS})",
    "single": f"numba.float64({_ROW_ARGS})",
}
_SIGNATURE_TYPES = ('_TABLE = numba.types.Array(numba.float64, 2, "C", readonly=True)\n'
                    '_ROW = numba.types.Array(numba.float64, 1, "C", readonly=True)\n')

# Scalar helpers the printer may call; only those a reward uses are written into its module.
# numpy.minimum/maximum return the first argument when it is NaN or strictly smaller (larger),
# otherwise the second, so NaN propagates and signed zeros tie-break exactly as numpy does.
_HELPERS = {
    "_min2": "def _min2(a, b):\n    return a if a < b or a != a else b\n",
    "_max2": "def _max2(a, b):\n    return a if a > b or a != a else b\n",
    "_pow2": "def _pow2(x):\n    return x * x\n",
    "_pow3": "def _pow3(x):\n    return x * x * x\n",
    "_pow4": "def _pow4(x):\n    y = x * x\n    return y * y\n",
}
# Integer powers up to this are multiplications (exact for 2, within 2 ulp above); numpy.power
# (libm pow, ~20 ns) above.
_MAX_MULTIPLIED_POWER = 4
_HELPER_DECORATOR = '@numba.njit(error_model="numpy", fastmath=False)'

# atan is not in the formula language, but sympy rewrites atan2(y, x) with x > 0 into it.
_SUPPORTED_FUNCTIONS = (sympy.Abs, sympy.exp, sympy.log, sympy.sin, sympy.cos, sympy.tanh,
                        sympy.atan2, sympy.atan, sympy.Min, sympy.Max)
_SUPPORTED = (sympy.Symbol, sympy.Number, Pi, Exp1, sympy.Add, sympy.Mul, sympy.Pow,
              sympy.Piecewise, sympy.functions.elementary.piecewise.ExprCondPair, Relational,
              And, Or, Not, ITE, BooleanTrue, BooleanFalse, Comparison, Where,
              *_SUPPORTED_FUNCTIONS)
_OPERATORS = ("<", "<=", ">", ">=", "==", "!=")

# Rows per chunk of the batch kernels with vector calls: a multiple of every vector width, and
# small enough that the chunk's buffer of call arguments stays in the L1 cache.
_CHUNK = 256


# -- vector math -------------------------------------------------------------------------------

# numpy name -> (libm name, number of arguments). glibc's libmvec exports exp, log, sin, cos and
# pow since 2.22, tanh, atan and atan2 since 2.35.
_VECTOR_FUNCTIONS = {"exp": ("exp", 1), "log": ("log", 1), "sin": ("sin", 1), "cos": ("cos", 1),
                     "tanh": ("tanh", 1), "arctan": ("atan", 1), "arctan2": ("atan2", 2),
                     "power": ("pow", 2)}


@dataclasses.dataclass(frozen=True)
class VectorMath:
    """How the kernels compute exp, log, sin, cos, tanh, arctan, arctan2 and power.

    ``functions`` (numpy names) are called as glibc libmvec vector functions, ``width`` doubles
    at a time, under the x86-64 vector function ABI names (``_ZGVeN8vv_atan2``: ISA letter
    ``abi`` "e" for AVX-512, "d" for AVX2); the others are the scalar libm functions. Part of
    every kernel's cache key.
    """

    name: str
    abi: str
    width: int
    functions: tuple[str, ...] = ()

    def symbol(self, function: str) -> str:
        libm, arity = _VECTOR_FUNCTIONS[function]
        return f"_ZGV{self.abi}N{self.width}{'v' * arity}_{libm}"

    @property
    def key(self) -> str:
        return f"{self.name}:{','.join(self.functions)}"


_SCALAR = VectorMath("scalar", "", 1)

# Widest first: (name, ABI letter, doubles per vector, the target feature numba must generate code
# for). Without that feature LLVM would pass the vectors in other registers than glibc expects,
# so code built for another CPU (NUMBA_CPU_NAME=generic, for portable caches) stays scalar.
_LIBMVEC_VARIANTS = (("libmvec-avx512", "e", 8, "+avx512f"), ("libmvec-avx2", "d", 4, "+avx2"))


def _vector_math_options() -> tuple[VectorMath, ...]:
    triple, _, features = cpu_target.target_context.codegen().magic_tuple()
    if not triple.startswith("x86_64-") or "-linux-gnu" not in triple:
        return (_SCALAR,)
    try:
        # Also resolves the symbols of kernels that numba loads from its disk cache.
        llvm.load_library_permanently("libmvec.so.1")
    except RuntimeError:
        return (_SCALAR,)
    options = []
    for name, abi, width, feature in _LIBMVEC_VARIANTS:
        variant = VectorMath(name, abi, width)
        functions = tuple(function for function in _VECTOR_FUNCTIONS
                          if llvm.address_of_symbol(variant.symbol(function)))
        if feature in features.split(",") and functions:
            options.append(dataclasses.replace(variant, functions=functions))
    return (*options, _SCALAR)


#: Every way of computing the kernels' math that works here, fastest first; scalar libm last.
VECTOR_MATH_OPTIONS = _vector_math_options()
#: The way new kernels use, chosen once at import.
VECTOR_MATH = VECTOR_MATH_OPTIONS[0]


def _declare(builder: ir.IRBuilder, variant: VectorMath, function: str
             ) -> tuple[ir.Function, ir.VectorType]:
    vector = ir.VectorType(ir.DoubleType(), variant.width)
    arity = _VECTOR_FUNCTIONS[function][1]
    signature = ir.FunctionType(vector, [vector] * arity)
    callee = cgutils.get_or_insert_function(builder.module, signature, variant.symbol(function))
    return callee, vector


def _block_intrinsic(variant: VectorMath, function: str) -> Any:
    """``block(first[, second], start)``: ``function`` of the ``width`` values from ``start`` of
    1-D float64 arrays (which must hold them), written over ``first``."""

    def codegen(context: Any, builder: ir.IRBuilder, signature: Any, args: Any) -> Any:
        callee, vector = _declare(builder, variant, function)
        *arrays, start = args
        pointers = [builder.bitcast(builder.gep(context.make_array(kind)(context, builder, array)
                                                .data, [start]), vector.as_pointer())
                    for kind, array in zip(signature.args[:-1], arrays, strict=True)]
        values = builder.call(callee, [builder.load(pointer, align=8) for pointer in pointers])
        builder.store(values, pointers[0], align=8)
        return context.get_dummy_value()

    def typed(*args: Any) -> Any:
        *arrays, start = args
        if isinstance(start, types.Integer) and all(
                isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C"
                and a.dtype == types.float64 and a.mutable for a in arrays):
            return types.none(*args), codegen
        return None

    # numba cannot lower an intrinsic taking *args: one typer per arity.
    if _VECTOR_FUNCTIONS[function][1] == 1:
        def unary(typingctx: Any, first: Any, start: Any) -> Any:
            return typed(first, start)
        return intrinsic(unary)

    def binary(typingctx: Any, first: Any, second: Any, start: Any) -> Any:
        return typed(first, second, start)
    return intrinsic(binary)


def _lane_intrinsic(variant: VectorMath, function: str) -> Any:
    """``lane(x[, y])``: ``function`` of one value, computed with it in every lane."""
    arity = _VECTOR_FUNCTIONS[function][1]

    def codegen(context: Any, builder: ir.IRBuilder, signature: Any, args: Any) -> Any:
        callee, vector = _declare(builder, variant, function)
        lane_0 = ir.Constant(ir.IntType(32), 0)
        every_lane = ir.Constant(ir.VectorType(ir.IntType(32), variant.width),
                                 [0] * variant.width)
        undefined = ir.Constant(vector, ir.Undefined)
        splats = [builder.shuffle_vector(builder.insert_element(undefined, value, lane_0),
                                         undefined, every_lane) for value in args]
        return builder.extract_element(builder.call(callee, splats), lane_0)

    def typed(*args: Any) -> Any:
        if all(isinstance(a, types.Float | types.Integer) for a in args):
            return types.float64(*(types.float64,) * len(args)), codegen
        return None

    if arity == 1:
        def unary(typingctx: Any, x: Any) -> Any:
            return typed(x)
        return intrinsic(unary)

    def binary(typingctx: Any, x: Any, y: Any) -> Any:
        return typed(x, y)
    return intrinsic(binary)


@functools.cache
def _vector_function(name: str, function: str) -> tuple[Any, Any]:
    """``(block, lane)`` intrinsics of ``function`` under the vector math called ``name``; the
    generated modules bind them at import."""
    for variant in VECTOR_MATH_OPTIONS:
        if variant.name == name and function in variant.functions:
            return _block_intrinsic(variant, function), _lane_intrinsic(variant, function)
    raise SymrewardError(f"vector math {name!r} has no {function!r} on this machine")


@numba.njit(cache=True)
def _scalar_exp(x: np.ndarray, start: int) -> None:  # pragma: no cover - numba
    x[start] = np.exp(x[start])


@numba.njit(cache=True)
def _scalar_log(x: np.ndarray, start: int) -> None:  # pragma: no cover - numba
    x[start] = np.log(x[start])


@numba.njit(cache=True)
def _scalar_sin(x: np.ndarray, start: int) -> None:  # pragma: no cover - numba
    x[start] = np.sin(x[start])


@numba.njit(cache=True)
def _scalar_cos(x: np.ndarray, start: int) -> None:  # pragma: no cover - numba
    x[start] = np.cos(x[start])


@numba.njit(cache=True)
def _scalar_tanh(x: np.ndarray, start: int) -> None:  # pragma: no cover - numba
    x[start] = np.tanh(x[start])


_SCALAR_BLOCKS = {"exp": _scalar_exp, "log": _scalar_log, "sin": _scalar_sin,
                  "cos": _scalar_cos, "tanh": _scalar_tanh}


def block_math(function: str) -> tuple[Any, int]:
    """``(block, width)`` for numba code: ``block(x, start)`` computes ``function`` ("exp",
    "log", "sin", "cos", "tanh") in place on ``width`` doubles of a 1-D C-contiguous float64
    array from ``start`` (the array must hold them: pad it). Vector calls where the kernels use
    them (``VECTOR_MATH``), else libm one value at a time (``width`` 1). Code calling ``block``
    and cached by numba is tied to this machine's CPU, as numba's cache is."""
    if function in VECTOR_MATH.functions:
        return _vector_function(VECTOR_MATH.name, function)[0], VECTOR_MATH.width
    return _SCALAR_BLOCKS[function], 1


def kernel_math(function: str) -> Callable[..., np.ndarray]:
    """numpy's ``function`` ("exp", "arctan2", "power", ...) as the kernels compute it, bit for
    bit: elementwise over broadcast float64 arrays, with ``VECTOR_MATH``. numpy's own SIMD
    functions can differ from it in the last bit, and some formulas (``cos(1e150 * exp(x))``)
    magnify that without bound, so checks of the kernels against numpy evaluation use these."""
    return _kernel_math(VECTOR_MATH, function)


@functools.cache
def _kernel_math(variant: VectorMath, function: str) -> Callable[..., np.ndarray]:
    numpy_function = getattr(np, function)
    arity = _VECTOR_FUNCTIONS[function][1]
    if function not in variant.functions:
        signature = "float64(" + ", ".join(["float64"] * arity) + ")"
        if arity == 1:
            return numba.vectorize([signature])(lambda x: numpy_function(x))
        return numba.vectorize([signature])(lambda x, y: numpy_function(x, y))
    block, _ = _vector_function(variant.name, function)
    width = variant.width

    if arity == 1:
        @numba.njit
        def apply(first: np.ndarray) -> None:
            for start in range(0, first.size, width):
                block(first, start)
    else:
        @numba.njit
        def apply(first: np.ndarray, second: np.ndarray) -> None:
            for start in range(0, first.size, width):
                block(first, second, start)

    def evaluate(*args: Any) -> np.ndarray:
        arrays = np.broadcast_arrays(*(np.asarray(a, dtype=np.float64) for a in args))
        size = arrays[0].size
        padded = [np.zeros(-(-size // width) * width) for _ in arrays]
        for target, array in zip(padded, arrays, strict=True):
            target[:size] = array.ravel()
        apply(*padded)
        return padded[0][:size].reshape(arrays[0].shape)

    return evaluate


class RewardKernels:
    """Compiled kernels of one reward; build it with ``compile_reward``.

    Every batch method takes ``obs`` (N, obs_dim), ``act`` (N, act_dim), ``next_obs`` (N, obs_dim)
    and ``info`` (N, len(info_names)) arrays of any float dtype, converted once to C-contiguous
    float64; ``info`` may be None when the kernel reads no info field.
    """

    def __init__(self, *, key: str, source: str, path: Path, module: ModuleType,
                 feature_names: tuple[str, ...], term_names: tuple[str, ...],
                 info_names: tuple[str, ...], info_read_by_terms: bool,
                 info_read_by_features: bool):
        self.key = key
        self.source = source
        self.path = path
        self.feature_names = feature_names
        self.term_names = term_names
        self.info_names = info_names
        self._rewards = module.rewards
        self._term_columns = module.term_columns
        self._feature_matrix = module.feature_matrix
        self._info_read_by_terms = info_read_by_terms
        self._info_read_by_features = info_read_by_features
        #: The njit kernel behind ``single``: (obs, act, next_obs, info) C-contiguous float64 1-D
        #: arrays, no conversion; pass any 1-D float64 array as ``info`` when no info is read.
        self.single_raw = module.single

    def __repr__(self) -> str:
        return (f"RewardKernels(key={self.key[:16]!r}, features={len(self.feature_names)}, "
                f"terms={len(self.term_names)}, path={str(self.path)!r})")

    def rewards(self, obs: Any, act: Any, next_obs: Any, info: Any = None) -> np.ndarray:
        """The reward of every transition, (N,) float64, in one fused parallel pass."""
        return self._rewards(*self._tables(obs, act, next_obs, info, self._info_read_by_terms))

    def term_columns(self, obs: Any, act: Any, next_obs: Any, info: Any = None) -> np.ndarray:
        """Each term's contribution, (N, n_terms) float64; the rows sum to ``rewards``."""
        return self._term_columns(*self._tables(obs, act, next_obs, info,
                                                self._info_read_by_terms))

    def feature_matrix(self, obs: Any, act: Any, next_obs: Any, info: Any = None) -> np.ndarray:
        """Every feature's value, (N, n_features) float64, in ``feature_names`` order."""
        return self._feature_matrix(*self._tables(obs, act, next_obs, info,
                                                  self._info_read_by_features))

    def single(self, obs: Any, act: Any, next_obs: Any, info: Any = None) -> float:
        """The reward of one transition from 1-D rows (for environment wrappers)."""
        if info is None:
            info = _NO_INFO_ROW
        try:
            # Rows that already are float64 1-D arrays go straight to the kernel; the dispatcher
            # refuses anything else with TypeError (compilation of new types is disabled).
            return self.single_raw(obs, act, next_obs, info)
        except TypeError:
            pass
        return self.single_raw(_row(obs, "obs"), _row(act, "act"), _row(next_obs, "next_obs"),
                               _row(info, "info"))

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


_MEMORY: dict[str, RewardKernels] = {}
_LOCK = threading.Lock()
_fallback_dir: Path | None = None


def compile_reward(features: Sequence[tuple[str, sympy.Expr]],
                   terms: Sequence[tuple[str, sympy.Expr]],
                   info_names: Sequence[str] = (), *,
                   cache_dir: str | os.PathLike[str] | None = None) -> RewardKernels:
    """Compile a reward (the sum of ``terms``) into numba kernels, or fetch it from a cache.

    ``features`` are ordered ``(name, expr)`` pairs over raw-input symbols (``obs[i]``,
    ``act[i]``, ``next_obs[i]``, ``info.<name>``) and earlier features; ``terms`` are
    ``(name, expr)`` pairs over feature symbols; ``info_names`` orders the columns of the info
    array. Compilation (or loading numba's on-disk cache) happens here, not on the first call.
    exp, log, sin, ... are computed as ``VECTOR_MATH`` says (part of the cache key).
    The generated module goes to ``cache_dir``, else ``$SYMREWARD_CACHE_DIR``, else
    ``~/.cache/symreward/kernels``; if that cannot be written, a private temporary directory is
    used with a warning.
    """
    plan = _Plan(features, terms, info_names)
    source = plan.source()
    names = [plan.feature_names, plan.term_names, plan.info_names]
    digest = hashlib.sha256()
    # The source names the vector math too; the key says it outright.
    for part in (str(CODEGEN_VERSION), numba.__version__, plan.math.key, json.dumps(names),
                 source):
        digest.update(part.encode())
        digest.update(b"\0")
    key = digest.hexdigest()
    with _LOCK:
        kernels = _MEMORY.get(key)
        if kernels is None:
            path = _write_module(_cache_directory(cache_dir), f"reward_{key[:16]}.py", source)
            module = _import_module(path, key)
            kernels = RewardKernels(key=key, source=source, path=path, module=module,
                                    feature_names=plan.feature_names,
                                    term_names=plan.term_names, info_names=plan.info_names,
                                    info_read_by_terms=plan.info_read_by_terms,
                                    info_read_by_features=plan.info_read_by_features)
            _MEMORY[key] = kernels
    return kernels


def _cache_directory(cache_dir: str | os.PathLike[str] | None) -> Path:
    if cache_dir is None:
        cache_dir = os.environ.get(ENV_CACHE_DIR) or Path.home() / ".cache/symreward/kernels"
    return Path(cache_dir).expanduser()


def _write_module(directory: Path, filename: str, source: str) -> Path:
    """Write ``source`` unless an identical file is there: rewriting would change its mtime,
    which numba's cache index checks, and so throw away the compiled code beside it."""
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


def _import_module(path: Path, key: str) -> ModuleType:
    # The name must be the same in every process: numba's cached code refers to the module by it.
    name = f"_symreward_reward_{key[:16]}"
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
    for kernel in _SIGNATURES:
        # Only the eager float64 signatures exist: other argument types must fail fast with
        # TypeError (the wrappers convert and retry) instead of compiling a new specialisation.
        getattr(module, kernel).disable_compile()
    return module


class _Plan:
    """Checked features and terms, and the source of the module that evaluates them."""

    def __init__(self, features: Sequence[tuple[str, sympy.Expr]],
                 terms: Sequence[tuple[str, sympy.Expr]], info_names: Sequence[str]):
        self.math = VECTOR_MATH
        self.info_names = tuple(str(name) for name in info_names)
        if len(set(self.info_names)) != len(self.info_names):
            raise FeatureError(f"info_names has duplicates: {list(self.info_names)}")
        self.feature_names = tuple(name for name, _ in features)
        self.term_names = tuple(str(name) for name, _ in terms)
        self.locals: dict[str, str] = {}      # symbol name -> local variable in generated code
        self.inputs: dict[str, tuple[str, int]] = {}  # raw symbol name -> (array, column)
        self.definitions: dict[str, sympy.Expr] = {}  # feature name -> expression
        self.depends: dict[str, set[str]] = {}        # feature name -> symbols it reads
        for position, (name, expr) in enumerate(features):
            if not isinstance(name, str) or not is_identifier(name):
                raise FeatureError(f"feature name {name!r} is not a valid identifier")
            if name in self.definitions:
                raise FeatureError(f"feature {name!r} is defined twice")
            expr = _expression(expr, f"feature {name!r}")
            self.depends[name] = self._symbols(expr, f"feature {name!r}", raw=True)
            self.definitions[name] = expr
            # Non-ASCII identifiers are NFKC-normalised by Python, so two different names could
            # meet in one variable; those features are numbered instead.
            self.locals[name] = f"f_{name}" if name.isascii() else f"f_{position}"
        self.terms = []
        for name, expr in terms:
            expr = _expression(expr, f"term {name!r}")
            self._symbols(expr, f"term {name!r}", raw=False)
            self.terms.append(expr)
        self.needed = self._closure(set().union(*(_names(t) for t in self.terms)))
        self.info_read_by_terms = self._reads_info(self.needed)
        self.info_read_by_features = self._reads_info(self.feature_names)

    def _symbols(self, expr: sympy.Expr, what: str, *, raw: bool) -> set[str]:
        found = set()
        for name in _names(expr):
            if name in self.definitions or (raw and self._register_input(name)):
                found.add(name)
            else:
                known = "raw inputs and earlier features" if raw else "features"
                raise FeatureError(f"{what} uses {name!r}, which is not one of its {known} "
                                   f"(features so far: {list(self.definitions)})")
        return found

    def _register_input(self, name: str) -> bool:
        if name in self.inputs:
            return True
        match = _RAW_INPUT.fullmatch(name)
        if match:
            array, column = match.group(1), int(match.group(2))
        elif name.startswith(_INFO_PREFIX):
            field = name[len(_INFO_PREFIX):]
            if field not in self.info_names:
                raise FeatureError(f"{name!r} is not among info_names {list(self.info_names)}")
            array, column = "info", self.info_names.index(field)
        else:
            return False
        self.inputs[name] = (array, column)
        self.locals[name] = f"{array}_{column}"
        return True

    def _closure(self, names: set[str]) -> tuple[str, ...]:
        """The features needed for ``names``, in definition order (dependencies first)."""
        needed, stack = set(), list(names)
        while stack:
            name = stack.pop()
            if name in self.definitions and name not in needed:
                needed.add(name)
                stack.extend(self.depends[name])
        return tuple(name for name in self.definitions if name in needed)

    def _reads_info(self, features: Sequence[str]) -> bool:
        return any(self.inputs.get(s, ("",))[0] == "info"
                   for name in features for s in self.depends[name])

    def source(self) -> str:
        printer = _KernelPrinter(self.locals, self.math)
        term_locals = [f"t_{k}" for k in range(len(self.terms))]
        fused = self._body(printer, [*((self.locals[n], self.definitions[n]) for n in self.needed),
                                     *zip(term_locals, self.terms, strict=True)])
        every = self._body(printer, [(self.locals[n], self.definitions[n])
                                     for n in self.feature_names])
        feature_locals = [self.locals[name] for name in self.feature_names]
        reward = " + ".join(term_locals) or "0.0"
        n_terms, n_features = len(term_locals), len(self.feature_names)
        kernels = [
            self._batch_kernel("rewards", fused, "numpy.empty(n)", [f"out[i] = {reward}"],
                               term_locals),
            self._batch_kernel("term_columns", fused, f"numpy.empty((n, {n_terms}))",
                               [f"out[i, {k}] = {t}" for k, t in enumerate(term_locals)],
                               term_locals),
            self._batch_kernel("feature_matrix", every, f"numpy.empty((n, {n_features}))",
                               [f"out[i, {k}] = {f}" for k, f in enumerate(feature_locals)],
                               feature_locals),
            self._single_kernel(fused, reward),
        ]
        helpers = [f"{_HELPER_DECORATOR}\n{_HELPERS[name]}" for name in sorted(printer.helpers)]
        header = (f'"""Generated by symreward.kernels (codegen {CODEGEN_VERSION}); do not edit: '
                  'it is rewritten when it differs."""\n\nimport numba\nimport numpy\n')
        if printer.vector_functions:
            header += "\nfrom symreward.kernels import _vector_function\n\n" + "".join(
                f'_{f}_block, _{f}_lane = _vector_function("{self.math.name}", "{f}")\n'
                for f in sorted(printer.vector_functions))
        return "\n\n".join([header + "\n" + _SIGNATURE_TYPES, *helpers, *kernels])

    def _body(self, printer: _KernelPrinter, roots: list[tuple[str, sympy.Expr]]
              ) -> tuple[list[_Statement], list[tuple[str, int]]]:
        """Statements computing ``roots`` in order, and the raw inputs they read."""
        shared = _shared_subexpressions([expr for _, expr in roots])
        printer.start_body()
        temps = printer.temps

        def define_temps(expr: sympy.Basic) -> None:
            if expr in temps or not expr.args:
                return
            for arg in expr.args:
                define_temps(arg)
            if expr in shared:
                text, reads = printer.capture(lambda: printer.definition(expr))
                if text in printer.calls.values():  # a vector call is a local of its own
                    temps[expr] = text
                else:
                    temps[expr] = f"c_{len(temps)}"
                    printer.statements.append(_Statement(temps[expr], reads, text))

        for name, expr in roots:
            define_temps(expr)
            text, reads = printer.capture(lambda expr=expr: printer.expression(expr))
            printer.statements.append(_Statement(name, reads, text))
        read = set().union(*(_names(expr) for _, expr in roots))
        inputs = sorted(self.inputs[s] for s in read if s in self.inputs)
        return printer.statements, inputs

    def _checks(self, inputs: list[tuple[str, int]], batch: bool) -> list[str]:
        """Shape checks before any read: the kernels run without bounds checking."""
        axis = 1 if batch else 0
        lines = []
        if batch:
            lines.append("n = obs.shape[0]")
            arrays = ["act", "next_obs", *(["info"] if any(a == "info" for a, _ in inputs) else [])]
            for array in arrays:
                lines += [f"if {array}.shape[0] != n:",
                          f'    raise ValueError("{array} must have as many rows as obs")']
        for array in _INPUT_ARRAYS:
            columns = [c for a, c in inputs if a == array]
            if columns:
                need = max(columns) + 1
                lines += [f"if {array}.shape[{axis}] < {need}:",
                          f'    raise ValueError("{array} must have at least {need} columns: '
                          f'the reward reads {array}[{need - 1}]")']
        if any(a == "info" for a, _ in inputs):
            need = len(self.info_names)
            lines += [f"if info.shape[{axis}] != {need}:",
                      f'    raise ValueError("info must have {need} columns, one per info name")']
        return lines

    def _batch_kernel(self, name: str, body: tuple[list[_Statement], list[tuple[str, int]]],
                      allocate: str, stores: list[str], stored: list[str]) -> str:
        """A parallel kernel writing ``stores`` (which read the locals ``stored``) for each row."""
        statements, inputs = body
        if any(statement.function for statement in statements):
            loop = _chunked_loop(statements, inputs, stores, stored, self.math.width)
        else:
            loads = [f"{a}_{c} = {a}[i, {c}]" for a, c in inputs]
            row = [*loads, *(statement.line() for statement in statements), *stores]
            loop = ["for i in numba.prange(n):", *(f"    {line}" for line in row or ["pass"])]
        lines = [
            f"@numba.njit({_SIGNATURES[name]}, parallel=True, cache=True, "
            'error_model="numpy", fastmath=False)',
            f"def {name}(obs, act, next_obs, info):",
            *(f"    {line}" for line in self._checks(inputs, batch=True)),
            f"    out = {allocate}",
            *(f"    {line}" for line in loop),
            "    return out",
        ]
        return "\n".join(lines) + "\n"

    def _single_kernel(self, body: tuple[list[_Statement], list[tuple[str, int]]],
                       reward: str) -> str:
        statements, inputs = body
        lines = [
            f'@numba.njit({_SIGNATURES["single"]}, cache=True, error_model="numpy", '
            "fastmath=False)",
            "def single(obs, act, next_obs, info):",
            *(f"    {line}" for line in self._checks(inputs, batch=False)),
            *(f"    {a}_{c} = {a}[{c}]" for a, c in inputs),
            *(f"    {statement.line()}" for statement in statements),
            f"    return {reward}",
        ]
        return "\n".join(lines) + "\n"


@dataclasses.dataclass(frozen=True)
class _Statement:
    """``target = text`` in a kernel body, or for a vector call ``target = function(*args)``;
    ``reads`` are the locals it uses."""

    target: str
    reads: frozenset[str]
    text: str = ""
    function: str = ""
    args: tuple[str, ...] = ()

    def line(self) -> str:
        """The statement for one row: a vector call runs with the row's value in every lane."""
        if self.function:
            return f"{self.target} = _{self.function}_lane({', '.join(self.args)})"
        return f"{self.target} = {self.text}"


def _chunked_loop(statements: list[_Statement], inputs: list[tuple[str, int]], stores: list[str],
                  stored: list[str], width: int) -> list[str]:
    """A parallel loop over chunks of rows for a body with vector calls.

    A call's level is one more than the deepest call its arguments depend on. For each level, a
    loop over the chunk's rows computes the arguments of the calls of that level into rows of a
    buffer, then each call runs over the buffer a vector at a time and leaves its results in the
    first argument's row. A last loop computes the stores. Each loop recomputes the plain
    statements it needs (arithmetic, cheaper than keeping them) and reads call results from the
    buffer."""
    by_target = {statement.target: statement for statement in statements}
    level: dict[str, int] = {}
    for statement in statements:
        deepest = max((level[name] for name in statement.reads if name in level), default=0)
        level[statement.target] = deepest + bool(statement.function)
    calls = [statement for statement in statements if statement.function]
    first_row, rows = {}, 0
    for call in calls:
        first_row[call.target] = rows
        rows += len(call.args)
    deepest = max(level[call.target] for call in calls)
    lines = [f"for chunk in numba.prange((n + {_CHUNK - 1}) // {_CHUNK}):",
             f"    lo = chunk * {_CHUNK}",
             f"    m = min(n - lo, {_CHUNK})",
             f"    buffer = numpy.empty(({rows}, {_CHUNK}))"]
    for depth in range(1, deepest + 2):
        stage = [call for call in calls if level[call.target] == depth]
        if depth <= deepest:
            outputs = [f"buffer[{first_row[call.target] + k}, j] = {arg}"
                       for call in stage for k, arg in enumerate(call.args)]
            reads = set().union(*(call.reads for call in stage))
        else:
            outputs, reads = stores, set(stored)
        needed = _closure(reads, by_target)
        loads = [f"{a}_{c} = {a}[i, {c}]" for a, c in inputs if f"{a}_{c}" in needed]
        body = [f"{s.target} = buffer[{first_row[s.target]}, j]" if s.function else s.line()
                for s in statements if s.target in needed]
        index = ["i = lo + j"] if loads or depth > deepest else []  # the row in the tables
        lines += ["    for j in range(m):",
                  *(f"        {line}" for line in [*index, *loads, *body, *outputs])]
        for call in stage:
            first = first_row[call.target]
            buffers = ", ".join(f"buffer[{first + k}]" for k in range(len(call.args)))
            lines += [f"    for start in range(0, m, {width}):",
                      f"        _{call.function}_block({buffers}, start)"]
    return lines


def _closure(reads: set[str], by_target: dict[str, _Statement]) -> set[str]:
    """The locals that ``reads`` need, through plain statements (not into vector calls)."""
    needed, stack = set(), list(reads)
    while stack:
        name = stack.pop()
        if name not in needed:
            needed.add(name)
            statement = by_target.get(name)
            if statement is not None and not statement.function:
                stack.extend(statement.reads)
    return needed


def _expression(expr: Any, what: str) -> sympy.Expr:
    if isinstance(expr, int | float):
        expr = sympy.Float(expr) if isinstance(expr, float) else sympy.Integer(expr)
    if not isinstance(expr, sympy.Expr):
        raise SymrewardError(f"{what} must be a sympy expression, not {type(expr).__name__}")
    _check_supported(expr, what)
    return expr


def _check_supported(node: sympy.Basic, what: str) -> None:
    if not isinstance(node, _SUPPORTED):
        raise SymrewardError(f"{what}: {type(node).__name__} cannot be compiled (in {node})")
    for arg in node.args:
        _check_supported(arg, what)


def _names(expr: sympy.Basic) -> set[str]:
    return {s.name for s in expr.free_symbols}


def _shared_subexpressions(roots: list[sympy.Expr]) -> set[sympy.Basic]:
    """Subtrees that occur more than once; each becomes one local.

    Whole subtrees only (unlike ``sympy.cse``, which also regroups the arguments of sums and
    products): regrouping would change the order of floating-point operations and so the results,
    and the kernels must agree with numpy evaluation of the same expressions. A reciprocal or
    negation is not worth a local and would change how the printer writes a quotient."""
    counts: Counter[sympy.Basic] = Counter()

    def visit(expr: sympy.Basic) -> None:
        if not expr.args:
            return
        counts[expr] += 1
        if counts[expr] == 1:
            for arg in expr.args:
                visit(arg)

    for root in roots:
        visit(root)
    return {expr for expr, count in counts.items() if count > 1 and _worth_a_local(expr)}


def _worth_a_local(expr: sympy.Basic) -> bool:
    if not isinstance(expr, sympy.Expr):
        return False  # conditions are printed inline, at the Piecewise that tests them
    if isinstance(expr, sympy.Pow) and expr.exp.is_number and expr.exp.is_negative:
        return False
    return not (isinstance(expr, sympy.Mul) and expr.args[0] is sympy.S.NegativeOne
                and len(expr.args) == 2)


_T = TypeVar("_T")

# sympy function class name -> numpy function, for the functions that may be vector calls.
_MATH_FUNCTIONS = {"exp": "exp", "log": "log", "sin": "sin", "cos": "cos", "tanh": "tanh",
                   "atan": "arctan", "atan2": "arctan2"}


class _KernelPrinter(NumPyPrinter):
    """sympy's NumPy printer (as lambdify uses it) turned into scalar numba code.

    It prints one kernel body at a time into ``statements``. Calls of functions in
    ``math.functions`` become statements of their own (one per distinct call, even inside a
    branch that a row does not take: they have no side effects)."""

    def __init__(self, local_names: dict[str, str], math: VectorMath):
        super().__init__({"fully_qualified_modules": True, "inline": True, "strict": True,
                          "allow_unknown_functions": False, "user_functions": {}})
        self.local_names = local_names
        self.math = math
        self.helpers: set[str] = set()
        self.vector_functions: set[str] = set()
        self.start_body()

    def start_body(self) -> None:
        """Forget the locals of the previous body."""
        self.temps: dict[sympy.Basic, str] = {}
        self.statements: list[_Statement] = []
        self.calls: dict[tuple[str, tuple[str, ...]], str] = {}  # (function, args) -> local
        self.reads: set[str] = set()

    def capture(self, print_: Callable[[], _T]) -> tuple[_T, frozenset[str]]:
        """What ``print_`` returns, and the locals it printed."""
        outer, self.reads = self.reads, set()
        try:
            return print_(), frozenset(self.reads)
        finally:
            self.reads = outer

    def expression(self, expr: sympy.Basic) -> str:
        """``expr`` printed with the shared locals defined so far."""
        return self._print(expr)

    def definition(self, expr: sympy.Basic) -> str:
        """``expr`` printed in full even if it is a shared local (to define that local)."""
        return super()._print(expr)

    def _print(self, expr: Any, **kwargs: Any) -> str:
        if isinstance(expr, sympy.Number):
            return _number(expr)
        if isinstance(expr, sympy.Basic):
            name = self.temps.get(expr)
            if name is not None:
                self.reads.add(name)
                return name
        return super()._print(expr, **kwargs)

    def _call(self, function: str, *args: sympy.Basic) -> str:
        if function not in self.math.functions:
            return f"numpy.{function}({', '.join(self._print(arg) for arg in args)})"
        texts, reads = self.capture(lambda: tuple(self._print(arg) for arg in args))
        target = self.calls.get((function, texts))
        if target is None:
            target = f"v_{len(self.calls)}"
            self.calls[function, texts] = target
            self.statements.append(_Statement(target, reads, function=function, args=texts))
            self.vector_functions.add(function)
        self.reads.add(target)
        return target

    def _print_math(self, expr: sympy.Function) -> str:
        return self._call(_MATH_FUNCTIONS[type(expr).__name__], *expr.args)

    _print_exp = _print_log = _print_sin = _print_cos = _print_tanh = _print_math
    _print_atan = _print_atan2 = _print_math

    def _print_Symbol(self, expr: sympy.Symbol) -> str:
        name = self.local_names[expr.name]
        if not name.isidentifier():  # the mangling above guarantees this; keep it checked
            raise SymrewardError(f"internal error: {name!r} is not an identifier")
        self.reads.add(name)
        return name

    def _helper(self, name: str, *args: str) -> str:
        self.helpers.add(name)
        return f"{name}({', '.join(args)})"

    def _print_Pow(self, expr: sympy.Pow, rational: bool = False) -> str:
        base, exponent = expr.args
        if exponent.is_Integer:
            power = int(exponent)
            if power == 0:
                return "1.0"
            if abs(power) == 1:
                text = f"({self._print(base)})"
            elif abs(power) <= _MAX_MULTIPLIED_POWER:
                text = self._helper(f"_pow{abs(power)}", self._print(base))
            else:
                text = self._call("power", base, sympy.Float(abs(power)))
            return text if power > 0 else f"1.0/{text}"
        if exponent == sympy.S.Half:
            return f"numpy.sqrt({self._print(base)})"
        if exponent == -sympy.S.Half:
            return f"1.0/numpy.sqrt({self._print(base)})"
        # numpy.power, not **: numba's scalar ** follows Python, numpy.power gives NaN for a
        # negative base with a fractional exponent, as lambdify's array ** does.
        return self._call("power", base, exponent)

    def _print_Min(self, expr: sympy.Min) -> str:
        return self._fold("_min2", expr.args)

    def _print_Max(self, expr: sympy.Max) -> str:
        return self._fold("_max2", expr.args)

    def _fold(self, helper: str, args: tuple[sympy.Basic, ...]) -> str:
        # Left fold in argument order, as lambdify's reduce(minimum, [...]).
        text = self._print(args[0])
        for arg in args[1:]:
            text = self._helper(helper, text, self._print(arg))
        return text

    def _print_Piecewise(self, expr: sympy.Piecewise) -> str:
        # numpy.select falls back to NaN when no condition holds.
        text = "numpy.nan"
        for value, condition in reversed(expr.args):
            if condition is sympy.true:
                text = self._print(value)
            else:
                text = f"({self._print(value)} if {self._print(condition)} else {text})"
        return text

    def _print_Relational(self, expr: Relational) -> str:
        return self._compare(expr.lhs, expr.rel_op, expr.rhs)

    def _compare(self, lhs: sympy.Basic, operator: str, rhs: sympy.Basic) -> str:
        if operator not in _OPERATORS:
            raise SymrewardError(f"comparison {operator!r} cannot be compiled")
        return f"({self._print(lhs)} {operator} {self._print(rhs)})"

    def _print_Function(self, expr: sympy.Function) -> str:
        # sympy's printer looks up _print_<Class> by the exact class of a Function, not its bases.
        if isinstance(expr, Comparison):
            return self._print_Comparison(expr)
        if isinstance(expr, Where):
            return self._print_Where(expr)
        return super()._print_Function(expr)

    def _print_Comparison(self, expr: Comparison) -> str:
        # A comparison with NaN is false, so 0.0, as numpy's less(...) * 1.0.
        return f"(1.0 if {self._compare(*expr.args[:1], expr.operator, *expr.args[1:])} else 0.0)"

    def _print_Where(self, expr: Where) -> str:
        # NaN != 0 holds, so a NaN condition picks if_true, as numpy.where(not_equal(c, 0), ...).
        condition, if_true, if_false = (self._print(arg) for arg in expr.args)
        return f"({if_true} if {condition} != 0.0 else {if_false})"

    def _print_And(self, expr: And) -> str:
        return "(" + " and ".join(self._print(arg) for arg in expr.args) + ")"

    def _print_Or(self, expr: Or) -> str:
        return "(" + " or ".join(self._print(arg) for arg in expr.args) + ")"

    def _print_Not(self, expr: Not) -> str:
        return f"(not {self._print(expr.args[0])})"

    def _print_ITE(self, expr: ITE) -> str:
        # sympy writes a Piecewise nested in a condition as ITE logic.
        condition, if_true, if_false = (self._print(arg) for arg in expr.args)
        return f"({if_true} if {condition} else {if_false})"

    def _print_BooleanTrue(self, expr: BooleanTrue) -> str:
        return "True"

    def _print_BooleanFalse(self, expr: BooleanFalse) -> str:
        return "False"


def _number(number: sympy.Number) -> str:
    """A float literal with the double numpy would use: ``1/3`` is one rounded division.

    Only numbers are folded. Constant subtrees such as ``exp(E)`` are printed as operations on
    doubles, as lambdify does: folding them exactly (``exp`` of the real e) can differ from
    ``numpy.exp(numpy.e)`` in the last bit, and ``cos(1e150 * x)`` turns that into any value."""
    if number is sympy.nan or number is sympy.zoo:
        return "numpy.nan"
    if number.is_infinite:
        return "numpy.inf" if number > 0 else "(-numpy.inf)"
    try:
        value = float(number) if number.is_Float else int(number.p) / int(number.q)
    except OverflowError:  # an integer beyond the double range
        value = math.inf if number > 0 else -math.inf
    if math.isinf(value):
        return "numpy.inf" if value > 0 else "(-numpy.inf)"
    return repr(value) if value >= 0 else f"({value!r})"
