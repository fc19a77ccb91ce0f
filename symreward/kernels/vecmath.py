"""How the kernels compute exp, log, sin, cos, tanh, arctan, arctan2 and power: glibc's libmvec
vector functions where this machine and numba's target have them, else the scalar libm.

The scalar libm functions numba would call cost 6-24 ns each, against 1-3 ns per value for the
vector ones (numpy has SIMD loops of its own). Each lane of a vector call depends on that lane's
inputs only, so a value gets the same bits wherever it falls in a vector. ``block_math`` is the
entry point for other numba code (the evolutionary engine's interpreter and weight solver);
``kernel_math`` computes numpy's functions exactly as the kernels do, for checks against them.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import llvmlite.binding as llvm
import numba
import numpy as np
from llvmlite import ir
from numba.core import cgutils, types
from numba.core.registry import cpu_target
from numba.extending import intrinsic

from symreward.errors import SymrewardError

__all__ = ["VECTOR_MATH", "VECTOR_MATH_OPTIONS", "VectorMath", "block_math", "kernel_math",
           "vector_function"]

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
def vector_function(name: str, function: str) -> tuple[Any, Any]:
    """``(block, lane)`` intrinsics of ``function`` under the vector math called ``name``: the
    generated kernel modules bind them at import."""
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
        return vector_function(VECTOR_MATH.name, function)[0], VECTOR_MATH.width
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
    block, _ = vector_function(variant.name, function)
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
