"""Named features: formulas over raw inputs (``obs[i]``, ``act[i]``, ``next_obs[i]``, ``info.x``).

A feature may use other features; they are ordered so each comes after the ones it uses, and a
cycle is an error that names the loop.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path

import sympy

from symreward import formula
from symreward.errors import FeatureError, FormulaError
from symreward.tomlfiles import read_toml

_INPUT_NAME = re.compile(r"^(obs|act|next_obs)\[(\d+)\]$")


class FeatureSet(Mapping[str, str]):
    """An ordered set of named feature formulas; maps name → formula text.

    ``exprs`` holds each feature as sympy over raw inputs and other feature symbols;
    ``order`` lists names so that every feature follows the features it uses.
    """

    def __init__(self, features: Mapping[str, str], *, source: str = "features"):
        self.source = source
        if not isinstance(features, Mapping) or not features:
            raise FeatureError(f"{source}: [features] must be a non-empty table of "
                               "name = \"formula\"")
        self._texts: dict[str, str] = {}
        for name, text in features.items():
            if not formula.is_identifier(name):
                raise FeatureError(f"{source}: feature name {name!r} must be an identifier that "
                                   f"is not one of {', '.join(sorted(formula.RESERVED))}")
            if not isinstance(text, str):
                raise FeatureError(f"{source}: feature '{name}': the formula must be a string, "
                                   f"not {type(text).__name__}")
            self._texts[name] = str(text)
        names = list(self._texts)
        self.exprs: dict[str, sympy.Expr] = {}
        for name, text in self._texts.items():
            try:
                self.exprs[name] = formula.parse(text, names, allow_inputs=True)
            except FormulaError as exc:
                raise FeatureError(f"{source}: feature '{name}' = {text!r}: {exc}") from None
        self.order: list[str] = _topological_order(self.exprs, source)

    @classmethod
    def from_toml(cls, path: str | Path) -> FeatureSet:
        """Read ``[features] name = "formula"`` from a TOML file."""
        document = read_toml(path, FeatureError)
        table = document.get("features")
        if table is None:
            raise FeatureError(f"{path}: missing the [features] table")
        return cls(table.unwrap() if hasattr(table, "unwrap") else table, source=str(path))

    def __getitem__(self, name: str) -> str:
        return self._texts[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._texts)

    def __len__(self) -> int:
        return len(self._texts)

    def __repr__(self) -> str:
        body = ", ".join(f"{name}={text!r}" for name, text in self._texts.items())
        return f"FeatureSet({body})"

    @property
    def names(self) -> list[str]:
        return list(self._texts)

    def symbols(self) -> dict[str, sympy.Symbol]:
        return {name: formula.symbol(name) for name in self._texts}

    def resolved(self, name: str) -> sympy.Expr:
        """The feature as sympy over raw inputs only (other features substituted)."""
        expr = self.exprs[name]
        for other in reversed(self.order):
            expr = expr.xreplace({formula.symbol(other): self.exprs[other]})
        return expr

    def dependencies(self, names: list[str]) -> list[str]:
        """``names`` plus every feature they use, in evaluation order."""
        needed: set[str] = set()
        stack = list(names)
        while stack:
            name = stack.pop()
            if name in needed:
                continue
            needed.add(name)
            stack.extend(_feature_uses(self.exprs[name], self._texts))
        return [name for name in self.order if name in needed]

    def inputs(self, names: Collection[str] | None = None) -> dict[str, set]:
        """Raw inputs used: ``{"obs": {indices}, "act": ..., "next_obs": ..., "info": {names}}``;
        by the features ``names`` only, when given."""
        used: dict[str, set] = {"obs": set(), "act": set(), "next_obs": set(), "info": set()}
        for name, expr in self.exprs.items():
            if names is not None and name not in names:
                continue
            for sym in expr.free_symbols:
                match = _INPUT_NAME.match(sym.name)
                if match:
                    used[match.group(1)].add(int(match.group(2)))
                elif sym.name.startswith("info."):
                    used["info"].add(sym.name[len("info."):])
        return used

    def info_names(self) -> list[str]:
        return sorted(self.inputs()["info"])

    def check_dimensions(self, obs_dim: int, act_dim: int, info_names: Collection[str],
                         *, data_source: str = "the dataset",
                         names: Collection[str] | None = None,
                         info_key: str = "infos/{}") -> None:
        """Raise ``FeatureError`` if a feature reads an input the dataset does not have.

        ``names`` restricts the check to those features (all by default); ``info_key`` is how
        the message writes an info field's key in ``data_source``."""
        limits = {"obs": obs_dim, "next_obs": obs_dim, "act": act_dim}
        for name in self.order:
            if names is not None and name not in names:
                continue
            shown = f"its formula: {self._texts[name]!r}"
            for sym in sorted(self.exprs[name].free_symbols, key=lambda s: s.name):
                match = _INPUT_NAME.match(sym.name)
                if match and int(match.group(2)) >= limits[match.group(1)]:
                    array, index = match.group(1), int(match.group(2))
                    key = {"obs": "observations", "next_obs": "next_observations",
                           "act": "actions"}[array]
                    width = limits[array]
                    raise FeatureError(
                        f"{self.source}: feature '{name}' reads {array}[{index}] but {data_source} "
                        f"has {key} of width {width} (valid indices 0..{width - 1}); {shown}")
                if sym.name.startswith("info.") and sym.name[5:] not in info_names:
                    available = ", ".join(sorted(info_names)) or "none"
                    raise FeatureError(
                        f"{self.source}: feature '{name}' reads {sym.name} but {data_source} has "
                        f"no key '{info_key.format(sym.name[5:])}' (infos present: {available}); "
                        f"{shown}")

    def to_dict(self) -> dict[str, str]:
        return dict(self._texts)


def _feature_uses(expr: sympy.Expr, names: Mapping[str, str]) -> list[str]:
    return sorted(sym.name for sym in expr.free_symbols if sym.name in names)


def _topological_order(exprs: Mapping[str, sympy.Expr], source: str) -> list[str]:
    """Order features so each follows those it uses; keeps the file's order where free."""
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            loop = " -> ".join([*path[path.index(name):], name])
            raise FeatureError(f"{source}: features form a cycle: {loop}")
        state[name] = "visiting"
        for used in _feature_uses(exprs[name], exprs):
            visit(used, [*path, name])
        state[name] = "done"
        order.append(name)

    for name in exprs:
        visit(name, [])
    return order
