"""The scalar helpers of generated kernels (small integer powers, NaN-propagating min and max) as
numba intrinsics: their LLVM instructions are written straight into the calling kernel.

As ``@njit`` functions in the generated module, each helper a reward used went through numba's
whole compilation pipeline again for every new structure (about 80 ms each, on the way to the
first reward after a structural edit); an intrinsic is only typed. The instructions are those
numba generates for the Python they replace (``x * x``; ``a if a < b or a != a else b``), so the
bits are the same.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

__all__ = ["max2", "min2", "pow2", "pow3", "pow4"]

_NUMBER = (types.Float, types.Integer, types.Boolean)


def _as_float(context: Any, builder: ir.IRBuilder, value: Any, kind: Any) -> Any:
    return context.cast(builder, value, kind, types.float64)


def _power(multiply: Callable[[ir.IRBuilder, Any], Any]) -> Any:
    def power(typingctx: Any, x: Any) -> Any:
        if not isinstance(x, _NUMBER):
            return None

        def codegen(context: Any, builder: ir.IRBuilder, signature: Any, args: Any) -> Any:
            return multiply(builder, _as_float(context, builder, args[0], signature.args[0]))
        return types.float64(x), codegen
    return intrinsic(power)


def _choose(operator: str) -> Any:
    """``a if a <operator> b or a != a else b``: numpy's minimum/maximum, the first argument
    when it is NaN or strictly beyond the second."""

    def choose(typingctx: Any, a: Any, b: Any) -> Any:
        if not (isinstance(a, _NUMBER) and isinstance(b, _NUMBER)):
            return None

        def codegen(context: Any, builder: ir.IRBuilder, signature: Any, args: Any) -> Any:
            first, second = (_as_float(context, builder, value, kind)
                             for value, kind in zip(args, signature.args, strict=True))
            beyond = builder.fcmp_ordered(operator, first, second)
            not_a_number = builder.fcmp_unordered("uno", first, first)
            return builder.select(builder.or_(beyond, not_a_number), first, second)
        return types.float64(a, b), codegen
    return intrinsic(choose)


def _fourth(builder: ir.IRBuilder, x: Any) -> Any:
    square = builder.fmul(x, x)
    return builder.fmul(square, square)


pow2 = _power(lambda builder, x: builder.fmul(x, x))
pow3 = _power(lambda builder, x: builder.fmul(builder.fmul(x, x), x))
pow4 = _power(_fourth)
min2 = _choose("<")
max2 = _choose(">")
