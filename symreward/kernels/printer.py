"""sympy's NumPy printer turned into the statements of a numba kernel body.

The printer follows ``sympy.lambdify(..., "numpy")`` (same operand order, same numerator and
denominator split), with the numpy idioms numba cannot run on scalars (``select``,
``reduce(minimum, ...)``, ``less``) replaced by scalar equivalents with the same NaN behaviour.
Calls of the vector-math functions become statements of their own, so the batch kernels can run
them on whole vectors.

Floating-point numbers (weights, thresholds, offsets) are not written into the code: each
distinct value is a local ``k_<i>`` read from the kernel's ``constants`` argument, so rewards
that differ only in their numbers share one generated module and one compilation. The value
passed is the double the literal would have been, and the arithmetic on it is the same, so the
results are the same bits. Numbers that decide how the code is written stay literal: integers and
rationals, exponents, infinities and NaN.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, TypeVar

import sympy
from sympy.core.relational import Relational
from sympy.logic.boolalg import ITE, And, BooleanFalse, BooleanTrue, Not, Or
from sympy.printing.numpy import NumPyPrinter

from symreward.errors import SymrewardError
from symreward.formula import Comparison, Where
from symreward.kernels.vecmath import VectorMath

OPERATORS = ("<", "<=", ">", ">=", "==", "!=")
# Integer powers up to this are multiplications (exact for 2, within 2 ulp above); numpy.power
# (libm pow, ~20 ns) above.
MAX_MULTIPLIED_POWER = 4


@dataclasses.dataclass(frozen=True)
class Statement:
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



_T = TypeVar("_T")

# sympy function class name -> numpy function, for the functions that may be vector calls.
_MATH_FUNCTIONS = {"exp": "exp", "log": "log", "sin": "sin", "cos": "cos", "tanh": "tanh",
                   "atan": "arctan", "atan2": "arctan2"}


class KernelPrinter(NumPyPrinter):
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
        #: The value of each ``k_<i>`` local, in order: the kernel's ``constants`` argument.
        self.constants: list[float] = []
        self._constant_locals: dict[str, str] = {}  # float.hex (keeps -0.0 apart) -> local
        self.start_body()

    def start_body(self) -> None:
        """Forget the locals of the previous body."""
        self.temps: dict[sympy.Basic, str] = {}
        self.statements: list[Statement] = []
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
            return self._number(expr)
        if isinstance(expr, sympy.Basic):
            name = self.temps.get(expr)
            if name is not None:
                self.reads.add(name)
                return name
        return super()._print(expr, **kwargs)

    def _number(self, number: sympy.Number) -> str:
        if number.is_Float:
            value = float(number)
            if math.isfinite(value):
                local = self._constant_locals.get(value.hex())
                if local is None:
                    local = self._constant_locals[value.hex()] = f"k_{len(self.constants)}"
                    self.constants.append(value)
                return local
        return number_literal(number)

    def _call(self, function: str, *args: sympy.Basic, exponent: sympy.Basic | None = None
              ) -> str:
        """``function(*args)``, as a vector call where the math has one; ``exponent`` (the
        second argument of ``power``) is printed as written, since it decides the code."""
        def print_args() -> tuple[str, ...]:
            texts = tuple(self._print(arg) for arg in args)
            if exponent is None:
                return texts
            return (*texts, number_literal(exponent) if isinstance(exponent, sympy.Number)
                    else self._print(exponent))

        if function not in self.math.functions:
            return f"numpy.{function}({', '.join(print_args())})"
        texts, reads = self.capture(print_args)
        target = self.calls.get((function, texts))
        if target is None:
            target = f"v_{len(self.calls)}"
            self.calls[function, texts] = target
            self.statements.append(Statement(target, reads, function=function, args=texts))
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
            elif abs(power) <= MAX_MULTIPLIED_POWER:
                text = self._helper(f"_pow{abs(power)}", self._print(base))
            else:
                text = self._call("power", base, exponent=sympy.Float(abs(power)))
            return text if power > 0 else f"1.0/{text}"
        if exponent == sympy.S.Half:
            return f"numpy.sqrt({self._print(base)})"
        if exponent == -sympy.S.Half:
            return f"1.0/numpy.sqrt({self._print(base)})"
        # numpy.power, not **: numba's scalar ** follows Python, numpy.power gives NaN for a
        # negative base with a fractional exponent, as lambdify's array ** does.
        return self._call("power", base, exponent=exponent)

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
        if operator not in OPERATORS:
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


def number_literal(number: sympy.Number) -> str:
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
