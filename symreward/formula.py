"""The formula language: a whitelist parser (text → sympy), a printer (sympy → text), complexity.

Formulas come from files people and programs hand us (features, artifact terms, invariants), so
they are never evaluated: Python's ``ast`` parses the text, and a walk accepts only the node types
of the language, building sympy objects node by node. Every number is bounded as it is built, so
no input can make sympy hang (``10**10**10**10`` is refused at the first power above 16).

Language: numbers, names, ``+ - * / **``, unary minus, comparisons ``< <= > >=`` (1.0 when true,
else 0.0; chained comparisons multiply), calls to ``abs sqrt exp log sin cos tanh atan2 min max
clip where sigmoid``, and — where the caller allows raw inputs — ``obs[i]``, ``act[i]``,
``next_obs[i]`` with an integer literal ``i`` and ``info.<name>``. The constant ``pi`` is a name.

Raw inputs become sympy symbols named exactly as written (``Symbol("obs[3]")``,
``Symbol("info.x_velocity")``), so the printer writes them back unchanged. All symbols are real.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Iterable

import numpy as np
import sympy
from sympy.core.logic import fuzzy_and
from sympy.printing.str import StrPrinter

from symreward.errors import FormulaError

MAX_LENGTH = 10_000
MAX_DEPTH = 100
MAX_EXPONENT = 16
MAX_LITERAL = 1e300

FUNCTIONS = ("abs", "sqrt", "exp", "log", "sin", "cos", "tanh", "atan2", "min", "max", "clip",
             "where", "sigmoid")
INPUT_ARRAYS = ("obs", "act", "next_obs")
CONSTANTS = {"pi": sympy.pi}
RESERVED = frozenset(FUNCTIONS) | frozenset(INPUT_ARRAYS) | {"info"} | frozenset(CONSTANTS)

_ARITY = {"abs": 1, "sqrt": 1, "exp": 1, "log": 1, "sin": 1, "cos": 1, "tanh": 1, "sigmoid": 1,
          "atan2": 2, "clip": 3, "where": 3}
_UNARY = {"abs": sympy.Abs, "sqrt": sympy.sqrt, "exp": sympy.exp, "log": sympy.log,
          "sin": sympy.sin, "cos": sympy.cos, "tanh": sympy.tanh}
_OPERATOR_NAMES = {ast.BitXor: "^", ast.Mod: "%", ast.FloorDiv: "//", ast.MatMult: "@",
                   ast.BitAnd: "&", ast.BitOr: "|", ast.LShift: "<<", ast.RShift: ">>",
                   ast.Eq: "==", ast.NotEq: "!=", ast.Is: "is", ast.IsNot: "is not",
                   ast.In: "in", ast.NotIn: "not in", ast.Not: "not", ast.Invert: "~",
                   ast.UAdd: "+"}


def symbol(name: str) -> sympy.Symbol:
    """The sympy symbol for a feature or raw-input name; every symbol in symreward is real."""
    return sympy.Symbol(name, real=True)


def input_symbol(array: str, index: int) -> sympy.Symbol:
    """The symbol for ``obs[i]``, ``act[i]`` or ``next_obs[i]``."""
    return symbol(f"{array}[{index}]")


def info_symbol(name: str) -> sympy.Symbol:
    """The symbol for ``info.<name>``."""
    return symbol(f"info.{name}")


def is_identifier(name: str) -> bool:
    """Whether ``name`` can name a feature or term: a Python identifier that is not reserved."""
    return name.isidentifier() and name not in RESERVED and not name.startswith("__")


def parse(text: str, names: Iterable[str] = (), *, allow_inputs: bool = False) -> sympy.Expr:
    """Parse formula text into a sympy expression without executing anything.

    ``names`` are the names the formula may use (features); ``allow_inputs`` also admits
    ``obs[i]``, ``act[i]``, ``next_obs[i]`` and ``info.<name>``. Raises ``FormulaError`` naming the
    offending token and its column for anything outside the language.
    """
    if not isinstance(text, str):
        raise FormulaError(f"a formula must be a string, not {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise FormulaError(f"formula is {len(text)} characters long; the limit is {MAX_LENGTH}",
                           text=text)
    if not text.strip():
        raise FormulaError("formula is empty", text=text)
    stripped = text.strip()
    _check_parenthesis_depth(stripped)
    if "\n" in stripped or "\r" in stripped:
        raise FormulaError("a formula must be on one line", text=text)
    try:
        tree = ast.parse(stripped, mode="eval")
    except SyntaxError as exc:
        column = (exc.offset or 1) - 1
        token = stripped[column:column + 1] if column < len(stripped) else ""
        raise FormulaError(f"syntax error: {exc.msg}", text=text, token=token,
                           column=column) from None
    except (RecursionError, MemoryError, ValueError):
        raise FormulaError(f"formula is nested deeper than {MAX_DEPTH} levels", text=text) from None
    builder = _Builder(stripped, frozenset(names), allow_inputs)
    return _as_doubles(builder.build(tree.body, 0), stripped)


def _as_doubles(expr: sympy.Expr, text: str) -> sympy.Expr:
    """Round every float to the double the kernels will use, so printing is exact."""
    replacements = {}
    for number in expr.atoms(sympy.Float):
        value = float(number)
        if not math.isfinite(value) or abs(value) > MAX_LITERAL:
            raise FormulaError(f"a constant folds to {number}, larger than {MAX_LITERAL:g} in "
                               "magnitude", text=text)
        double = sympy.Float(value)
        if double._mpf_ != number._mpf_:
            replacements[number] = double
    # xreplace rebuilds (and so re-simplifies) only what it changes: leave exact trees alone.
    return expr.xreplace(replacements) if replacements else expr


def _check_parenthesis_depth(text: str) -> None:
    depth = 0
    for column, char in enumerate(text):
        depth += {"(": 1, "[": 1, ")": -1, "]": -1}.get(char, 0)
        if depth > MAX_DEPTH:
            raise FormulaError(f"formula is nested deeper than {MAX_DEPTH} levels", text=text,
                               token=char, column=column)


def _last_end(node: ast.Compare, comparator: ast.AST) -> ast.AST:
    """The operand just before ``comparator`` in a chained comparison."""
    operands = [node.left, *node.comparators]
    return operands[operands.index(comparator) - 1]


class _Builder:
    """Walks a Python AST, accepting only the node types of the formula language."""

    def __init__(self, text: str, names: frozenset[str], allow_inputs: bool):
        self.text = text
        self.names = names
        self.allow_inputs = allow_inputs

    def fail(self, node: ast.AST, message: str, token: str | None = None) -> FormulaError:
        column = getattr(node, "col_offset", None)
        if token is None:
            token = ast.get_source_segment(self.text, node) or ""
            token = token if len(token) <= 40 else token[:37] + "..."
        return FormulaError(message, text=self.text, token=token, column=column)

    def build(self, node: ast.AST, depth: int) -> sympy.Expr:
        if depth > MAX_DEPTH:
            raise self.fail(node, f"formula is nested deeper than {MAX_DEPTH} levels")
        expr = self._build(node, depth + 1)
        return self._checked(node, expr)

    def _checked(self, node: ast.AST, expr: sympy.Expr) -> sympy.Expr:
        if expr.is_Number:
            if expr.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo):
                raise self.fail(node, "this part evaluates to an undefined number "
                                      "(division by zero, log(0), ...)")
            if abs(expr) > MAX_LITERAL:
                raise self.fail(node, f"this number is larger than {MAX_LITERAL:g} in magnitude")
        elif expr.has(sympy.zoo, sympy.nan, sympy.oo, -sympy.oo):
            raise self.fail(node, "this part evaluates to an undefined number "
                                  "(division by zero, log(0), ...)")
        factors = expr.args if isinstance(expr, sympy.Mul) else (expr,)
        for factor in factors:
            if (isinstance(factor, sympy.Pow) and factor.exp.is_Number
                    and abs(factor.exp) > MAX_EXPONENT):
                raise self.fail(node, f"this part folds to a power of {factor.exp}, above the "
                                      f"limit of {MAX_EXPONENT}")
        if expr.has(sympy.I):
            raise self.fail(node, "this part evaluates to a complex number (e.g. sqrt or log "
                                  "of a negative constant)")
        return expr

    def _build(self, node: ast.AST, depth: int) -> sympy.Expr:
        if isinstance(node, ast.Constant):
            return self._constant(node)
        if isinstance(node, ast.Name):
            return self._name(node)
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.USub):
                return -self.build(node.operand, depth)
            raise self._operator_error(node, node.op)
        if isinstance(node, ast.BinOp):
            return self._binop(node, depth)
        if isinstance(node, ast.Compare):
            return self._compare(node, depth)
        if isinstance(node, ast.Call):
            return self._call(node, depth)
        if isinstance(node, ast.Subscript):
            return self._subscript(node)
        if isinstance(node, ast.Attribute):
            return self._attribute(node)
        if isinstance(node, ast.BoolOp):
            word = "and" if isinstance(node.op, ast.And) else "or"
            raise self.fail(node, f"'{word}' is not in the formula language; multiply "
                                  "comparisons for 'and'", token=word)
        if isinstance(node, ast.Lambda):
            raise self.fail(node, "lambda is not in the formula language", token="lambda")
        kind = type(node).__name__
        raise self.fail(node, f"{kind} is not in the formula language")

    def _constant(self, node: ast.Constant) -> sympy.Expr:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(node, "only numbers are allowed as literals")
        if isinstance(value, float) and not math.isfinite(value):
            raise self.fail(node, f"this number is larger than {MAX_LITERAL:g} in magnitude")
        if abs(value) > MAX_LITERAL:
            raise self.fail(node, f"this number is larger than {MAX_LITERAL:g} in magnitude")
        return sympy.Integer(value) if isinstance(value, int) else sympy.Float(value)

    def _name(self, node: ast.Name) -> sympy.Expr:
        name = node.id
        if name in CONSTANTS:
            return CONSTANTS[name]
        if name in self.names:
            return symbol(name)
        if name in FUNCTIONS:
            raise self.fail(node, f"'{name}' is a function; call it as {name}(...)")
        if name in INPUT_ARRAYS or name == "info":
            if not self.allow_inputs:
                raise self.fail(node, f"raw input '{name}' is not allowed here; use a feature name")
            raise self.fail(node, f"'{name}' must be indexed, as {name}[0]"
                            if name != "info" else "'info' needs a field, as info.x_velocity")
        known = ", ".join(sorted(self.names)) or "none"
        raise self.fail(node, f"unknown name '{name}' (known: {known})")

    def _operator_error(self, node: ast.AST, op: ast.AST, after: ast.AST | None = None
                        ) -> FormulaError:
        symbol_text = _OPERATOR_NAMES.get(type(op), type(op).__name__)
        column = node.col_offset
        if after is not None:
            found = self.text.find(symbol_text, after.end_col_offset)
            column = found if found >= 0 else column
        message = (f"'{symbol_text}' is not a power here: use ** for powers"
                   if isinstance(op, ast.BitXor)
                   else f"operator '{symbol_text}' is not in the formula language")
        return FormulaError(message, text=self.text, token=symbol_text, column=column)

    def _binop(self, node: ast.BinOp, depth: int) -> sympy.Expr:
        op = node.op
        if not isinstance(op, ast.Add | ast.Sub | ast.Mult | ast.Div | ast.Pow):
            raise self._operator_error(node, op, after=node.left)
        left = self.build(node.left, depth)
        right = self.build(node.right, depth)
        if isinstance(op, ast.Add):
            return left + right
        if isinstance(op, ast.Sub):
            return left - right
        if isinstance(op, ast.Mult):
            return left * right
        if isinstance(op, ast.Div):
            if right.is_zero:
                raise self.fail(node, "division by zero", token="/")
            return left / right
        if right.is_Number and abs(right) > MAX_EXPONENT:
            raise self.fail(node.right, f"exponent {right} is above the limit of {MAX_EXPONENT}")
        if left.is_zero and right.is_Number and right.is_negative:
            raise self.fail(node, "zero to a negative power is undefined", token="**")
        return sympy.Pow(left, right)

    def _compare(self, node: ast.Compare, depth: int) -> sympy.Expr:
        result = sympy.Integer(1)
        left = self.build(node.left, depth)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            relation = _COMPARE.get(type(op))
            if relation is None:
                raise self._operator_error(node, op, after=_last_end(node, comparator))
            right = self.build(comparator, depth)
            result = result * relation(left, right)
            left = right
        return result

    def _args(self, node: ast.Call, name: str, depth: int) -> list[sympy.Expr]:
        if node.keywords:
            raise self.fail(node.keywords[0].value, f"{name}() takes no keyword arguments",
                            token=node.keywords[0].arg or "**")
        if any(isinstance(arg, ast.Starred) for arg in node.args):
            raise self.fail(node, f"{name}() takes no starred arguments", token="*")
        expected = _ARITY.get(name)
        count = len(node.args)
        if expected is not None and count != expected:
            raise self.fail(node, f"{name}() takes {expected} argument"
                                  f"{'s' if expected > 1 else ''}, got {count}", token=name)
        if expected is None and count < 2:
            raise self.fail(node, f"{name}() takes at least 2 arguments, got {count}", token=name)
        return [self.build(arg, depth) for arg in node.args]

    def _call(self, node: ast.Call, depth: int) -> sympy.Expr:
        if not isinstance(node.func, ast.Name):
            raise self.fail(node.func, "only the formula language's functions can be called")
        name = node.func.id
        if name not in FUNCTIONS:
            allowed = " ".join(FUNCTIONS)
            raise self.fail(node.func, f"unknown function '{name}' (allowed: {allowed})",
                            token=name)
        args = self._args(node, name, depth)
        if name in _UNARY:
            return _UNARY[name](args[0])
        if name == "sigmoid":
            return 1 / (1 + sympy.exp(-args[0]))
        if name == "atan2":
            return sympy.atan2(args[0], args[1])
        if name == "min":
            return _min_max(sympy.Min, args)
        if name == "max":
            return _min_max(sympy.Max, args)
        if name == "clip":
            return _min_max(sympy.Min, [_min_max(sympy.Max, args[:2]), args[2]])
        return Where(*args)

    def _subscript(self, node: ast.Subscript) -> sympy.Expr:
        target = node.value
        if not isinstance(target, ast.Name) or target.id not in INPUT_ARRAYS:
            raise self.fail(node, "indexing is only allowed on obs, act and next_obs")
        if not self.allow_inputs:
            raise self.fail(node, f"raw input '{target.id}[...]' is not allowed here; "
                                  "use a feature name")
        index = node.slice
        if not (isinstance(index, ast.Constant) and type(index.value) is int and index.value >= 0):
            raise self.fail(index, f"{target.id}[...] needs a non-negative integer literal index")
        return input_symbol(target.id, index.value)

    def _attribute(self, node: ast.Attribute) -> sympy.Expr:
        base = node.value
        if not (isinstance(base, ast.Name) and base.id == "info"):
            raise self.fail(node, "attribute access is only allowed as info.<name>",
                            token=f".{node.attr}")
        if not self.allow_inputs:
            raise self.fail(node, "raw input 'info.<name>' is not allowed here; use a feature name")
        if node.attr.startswith("_"):
            raise self.fail(node, "info field names may not start with '_'", token=node.attr)
        return info_symbol(node.attr)


def _min_max(kind: type, args: list[sympy.Expr]) -> sympy.Expr:
    """Min/Max as written: sympy's simplification of them is not idempotent, so letting it run
    would make a printed formula parse to a different tree. Numbers still fold."""
    return kind(*args, evaluate=all(a.is_comparable for a in args))


class Comparison(sympy.Function):
    """1 where the comparison holds, else 0 (NaN compares false, as in numpy).

    A sympy ``Function`` rather than ``Piecewise``: sympy folds a Piecewise nested in a
    condition into ``ITE`` logic that has no text form, which would break ``parse(to_text(e))``.
    """

    nargs = 2
    operator = ""

    @classmethod
    def eval(cls, lhs: sympy.Expr, rhs: sympy.Expr) -> sympy.Expr | None:  # safe: sympy hook
        if lhs.is_comparable and rhs.is_comparable:
            return sympy.Integer(1 if cls.holds(lhs, rhs) else 0)
        return None

    @staticmethod
    def holds(lhs: sympy.Expr, rhs: sympy.Expr) -> bool:
        raise NotImplementedError

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        return sympy.Integer(0)  # piecewise constant: zero derivative almost everywhere

    def _eval_is_real(self) -> bool:
        return True

    def _eval_is_nonnegative(self) -> bool:
        return True


class Less(Comparison):
    operator = "<"

    @staticmethod
    def holds(lhs: sympy.Expr, rhs: sympy.Expr) -> bool:
        return bool(lhs < rhs)


class LessEqual(Comparison):
    operator = "<="

    @staticmethod
    def holds(lhs: sympy.Expr, rhs: sympy.Expr) -> bool:
        return bool(lhs <= rhs)


class Greater(Comparison):
    operator = ">"

    @staticmethod
    def holds(lhs: sympy.Expr, rhs: sympy.Expr) -> bool:
        return bool(lhs > rhs)


class GreaterEqual(Comparison):
    operator = ">="

    @staticmethod
    def holds(lhs: sympy.Expr, rhs: sympy.Expr) -> bool:
        return bool(lhs >= rhs)


class Where(sympy.Function):
    """``if_true`` where ``condition`` is non-zero (NaN counts as non-zero, as in numpy),
    else ``if_false``."""

    nargs = 3

    @classmethod
    def eval(  # safe: sympy's hook for automatic simplification, not Python's eval
        cls, condition: sympy.Expr, if_true: sympy.Expr, if_false: sympy.Expr
    ) -> sympy.Expr | None:
        if condition.is_comparable:
            return if_false if condition.is_zero else if_true
        if if_true == if_false:
            return if_true
        return None

    def fdiff(self, argindex: int = 1) -> sympy.Expr:
        condition = self.args[0]
        if argindex == 2:
            return Where(condition, 1, 0)
        if argindex == 3:
            return Where(condition, 0, 1)
        return sympy.Integer(0)

    def _eval_is_real(self) -> bool | None:
        return fuzzy_and(arg.is_real for arg in self.args[1:])


_COMPARE = {ast.Lt: Less, ast.LtE: LessEqual, ast.Gt: Greater, ast.GtE: GreaterEqual}

# How numpy evaluates the language's own functions, for ``sympy.lambdify(..., modules=[this,
# "numpy"])``; the numba kernels implement the same semantics.
NUMPY_FUNCTIONS = {
    "Less": lambda a, b: np.less(a, b) * 1.0,
    "LessEqual": lambda a, b: np.less_equal(a, b) * 1.0,
    "Greater": lambda a, b: np.greater(a, b) * 1.0,
    "GreaterEqual": lambda a, b: np.greater_equal(a, b) * 1.0,
    "Where": lambda c, a, b: np.where(np.not_equal(c, 0), a, b),
}


class _FormulaPrinter(StrPrinter):
    """Prints sympy in the formula language so that ``parse(to_text(e))`` gives back ``e``."""

    def _print_Float(self, expr: sympy.Float) -> str:
        return repr(float(expr))

    def _print_Abs(self, expr: sympy.Abs) -> str:
        return f"abs({self._print(expr.args[0])})"

    def _print_Min(self, expr: sympy.Min) -> str:
        return f"min({', '.join(self._print(a) for a in expr.args)})"

    def _print_Max(self, expr: sympy.Max) -> str:
        return f"max({', '.join(self._print(a) for a in expr.args)})"

    def _print_atan2(self, expr: sympy.atan2) -> str:
        return f"atan2({self._print(expr.args[0])}, {self._print(expr.args[1])})"

    def _print_atan(self, expr: sympy.atan) -> str:
        # sympy folds atan2(y, x) with a positive constant x into atan(y/x).
        return f"atan2({self._print(expr.args[0])}, 1)"

    def _print_Exp1(self, expr: sympy.Basic) -> str:
        return "exp(1)"

    def _print_Pi(self, expr: sympy.Basic) -> str:
        return "pi"

    def _print_bare_comparison(self, expr: Comparison) -> str:
        lhs, rhs = (self._print(a) for a in expr.args)
        return f"{lhs} {expr.operator} {rhs}"

    def _print_Where(self, expr: Where) -> str:
        condition, if_true, if_false = expr.args
        test = (self._print_bare_comparison(condition) if isinstance(condition, Comparison)
                else self._print(condition))
        return f"where({test}, {self._print(if_true)}, {self._print(if_false)})"

    def _print_Symbol(self, expr: sympy.Symbol) -> str:
        return expr.name

    def _print_Function(self, expr: sympy.Function) -> str:
        # sympy's printer skips _print_<Base> methods of Function subclasses, so dispatch here.
        if isinstance(expr, Comparison):
            return f"({self._print_bare_comparison(expr)})"
        name = expr.func.__name__
        if name not in FUNCTIONS:
            raise ValueError(f"function {name} has no text form in the formula language")
        return f"{name}({', '.join(self._print(a) for a in expr.args)})"


_PRINTER = _FormulaPrinter({"order": "none"})


def to_text(expr: sympy.Basic) -> str:
    """Print a sympy expression in the formula language (readable, and parses back to itself)."""
    return _PRINTER.doprint(expr)


# Per-node weights of the complexity measure. A leaf (name or number) costs 1; each arithmetic
# operation costs 1 (an n-ary sum or product is n-1 operations, negation is free, a division is
# one operation like a product); a comparison, min/max, abs or where costs 1; sqrt and the smooth
# non-polynomial functions cost 2, because a person reads them as a bigger step than arithmetic.
OPERATOR_WEIGHTS = {
    "leaf": 1, "arithmetic": 1, "compare": 1, "minmax": 1, "where": 1,
    "Abs": 1, "sqrt": 2, "exp": 2, "log": 2, "sin": 2, "cos": 2, "tanh": 2, "atan2": 2,
}


def complexity(expr: sympy.Basic) -> int:
    """Weighted node count of ``expr`` (see ``OPERATOR_WEIGHTS``); used to rank sparsity."""
    w = OPERATOR_WEIGHTS
    if expr.is_Atom:
        return w["leaf"]
    args = expr.args
    if isinstance(expr, sympy.Add | sympy.Min | sympy.Max):
        kind = "arithmetic" if isinstance(expr, sympy.Add) else "minmax"
        return w[kind] * (len(args) - 1) + sum(complexity(a) for a in args)
    if isinstance(expr, sympy.Mul):
        factors = [a for a in args if a is not sympy.S.NegativeOne]
        numerators = [a for a in factors if not _is_reciprocal(a)]
        cost = sum(complexity(a) if a in numerators else complexity(1 / a) for a in factors)
        return w["arithmetic"] * (len(factors) - 1) + cost + (0 if numerators else w["leaf"])
    if isinstance(expr, sympy.Pow):
        if expr.exp == sympy.Rational(1, 2):
            return w["sqrt"] + complexity(expr.base)
        if _is_reciprocal(expr):
            return w["arithmetic"] + w["leaf"] + complexity(1 / expr)
        return w["arithmetic"] + complexity(expr.base) + complexity(expr.exp)
    if isinstance(expr, Comparison):
        return w["compare"] + sum(complexity(a) for a in args)
    if isinstance(expr, Where):
        return w["where"] + sum(complexity(a) for a in args)
    return w.get(type(expr).__name__, 2) + sum(complexity(a) for a in args)


def _is_reciprocal(expr: sympy.Basic) -> bool:
    return isinstance(expr, sympy.Pow) and expr.exp.is_Number and expr.exp.is_negative
