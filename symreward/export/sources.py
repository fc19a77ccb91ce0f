"""The exported source files: numpy over batches, pure Python and C99 over one transition.

Each feature the reward reads is a local variable, computed once from the raw inputs by its own
formula (so the file holds the feature definitions, and nothing is looked up in symreward);
each term is an expression over those locals; the reward is the terms' sum, added left to right
as the kernels add them (an artifact has at least one term).
"""

from __future__ import annotations

from symreward.export.plan import INPUT_ARRAYS, ExportPlan
from symreward.export.printers import CPrinter, NumpyPrinter, PythonPrinter

_NUMPY_USAGE = """\
Standalone: needs numpy only. reward() and terms() take obs, act, next_obs as (N, dim) arrays
(N transitions) and info as a mapping from field name to an (N,) array, and return float64
arrays of N values. Division by zero, log(0), ... give inf or NaN, as in symreward."""

_NUMPY_API = '''
def _table(values, name, columns):
    table = numpy.asarray(values, dtype=numpy.float64)
    if table.ndim != 2 or table.shape[1] < columns:
        raise ValueError(f"{name} must be a 2-D array with at least {columns} columns, "
                         f"got shape {table.shape}")
    return table


def terms(obs, act, next_obs, info=None):
    """Each term's value on each transition: a dict from term name to an (N,) array."""
    table = _term_table(obs, act, next_obs, info)
    return {name: table[:, k] for k, name in enumerate(TERM_NAMES)}


def reward(obs, act, next_obs, info=None):
    """The reward of each transition, an (N,) array: the sum of the terms."""
    t = _term_table(obs, act, next_obs, info)
    with numpy.errstate(all="ignore"):
        return SUM
'''

_PYTHON_USAGE = """\
Standalone: pure Python (the math module). reward() and terms() take one transition: obs, act,
next_obs as sequences of numbers and info as a mapping from field name to number. Division by
zero, log(0), ... give inf or NaN (IEEE 754), as in symreward."""

_PYTHON_API = '''
def terms(obs, act, next_obs, info=None):
    """Each term's value for one transition: a dict from term name to float."""
    return dict(zip(TERM_NAMES, _term_values(obs, act, next_obs, info)))


def reward(obs, act, next_obs, info=None):
    """The reward of one transition, a float: the sum of the terms."""
    t = _term_values(obs, act, next_obs, info)
    return SUM
'''

_C_USAGE = """\
Standalone C99: includes <math.h> only; link with -lm. obs, act, next_obs and info are arrays
of doubles, info holding the info fields in the order above (it may be NULL when the reward
reads none). Division by zero, log(0), ... give inf or NaN, as in symreward: compile without
-ffast-math, and with -ffp-contract=off for the same bits as symreward's kernels (a fused
multiply-add rounds once where they round twice)."""

_C_API = """
/* The reward of one transition: the sum of the terms. */
double reward(PARAMETERS)
{
    double t[REWARD_N_TERMS];
    reward_terms(obs, act, next_obs, info, t);
    return SUM;
}
"""

_PARAMETERS = "const double *obs, const double *act, const double *next_obs, const double *info"


def _comment(prefix: str, lines: list[str]) -> str:
    return "".join(f"{prefix} {line}".rstrip() + "\n" for line in lines)


def _info_local(plan: ExportPlan, position: int) -> str:
    name = plan.info_names[position]
    return f"info_{name}" if name.isascii() else f"info_{position}"


def _names(plan: ExportPlan, inputs: dict[str, str], info: dict[int, str]) -> dict[str, str]:
    """Each symbol's text: raw inputs (``inputs`` formats ``array`` and ``k``), info fields by
    position, features as their locals."""
    reads = plan.reads()
    names = {f"{array}[{k}]": inputs[array].format(array=array, k=k)
             for array in INPUT_ARRAYS for k in reads[array]}
    names.update({f"info.{plan.info_names[k]}": text for k, text in info.items()})
    names.update({name: plan.feature_local(name) for name, _ in plan.features})
    return names


def _body(plan: ExportPlan, printer: NumpyPrinter | PythonPrinter | CPrinter,
          assign: str, comment: str) -> tuple[list[str], list[str]]:
    """Lines defining each feature (``assign`` formats ``local`` and ``text``; ``comment``
    formats the name of a feature whose local is numbered), and each term's expression."""
    lines = []
    for name, expr in plan.features:
        local = plan.feature_local(name)
        line = assign.format(local=local, text=printer.doprint(expr))
        lines.append(line if local == f"f_{name}" else line + comment.format(name=name))
    return lines, [printer.doprint(expr) for _, expr in plan.terms]


def _helpers(printer: NumpyPrinter | PythonPrinter | CPrinter, blank_lines: int) -> list[str]:
    """The helper functions the printed code calls, with ``blank_lines`` between and after."""
    if not printer.helpers:
        return []
    between = "\n" * (blank_lines + 1)
    return [between.join(printer.helper_sources[key].rstrip("\n")
                         for key in sorted(printer.helpers)), *[""] * blank_lines]


def _info_check(plan: ExportPlan, reads: list[int], value: str) -> list[str]:
    if not reads:
        return []
    message = (f"this reward reads info fields {', '.join(plan.info_names[k] for k in reads)}: "
               f"pass info, a mapping from each field name to {value}")
    return ["    if info is None:", f"        raise ValueError({message!r})"]


def numpy_source(plan: ExportPlan) -> str:
    """``reward(obs, act, next_obs, info=None)`` over (N, dim) arrays -> (N,), and ``terms``."""
    reads = plan.reads()
    printer = NumpyPrinter(_names(plan, dict.fromkeys(INPUT_ARRAYS, "{array}[:, {k}]"),
                                  {k: _info_local(plan, k) for k in reads["info"]}))
    features, terms = _body(plan, printer, "        {local} = {text}", "  # {name}")
    columns = {array: max(reads[array], default=-1) + 1 for array in INPUT_ARRAYS}
    total = " + ".join(f"t[:, {k}]" for k in range(len(terms)))
    lines = [
        _comment("#", plan.header("numpy", _NUMPY_USAGE.splitlines())),
        "import numpy",
        "",
        f"TERM_NAMES = {plan.term_names!r}",
        f"INFO_NAMES = {plan.info_names!r}",
        "",
        "",
        *_helpers(printer, 2),
        "def _term_table(obs, act, next_obs, info):",
        *(f"    {array} = _table({array}, {array!r}, {columns[array]})" for array in INPUT_ARRAYS),
        "    n = obs.shape[0]",
        "    if act.shape[0] != n or next_obs.shape[0] != n:",
        "        raise ValueError('obs, act and next_obs must have the same number of rows')",
        *_info_check(plan, reads["info"], "an (N,) array"),
        *(f"    {_info_local(plan, k)} = numpy.asarray(info[{plan.info_names[k]!r}], "
          "dtype=numpy.float64)" for k in reads["info"]),
        f"    out = numpy.empty((n, {len(terms)}))",
        "    with numpy.errstate(all='ignore'):  # inf and NaN are results, not errors",
        *features,
        *(f"        out[:, {k}] = {text}" for k, text in enumerate(terms)),
        "    return out",
        "",
        _NUMPY_API.replace("SUM", total + (".copy()" if len(terms) == 1 else "")),
    ]
    return "\n".join(lines).rstrip("\n") + "\n"


def python_source(plan: ExportPlan) -> str:
    """``reward(obs, act, next_obs, info=None)`` of one transition -> float, and ``terms``."""
    reads = plan.reads()
    printer = PythonPrinter(_names(plan, dict.fromkeys(INPUT_ARRAYS, "{array}_{k}"),
                                   {k: _info_local(plan, k) for k in reads["info"]}))
    features, terms = _body(plan, printer, "    {local} = {text}", "  # {name}")
    lines = [
        _comment("#", plan.header("python", _PYTHON_USAGE.splitlines())),
        "import math",
        "",
        f"TERM_NAMES = {plan.term_names!r}",
        f"INFO_NAMES = {plan.info_names!r}",
        "",
        "",
        *_helpers(printer, 2),
        "def _term_values(obs, act, next_obs, info):",
        *_info_check(plan, reads["info"], "a number"),
        *(f"    {array}_{k} = float({array}[{k}])" for array in INPUT_ARRAYS
          for k in reads[array]),
        *(f"    {_info_local(plan, k)} = float(info[{plan.info_names[k]!r}])"
          for k in reads["info"]),
        *features,
        "    return (",
        *(f"        {text}," for text in terms),
        "    )",
        "",
        _PYTHON_API.replace("SUM", " + ".join(f"t[{k}]" for k in range(len(terms)))),
    ]
    return "\n".join(lines).rstrip("\n") + "\n"


def _c_string(text: str) -> str:
    """A C string literal of ``text``'s UTF-8 bytes (octal escapes: they take at most three
    digits, so a following character cannot join them, as it could a hex escape)."""
    return '"' + "".join(chr(byte) if 32 <= byte < 127 and chr(byte) not in '"\\?'
                         else f"\\{byte:03o}" for byte in text.encode()) + '"'


def c_source(plan: ExportPlan) -> str:
    """``double reward(obs, act, next_obs, info)`` and ``void reward_terms(..., double *out)``,
    C99 with ``<math.h>`` only; also ``reward_n_terms`` and ``reward_term_names``."""
    reads = plan.reads()
    printer = CPrinter(_names(plan, dict.fromkeys(INPUT_ARRAYS, "{array}[{k}]"),
                              {k: f"info[{k}]" for k in range(len(plan.info_names))}))
    features, terms = _body(plan, printer, "    const double {local} = {text};",
                             "  /* {name} */")
    names = ", ".join(_c_string(name) for name in plan.term_names)
    lines = [
        "/*",
        _comment(" *", plan.header("c", _C_USAGE.splitlines())) + " */",
        "#include <math.h>",
        "",
        f"#define REWARD_N_TERMS {len(terms)}",
        "",
        "/* The number of terms, and their names in the order reward_terms() writes them. */",
        "const int reward_n_terms = REWARD_N_TERMS;",
        f"const char *const reward_term_names[REWARD_N_TERMS] = {{{names}}};",
        "",
        *_helpers(printer, 1),
        "/* Each term's value for one transition, into out[0 .. REWARD_N_TERMS - 1]. */",
        f"void reward_terms({_PARAMETERS}, double *out)",
        "{",
        *(f"    (void){array};" for array in (*INPUT_ARRAYS, "info") if not reads[array]),
        *features,
        *(f"    out[{k}] = {text};" for k, text in enumerate(terms)),
        "}",
        _C_API.replace("PARAMETERS", _PARAMETERS).replace(
            "SUM", " + ".join(f"t[{k}]" for k in range(len(terms)))),
    ]
    return "\n".join(lines).rstrip("\n") + "\n"
