"""What every export of an artifact writes: the features its terms read (in an order where each
follows those it uses), the terms, the raw inputs read, and the header naming the artifact."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sympy

from symreward._version import __version__
from symreward.export.printers import check_supported

if TYPE_CHECKING:
    from symreward.artifact import RewardArtifact

_RAW_INPUT = re.compile(r"(obs|act|next_obs)\[([0-9]+)\]")
_INFO_PREFIX = "info."
INPUT_ARRAYS = ("obs", "act", "next_obs")


@dataclass(frozen=True)
class ExportPlan:
    """An artifact's reward as the exports write it.

    ``features`` are ``(name, expr)`` over raw-input and earlier feature symbols: only those the
    terms read, directly or through other features (``unused`` names the rest). ``info_names``
    orders the info fields as the kernels do (``artifact.features.info_names()``)."""

    name: str
    source: str
    content_hash: str
    features: tuple[tuple[str, sympy.Expr], ...]
    terms: tuple[tuple[str, sympy.Expr], ...]
    info_names: tuple[str, ...]
    unused: tuple[str, ...]
    #: Position of each feature in the artifact, for the locals of non-ASCII names.
    positions: dict[str, int]

    @classmethod
    def of(cls, artifact: RewardArtifact) -> ExportPlan:
        feature_set = artifact.features
        terms = tuple(zip(artifact.term_names, artifact.term_exprs(), strict=True))
        used = sorted({symbol.name for _, expr in terms for symbol in expr.free_symbols})
        needed = feature_set.dependencies(used)
        features = tuple((name, feature_set.exprs[name]) for name in needed)
        for name, expr in features:
            check_supported(expr, f"{artifact.source}: feature '{name}'")
        for name, expr in terms:
            check_supported(expr, f"{artifact.source}: term '{name}'")
        return cls(name=artifact.name, source=artifact.source,
                   content_hash=artifact.content_hash(), features=features, terms=terms,
                   info_names=tuple(feature_set.info_names()),
                   unused=tuple(n for n in feature_set.names if n not in needed),
                   positions={name: k for k, name in enumerate(feature_set.names)})

    @property
    def term_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.terms)

    def reads(self) -> dict[str, list[int]]:
        """The columns of ``obs``, ``act``, ``next_obs`` the features read, sorted, and under
        ``info`` the positions in ``info_names`` of the info fields they read."""
        found: dict[str, set[int]] = {array: set() for array in (*INPUT_ARRAYS, "info")}
        for _, expr in self.features:
            for symbol in expr.free_symbols:
                match = _RAW_INPUT.fullmatch(symbol.name)
                if match:
                    found[match.group(1)].add(int(match.group(2)))
                elif symbol.name.startswith(_INFO_PREFIX):
                    found["info"].add(self.info_names.index(symbol.name[len(_INFO_PREFIX):]))
        return {array: sorted(columns) for array, columns in found.items()}

    def feature_local(self, name: str) -> str:
        """The feature's variable in exported code: ``f_<name>``, or ``f_<position>`` for a
        non-ASCII name (Python folds some of those together, and C compilers differ on them)."""
        return f"f_{name}" if name.isascii() else f"f_{self.positions[name]}"

    def header(self, to: str, lines: list[str]) -> list[str]:
        """The header every export starts with (as text lines, without comment markers): the
        artifact's name, source and content hash, the inputs read, the info fields' order."""
        reads = self.reads()
        inputs = [f"{array}[{', '.join(map(str, reads[array]))}]" for array in INPUT_ARRAYS
                  if reads[array]]
        info = (", ".join(f"{k}: {name}" for k, name in enumerate(self.info_names))
                if self.info_names else "none")
        header = [
            f"Reward {quoted(self.name)}, exported by symreward {__version__} "
            f"(symreward export --to {to}).",
            f"Artifact {quoted(self.source)}, content hash {self.content_hash}.",
            f"Reads {', '.join(inputs) or 'no observation or action'}"
            + (f" and info fields {', '.join(self.info_names[k] for k in reads['info'])}"
               if reads["info"] else "") + ".",
            f"Info fields, in order: {info}.",
        ]
        if self.unused:
            header.append(f"Features the reward does not use are left out: "
                          f"{', '.join(self.unused)}.")
        return header + lines


def quoted(text: str) -> str:
    """``text`` as a one-line, ASCII, double-quoted string that cannot end a comment in any of
    the exported languages."""
    return json.dumps(text).replace("*/", "*\\/")
