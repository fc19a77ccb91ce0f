"""A reward's features and terms, checked, printed as the Python source of numba kernels:
``rewards``, ``term_columns`` and ``feature_matrix`` over tables of transitions (in chunks of
rows where vector calls run on whole vectors; each also as a serial copy) in one module, and
``single`` for one transition in another.

Nothing a user wrote is pasted into the generated code: it is printed from sympy trees only,
symbols become locals with mangled names checked to be identifiers, and strings in it (error
messages) are built from integers. The functions are plain Python; ``symreward.kernels.runtime``
compiles each with numba on first use. The batch kernels take the reward's numbers as their last
argument (``constants``), so their source, and the compiled code, depend on the reward's
structure only.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

import sympy
from sympy.core.numbers import Exp1, Pi
from sympy.core.relational import Relational
from sympy.logic.boolalg import ITE, And, BooleanFalse, BooleanTrue, Not, Or

from symreward.errors import FeatureError, SymrewardError
from symreward.formula import Comparison, Where, is_identifier
from symreward.kernels import vecmath
from symreward.kernels.printer import KernelPrinter, Statement

# Part of every key: bump it whenever the generated code, or the options it is compiled with,
# change for the same input, so stale modules (and numba caches beside them, which do not key
# on the options) are never picked up. 6: batch kernels release the GIL; 7: the scalar helpers
# are intrinsics (``kernels.scalars``) instead of functions of the module, and each batch kernel
# has a SERIAL_CHUNKED copy.
CODEGEN_VERSION = 7
BATCH_KERNELS = ("rewards", "term_columns", "feature_matrix")
# Each batch kernel also as two copies compiled without parallel=True (numba keys its disk cache
# by function, not by compiler flags, hence functions of their own): under SERIAL, a row at a
# time (vector calls with the row's value in every lane: half the code to compile, for the first
# reward after an edit); under SERIAL_CHUNKED, the parallel kernel's chunks of rows on one thread
# (whole vectors: 1.5-4x the speed where the reward calls exp, atan2, ..., for callers that are
# one of many parallel tasks themselves).
SERIAL = "_serial"
SERIAL_CHUNKED = "_serial_chunked"
KERNELS = (*BATCH_KERNELS, *(name + suffix for suffix in (SERIAL, SERIAL_CHUNKED)
                             for name in BATCH_KERNELS))

_INPUT_ARRAYS = ("obs", "act", "next_obs")
_RAW_INPUT = re.compile(r"(obs|act|next_obs)\[([0-9]+)\]")
_INFO_PREFIX = "info."

# atan is not in the formula language, but sympy rewrites atan2(y, x) with x > 0 into it.
_SUPPORTED_FUNCTIONS = (sympy.Abs, sympy.exp, sympy.log, sympy.sin, sympy.cos, sympy.tanh,
                        sympy.atan2, sympy.atan, sympy.Min, sympy.Max)
_SUPPORTED = (sympy.Symbol, sympy.Number, Pi, Exp1, sympy.Add, sympy.Mul, sympy.Pow,
              sympy.Piecewise, sympy.functions.elementary.piecewise.ExprCondPair, Relational,
              And, Or, Not, ITE, BooleanTrue, BooleanFalse, Comparison, Where,
              *_SUPPORTED_FUNCTIONS)

# Rows per chunk of the batch kernels with vector calls: a multiple of every vector width, and
# small enough that the chunk's buffer of call arguments stays in the L1 cache.
_CHUNK = 256


@dataclasses.dataclass(frozen=True)
class Generated:
    """The source of a reward's batch kernels (its numbers are their ``constants`` argument, the
    values of their ``k_<i>`` locals in order) and of its ``single`` kernel (numbers written
    in)."""

    source: str
    single_source: str
    constants: tuple[float, ...]


class Plan:
    """Checked features and terms, and the source of the module that evaluates them."""

    def __init__(self, features: Sequence[tuple[str, sympy.Expr]],
                 terms: Sequence[tuple[str, sympy.Expr]], info_names: Sequence[str]):
        self.math = vecmath.VECTOR_MATH
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

    def generate(self) -> Generated:
        """The module's source, with its numbers as the ``constants`` it is called with."""
        printer = KernelPrinter(self.locals, self.math)
        term_locals = [f"t_{k}" for k in range(len(self.terms))]
        fused = self._body(printer, [*((self.locals[n], self.definitions[n]) for n in self.needed),
                                     *zip(term_locals, self.terms, strict=True)])
        every = self._body(printer, [(self.locals[n], self.definitions[n])
                                     for n in self.feature_names])
        feature_locals = [self.locals[name] for name in self.feature_names]
        reward = " + ".join(term_locals) or "0.0"
        n_terms, n_features = len(term_locals), len(self.feature_names)
        constants = len(printer.constants)
        kernels = [
            self._batch_kernel("rewards", fused, "numpy.empty(n)", [f"out[i] = {reward}"],
                               term_locals, constants),
            self._batch_kernel("term_columns", fused, f"numpy.empty((n, {n_terms}))",
                               [f"out[i, {k}] = {t}" for k, t in enumerate(term_locals)],
                               term_locals, constants),
            self._batch_kernel("feature_matrix", every, f"numpy.empty((n, {n_features}))",
                               [f"out[i, {k}] = {f}" for k, f in enumerate(feature_locals)],
                               feature_locals, constants),
        ]
        header = (f'"""Generated by symreward.kernels (codegen {CODEGEN_VERSION}); do not edit: '
                  'it is rewritten when it differs. The kernels are compiled on first use by '
                  'symreward.kernels.runtime."""\n\nimport numba\nimport numpy\n')
        if printer.helpers:
            header += "\nfrom symreward.kernels.scalars import " + ", ".join(
                f"{name.removeprefix('_')} as {name}" for name in sorted(printer.helpers)) + "\n"
        if printer.vector_functions:
            header += "\nfrom symreward.kernels.vecmath import vector_function\n\n" + "".join(
                f'_{f}_block, _{f}_lane = vector_function("{self.math.name}", "{f}")\n'
                for f in sorted(printer.vector_functions))
        single = self._single_kernel(fused, reward, printer.constants)
        return Generated("\n\n".join([header, *kernels]), "\n\n".join([header, single]),
                         tuple(printer.constants))

    def _body(self, printer: KernelPrinter, roots: list[tuple[str, sympy.Expr]]
              ) -> tuple[list[Statement], list[tuple[str, int]]]:
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
                    printer.statements.append(Statement(temps[expr], reads, text))

        for name, expr in roots:
            define_temps(expr)
            text, reads = printer.capture(lambda expr=expr: printer.expression(expr))
            printer.statements.append(Statement(name, reads, text))
        read = set().union(*(_names(expr) for _, expr in roots))
        inputs = sorted(self.inputs[s] for s in read if s in self.inputs)
        return printer.statements, inputs

    def _checks(self, inputs: list[tuple[str, int]], constants: int | None, batch: bool
                ) -> list[str]:
        """Shape checks before any read: the kernels run without bounds checking."""
        axis = 1 if batch else 0
        lines = [] if constants is None else [
            f"if constants.shape[0] != {constants}:",
            f'    raise ValueError("constants must hold {constants} values")']
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

    def _batch_kernel(self, name: str, body: tuple[list[Statement], list[tuple[str, int]]],
                      allocate: str, stores: list[str], stored: list[str], constants: int
                      ) -> str:
        """A kernel writing ``stores`` (which read the locals ``stored``) for each row, and its
        serial copies.

        Where the body has vector calls, the kernel runs them on chunks of rows, and so does its
        ``SERIAL_CHUNKED`` copy, on one thread; its ``SERIAL`` copy calls them one row at a time,
        with the row's value in every lane as ``single`` does. The same bits from all three."""
        statements, inputs = body
        loads = [f"{a}_{c} = {a}[i, {c}]" for a, c in inputs]
        row = [*loads, *(statement.line() for statement in statements), *stores]
        by_rows = ["for i in numba.prange(n):", *(f"    {line}" for line in row or ["pass"])]
        parallel = serial_chunked = by_rows
        if any(statement.function for statement in statements):
            parallel, serial_chunked = (_chunked_loop(statements, inputs, stores, stored,
                                                      self.math.width, loop)
                                        for loop in ("numba.prange", "range"))
        head = [*(f"    {line}" for line in self._checks(inputs, constants, batch=True)),
                *(f"    k_{k} = constants[{k}]" for k in range(constants)),
                f"    out = {allocate}"]
        return "\n\n".join(
            "\n".join([f"def {kernel}(obs, act, next_obs, info, constants):", *head,
                       *(f"    {line}" for line in loop), "    return out"]) + "\n"
            for kernel, loop in ((name, parallel), (name + SERIAL, by_rows),
                                 (name + SERIAL_CHUNKED, serial_chunked)))

    def _single_kernel(self, body: tuple[list[Statement], list[tuple[str, int]]],
                       reward: str, constants: list[float]) -> str:
        """The kernel of one transition, with the numbers written in: a call costs one array
        argument less (about 0.1 µs), and it is compiled once per reward, on first use."""
        statements, inputs = body
        lines = [
            "def single(obs, act, next_obs, info):",
            *(f"    {line}" for line in self._checks(inputs, None, batch=False)),
            *(f"    k_{k} = {value!r}" for k, value in enumerate(constants)),
            *(f"    {a}_{c} = {a}[{c}]" for a, c in inputs),
            *(f"    {statement.line()}" for statement in statements),
            f"    return {reward}",
        ]
        return "\n".join(lines) + "\n"


def _chunked_loop(statements: list[Statement], inputs: list[tuple[str, int]], stores: list[str],
                  stored: list[str], width: int, loop: str) -> list[str]:
    """A loop (``loop``: ``numba.prange`` or ``range``) over chunks of rows for a body with
    vector calls.

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
    lines = [f"for chunk in {loop}((n + {_CHUNK - 1}) // {_CHUNK}):",
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


def _closure(reads: set[str], by_target: dict[str, Statement]) -> set[str]:
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
