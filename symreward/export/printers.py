"""sympy's code printers, made to compute what the kernels compute: numpy, pure Python, C99.

Each printer writes the operations ``symreward.kernels`` runs, in their order: sums and products
as sympy's code printers write them (the kernels print with sympy's numpy printer too), integer
powers up to 4 as multiplications, other powers with ``pow``, square roots with ``sqrt``,
``min``/``max`` as a left fold that propagates NaN, a comparison as 1.0 or 0.0 (NaN compares
false), ``where`` choosing its second argument where the condition is non-zero (NaN counts as
non-zero). Every number is written as the double the kernels use, in the shortest text that reads
back as that double. So the exported code computes the same reward, with the same bits from the
same inputs wherever the math library is the same: ``exp``, ``log``, ``sin``, ``cos``, ``tanh``,
``atan2`` and ``pow`` come from numpy's SIMD loops, the C library, or glibc's vector functions
in the kernels, which can differ in the last bit (and LLVM writes the kernels' ``pow(x, 0.5)``
as a square root); everything else is correctly rounded IEEE arithmetic everywhere.

Pure Python's ``math`` raises where IEEE arithmetic gives an infinity or NaN (``1.0 / 0.0``,
``math.log(0.0)``, ``math.exp(1000.0)``), so the Python printer calls helpers, written into the
exported file, for division, ``exp``, ``log``, ``sqrt``, ``sin``, ``cos`` and ``pow``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import sympy
from sympy.core.mul import _keep_coeff
from sympy.printing.c import C99CodePrinter
from sympy.printing.numpy import NumPyPrinter
from sympy.printing.precedence import PRECEDENCE, precedence
from sympy.printing.pycode import PythonCodePrinter

from symreward.errors import SymrewardError
from symreward.formula import Comparison, Where

#: Integer powers up to this are multiplications, as in the kernels; ``pow`` above.
MAX_MULTIPLIED_POWER = 4

# The nodes formula.parse builds (atan: sympy folds atan2(y, x) with a positive constant x).
_SUPPORTED = (sympy.Symbol, sympy.Number, sympy.core.numbers.Pi, sympy.core.numbers.Exp1,
              sympy.Add, sympy.Mul, sympy.Pow, sympy.Abs, sympy.exp, sympy.log, sympy.sin,
              sympy.cos, sympy.tanh, sympy.atan, sympy.atan2, sympy.Min, sympy.Max, Comparison,
              Where)


def check_supported(expr: sympy.Basic, what: str) -> None:
    """Raise ``SymrewardError`` naming ``what`` for a node that no printer here writes."""
    if not isinstance(expr, _SUPPORTED):
        raise SymrewardError(f"{what}: {type(expr).__name__} cannot be exported (in {expr})")
    for arg in expr.args:
        check_supported(arg, what)


def number_literal(number: sympy.Number) -> str:
    """The double the kernels use for ``number`` (a rational is one rounded division), as the
    shortest text that reads back as it, in Python and in C."""
    value = float(number) if number.is_Float else int(number.p) / int(number.q)
    return repr(value)


class _ExportPrinter:
    """What the code printers share; mixed in before one of sympy's code printers.

    ``names`` maps each symbol's name (a feature, ``obs[3]``, ``info.x``) to its text in the
    exported code. ``words`` is the language's text for each operation; ``helpers`` collects
    those of ``helper_sources`` the printed code calls, to be written into the exported file."""

    words: ClassVar[dict[str, str]]
    helper_sources: ClassVar[dict[str, str]]

    def __init__(self, names: dict[str, str]):
        super().__init__({"strict": True, "allow_unknown_functions": False})
        self.names = names
        self.helpers: set[str] = set()

    def word(self, operation: str) -> str:
        """The language's text for ``operation``, noting a helper function it needs."""
        if operation in self.helper_sources:
            self.helpers.add(operation)
        return self.words[operation]

    def _print(self, expr: Any, **kwargs: Any) -> str:
        if isinstance(expr, sympy.Number):  # before sympy's _print_Half, _print_Zero, ...
            return number_literal(expr)
        return super()._print(expr, **kwargs)

    def parenthesize(self, item: sympy.Basic, level: float, strict: bool = False) -> str:
        if isinstance(item, sympy.Number) and item >= 0:  # a literal needs no brackets
            return number_literal(item)
        return super().parenthesize(item, level, strict)

    def _print_Symbol(self, expr: sympy.Symbol) -> str:
        return self.names[expr.name]

    def _print_Pi(self, expr: sympy.Basic) -> str:
        return self.word("pi")

    def _print_Exp1(self, expr: sympy.Basic) -> str:
        return self.word("e")

    # -- arithmetic -------------------------------------------------------------------------

    def _print_Mul(self, expr: sympy.Mul) -> str:
        # sympy's CodePrinter._print_Mul (the kernels' printer uses it) with the division
        # written by ``divide``: the same numerator, denominator and order of operations.
        prec = precedence(expr)
        coefficient, rest = expr.as_coeff_Mul()
        sign = ""
        if coefficient < 0:
            expr, sign = _keep_coeff(-coefficient, rest), "-"
        numerator, denominator, bracketed = [], [], []
        for item in expr.as_ordered_factors():
            if item.is_Pow and item.exp.is_Rational and item.exp.is_negative:
                if item.exp != -1:
                    denominator.append(sympy.Pow(item.base, -item.exp, evaluate=False))
                    continue
                if isinstance(item.base, sympy.Mul):
                    bracketed.append(item.base)
                denominator.append(item.base)
            else:
                numerator.append(item)
        numerator = numerator or [sympy.S.One]
        if len(numerator) == 1 and sign == "-":
            above = [self.parenthesize(numerator[0],
                                       0.5 * (PRECEDENCE["Pow"] + PRECEDENCE["Mul"]))]
        else:
            above = [self.parenthesize(item, prec) for item in numerator]
        below = [f"({self._print(item)})" if item in bracketed else self.parenthesize(item, prec)
                 for item in denominator]
        text = "*".join(above)
        if not below:
            return sign + text
        return sign + self.divide(text, below[0] if len(below) == 1 else f"({'*'.join(below)})",
                                  denominator)

    def divide(self, numerator: str, denominator: str, factors: list[sympy.Expr]) -> str:
        """``numerator / denominator``, the latter the product of ``factors``."""
        return f"{numerator}/{denominator}"

    def _print_Pow(self, expr: sympy.Pow, rational: bool = False) -> str:
        base, exponent = expr.args
        if exponent.is_Integer:
            power = abs(int(exponent))
            if power == 0:
                return "1.0"
            if power == 1:
                text = f"({self._print(base)})"
            elif power <= MAX_MULTIPLIED_POWER:
                text = self._multiplied(base, power)
            else:
                text = f"{self.word('pow')}({self._print(base)}, {float(power)!r})"
            return text if exponent > 0 else self.divide("1.0", text, [base])
        if exponent == sympy.S.Half:
            return f"{self.word('sqrt')}({self._print(base)})"
        if exponent == -sympy.S.Half:
            return self.divide("1.0", f"{self.word('sqrt')}({self._print(base)})", [base])
        return f"{self.word('pow')}({self._print(base)}, {self._print(exponent)})"

    def _multiplied(self, base: sympy.Expr, power: int) -> str:
        """``base ** power`` (2 <= power <= 4) as the kernels compute it, the fourth power as
        the square of a square: written out for a name or number, else through a helper."""
        if not base.is_Atom:
            return f"{self.word(f'pow{power}')}({self._print(base)})"
        x = self._print(base)
        return f"(({x}*{x})*({x}*{x}))" if power == 4 else "(" + "*".join([x] * power) + ")"

    # -- functions --------------------------------------------------------------------------

    def _print_Min(self, expr: sympy.Min) -> str:
        return self._fold("min2", expr.args)

    def _print_Max(self, expr: sympy.Max) -> str:
        return self._fold("max2", expr.args)

    def _fold(self, operation: str, args: tuple[sympy.Basic, ...]) -> str:
        # A left fold in argument order, as the kernels' reduce; each step propagates NaN.
        text = self._print(args[0])
        for arg in args[1:]:
            text = f"{self.word(operation)}({text}, {self._print(arg)})"
        return text

    def _call(self, expr: sympy.Function) -> str:
        function = self.word(type(expr).__name__)
        return f"{function}({', '.join(self._print(arg) for arg in expr.args)})"

    _print_Abs = _print_exp = _print_log = _print_sin = _print_cos = _print_tanh = _call
    _print_atan = _print_atan2 = _call

    def _print_comparison(self, expr: Comparison) -> str:
        lhs, rhs = expr.args
        return self.choose(self.compare(lhs, expr.operator, rhs), "1.0", "0.0")

    # sympy's printers look up _print_<Class> by a Function's own class, not its bases.
    _print_Less = _print_LessEqual = _print_Greater = _print_GreaterEqual = _print_comparison

    def _print_Where(self, expr: Where) -> str:
        condition, if_true, if_false = expr.args
        test = (self.compare(*condition.args[:1], condition.operator, *condition.args[1:])
                if isinstance(condition, Comparison)
                else self.compare(condition, "!=", sympy.S.Zero))
        return self.choose(test, self._print(if_true), self._print(if_false))

    def compare(self, lhs: sympy.Expr, operator: str, rhs: sympy.Expr) -> str:
        """The test ``lhs operator rhs`` (false where either side is NaN)."""
        return f"({self._print(lhs)} {operator} {self._print(rhs)})"

    def choose(self, test: str, if_true: str, if_false: str) -> str:
        """``if_true`` where ``test`` holds, else ``if_false``."""
        raise NotImplementedError


# Each language's text for the operations; names starting with "_" or "sr_" are helpers.
_NUMPY_WORDS = {
    "pi": "numpy.pi", "e": "numpy.e", "min2": "numpy.minimum", "max2": "numpy.maximum",
    "sqrt": "numpy.sqrt", "pow": "numpy.power", "pow2": "_pow2", "pow3": "_pow3", "pow4": "_pow4",
    "Abs": "numpy.abs", "exp": "numpy.exp", "log": "numpy.log", "sin": "numpy.sin",
    "cos": "numpy.cos", "tanh": "numpy.tanh", "atan": "numpy.arctan", "atan2": "numpy.arctan2",
}
_PYTHON_WORDS = {
    "pi": "math.pi", "e": "math.e", "min2": "_min2", "max2": "_max2", "sqrt": "_sqrt",
    "pow": "_pow", "div": "_div", "pow2": "_pow2", "pow3": "_pow3", "pow4": "_pow4",
    "Abs": "abs", "exp": "_exp", "log": "_log", "sin": "_sin", "cos": "_cos",
    "tanh": "math.tanh", "atan": "math.atan", "atan2": "math.atan2",
}
_C_WORDS = {
    "pi": repr(float(sympy.pi)), "e": repr(float(sympy.E)), "min2": "sr_min2",
    "max2": "sr_max2", "sqrt": "sqrt", "pow": "pow", "pow2": "sr_pow2", "pow3": "sr_pow3",
    "pow4": "sr_pow4", "Abs": "fabs", "exp": "exp", "log": "log", "sin": "sin", "cos": "cos",
    "tanh": "tanh", "atan": "atan", "atan2": "atan2",
}


def _sources(text: str) -> dict[str, str]:
    """Helper functions separated by blank lines, keyed by operation: ``def _pow2`` (Python)
    or ``static double sr_pow2`` (C) is ``pow2``."""
    sources = {}
    for source in text.strip("\n").split("\n\n"):
        name = source.split("(", 1)[0].split()[-1]
        sources[name.removeprefix("_").removeprefix("sr_")] = source + "\n"
    return sources


_POWERS = """
def _pow2(x):
    return x * x

def _pow3(x):
    return x * x * x

def _pow4(x):
    return (x * x) * (x * x)
"""

# Where math raises, IEEE 754 arithmetic (numpy, C, the kernels) gives an infinity or NaN.
_PYTHON_HELPERS = _POWERS + """
def _min2(a, b):
    return a if a < b or a != a else b

def _max2(a, b):
    return a if a > b or a != a else b

def _div(a, b):
    if b != 0.0:
        return a / b
    if a != a or a == 0.0:
        return math.nan
    return math.copysign(math.inf, a) * math.copysign(1.0, b)

def _sqrt(x):
    return math.sqrt(x) if x >= 0.0 else math.nan

def _exp(x):
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf

def _log(x):
    if x > 0.0:
        return math.log(x)
    return -math.inf if x == 0.0 else math.nan

def _sin(x):
    return math.sin(x) if math.isfinite(x) else math.nan

def _cos(x):
    return math.cos(x) if math.isfinite(x) else math.nan

def _pow(x, y):
    try:
        return math.pow(x, y)
    except OverflowError:  # beyond the double range
        return -math.inf if x < 0.0 and y % 2.0 == 1.0 else math.inf
    except ValueError:  # zero to a negative power, or a negative number to a fraction
        if x != 0.0:
            return math.nan
        return math.copysign(math.inf, x) if y % 2.0 == 1.0 else math.inf
"""

_C_HELPERS = """
static double sr_pow2(double x) { return x * x; }

static double sr_pow3(double x) { return x * x * x; }

static double sr_pow4(double x) { double y = x * x; return y * y; }

static double sr_min2(double a, double b) { return (a < b || a != a) ? a : b; }

static double sr_max2(double a, double b) { return (a > b || a != a) ? a : b; }
"""


class NumpyPrinter(_ExportPrinter, NumPyPrinter):
    """numpy over whole columns; ``where`` and comparisons as ``numpy.where``."""

    words: ClassVar[dict[str, str]] = _NUMPY_WORDS
    helper_sources: ClassVar[dict[str, str]] = _sources(_POWERS)

    def choose(self, test: str, if_true: str, if_false: str) -> str:
        return f"numpy.where({test}, {if_true}, {if_false})"


class PythonPrinter(_ExportPrinter, PythonCodePrinter):
    """Pure Python over one transition's floats, with IEEE helpers where ``math`` raises."""

    words: ClassVar[dict[str, str]] = _PYTHON_WORDS
    helper_sources: ClassVar[dict[str, str]] = _sources(_PYTHON_HELPERS)

    def divide(self, numerator: str, denominator: str, factors: list[sympy.Expr]) -> str:
        if all(factor.is_number and factor.is_zero is False for factor in factors):
            return f"{numerator}/{denominator}"
        return f"{self.word('div')}({numerator}, {denominator})"

    def choose(self, test: str, if_true: str, if_false: str) -> str:
        return f"({if_true} if {test} else {if_false})"


class CPrinter(_ExportPrinter, C99CodePrinter):
    """C99 with ``<math.h>`` only; ``where`` and comparisons as ``?:``."""

    words: ClassVar[dict[str, str]] = _C_WORDS
    helper_sources: ClassVar[dict[str, str]] = _sources(_C_HELPERS)

    def choose(self, test: str, if_true: str, if_false: str) -> str:
        return f"({test} ? {if_true} : {if_false})"
