"""The reward as LaTeX for a paper: an ``align*`` environment (amsmath) giving the reward as the
sum of its named terms, each term, and the definition of each feature the terms read.

Raw inputs are written ``s_{i}`` (obs), ``a_{i}`` (act), ``s'_{i}`` (next_obs) and
``\\mathrm{info}_{\\mathrm{name}}``; a comparison is an Iverson bracket ``[x < y]`` (1 where it
holds, else 0) and ``where`` a ``cases`` environment.
"""

from __future__ import annotations

import re
from typing import Any

import sympy
from sympy.printing.latex import LatexPrinter

from symreward.export.plan import ExportPlan
from symreward.formula import Comparison, Where

_RAW_INPUT = re.compile(r"(obs|act|next_obs)\[([0-9]+)\]")
_LETTERS = {"obs": "s", "act": "a", "next_obs": "s'"}
_RELATIONS = {"<": "<", "<=": r"\leq", ">": ">", ">=": r"\geq"}


def _roman(name: str) -> str:
    return r"\mathrm{" + name.replace("_", r"\_") + "}"


class RewardLatexPrinter(LatexPrinter):
    """sympy's LaTeX printer with the formula language's names, comparisons and ``where``, and
    numbers written as the shortest decimal of their double."""

    def _print_Symbol(self, expr: sympy.Symbol, style: str = "plain") -> str:
        match = _RAW_INPUT.fullmatch(expr.name)
        if match:
            # Braced, so a power's superscript does not follow the prime of s'.
            return f"{{{_LETTERS[match.group(1)]}_{{{match.group(2)}}}}}"
        if expr.name.startswith("info."):
            return rf"\mathrm{{info}}_{{{_roman(expr.name[len('info.'):])}}}"
        return _roman(expr.name)

    def _print_Float(self, expr: sympy.Float) -> str:
        text = repr(float(expr))
        if "e" not in text:
            return text
        mantissa, exponent = text.split("e")
        return rf"{mantissa} \cdot 10^{{{int(exponent)}}}"

    def _print_atan2(self, expr: sympy.atan2, exp: Any = None) -> str:
        y, x = (self._print(arg) for arg in expr.args)
        text = rf"\operatorname{{atan2}}\left({y}, {x}\right)"
        return text if exp is None else rf"{text}^{{{exp}}}"

    def _relation(self, expr: Comparison) -> str:
        lhs, rhs = (self._print(arg) for arg in expr.args)
        return f"{lhs} {_RELATIONS[expr.operator]} {rhs}"

    def _print_comparison(self, expr: Comparison, exp: Any = None) -> str:
        text = rf"\left[{self._relation(expr)}\right]"
        return text if exp is None else rf"{text}^{{{exp}}}"

    # sympy's printers look up _print_<Class> by a Function's own class, not its bases.
    _print_Less = _print_LessEqual = _print_Greater = _print_GreaterEqual = _print_comparison

    def _print_Where(self, expr: Where, exp: Any = None) -> str:
        condition, if_true, if_false = expr.args
        test = (self._relation(condition) if isinstance(condition, Comparison)
                else rf"{self._print(condition)} \neq 0")
        text = (rf"\begin{{cases}} {self._print(if_true)} & \text{{if }} {test} \\ "
                rf"{self._print(if_false)} & \text{{otherwise}} \end{{cases}}")
        return text if exp is None else rf"\left({text}\right)^{{{exp}}}"


def latex_source(plan: ExportPlan) -> str:
    """The reward, its terms and its features as one ``align*`` environment."""
    printer = RewardLatexPrinter()
    term = {name: rf"r_{{{_roman(name)}}}" for name in plan.term_names}
    reward = [rf"r &= {' + '.join(term.values())}",
              *(rf"{term[name]} &= {printer.doprint(expr)}" for name, expr in plan.terms)]
    features = [rf"{_roman(name)} &= {printer.doprint(expr)}" for name, expr in plan.features]
    body = " \\\\\n  ".join(reward)
    if features:  # a little space between the reward and the features' definitions
        body += " \\\\[1ex]\n  " + " \\\\\n  ".join(features)
    header = plan.header("latex", [
        r"Needs \usepackage{amsmath}. s_i = obs[i], a_i = act[i], s'_i = next_obs[i];",
        "[P] is 1 where P holds, else 0.",
    ])
    comments = "".join(f"% {line}\n" for line in header)
    return f"{comments}\\begin{{align*}}\n  {body}\n\\end{{align*}}\n"
