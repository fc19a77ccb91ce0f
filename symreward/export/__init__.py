"""A reward artifact as standalone code: numpy, pure Python, C99, or LaTeX for a paper.

``export(artifact, to)`` returns the text of a file that computes the artifact's reward with no
symreward import: each feature the terms read is defined in it (a local variable computed once
from the raw inputs), then each term, then their sum. Every export starts with a comment naming
the artifact's name, source and content hash and the order of the info fields. The code computes
what ``artifact.evaluate`` computes, operation for operation and number for number (see
``printers``): the same bits where the math library is the same, else within a few units in the
last place of exp, sin, ... (1e-12 relative in the tests).

- ``numpy``: ``reward(obs, act, next_obs, info=None)`` over (N, dim) arrays (``info`` a mapping
  from field name to an (N,) array) returning (N,), and ``terms(...)``, a dict of (N,) arrays.
- ``python``: the same two functions over one transition, with the ``math`` module only.
- ``c``: ``double reward(const double *obs, const double *act, const double *next_obs,
  const double *info)`` (``info`` in the header's order) and ``reward_terms(..., double *out)``,
  C99 including ``<math.h>`` only.
- ``latex``: an ``align*`` environment with the reward, its named terms and the features.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from symreward.errors import OptionError

if TYPE_CHECKING:
    from symreward.artifact import RewardArtifact

__all__ = ["FORMATS", "export"]

#: The languages ``export`` writes (``symreward export --to``).
FORMATS = ("numpy", "python", "c", "latex")


def export(artifact: RewardArtifact | str | os.PathLike[str], to: str) -> str:
    """The reward of ``artifact`` (a ``RewardArtifact`` or the path of one) as standalone code in
    the language ``to``, one of ``FORMATS``.

    Raises ``OptionError`` for another ``to`` and ``ArtifactError`` for a path that does not hold
    a valid artifact.
    """
    if to not in FORMATS:
        raise OptionError("to", to, f"must be one of {', '.join(FORMATS)}")
    # Imported here: the command line reads FORMATS without loading sympy's printers.
    from symreward.artifact import RewardArtifact
    from symreward.export.latex import latex_source
    from symreward.export.plan import ExportPlan
    from symreward.export.sources import c_source, numpy_source, python_source

    if not isinstance(artifact, RewardArtifact):
        artifact = RewardArtifact.load(artifact)
    write = {"numpy": numpy_source, "python": python_source, "c": c_source,
             "latex": latex_source}[to]
    return write(ExportPlan.of(artifact))
