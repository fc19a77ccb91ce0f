"""Structure-search engines and their registry (``ENGINES``), which the learner and the CLI read.

``"sparse"`` is the learner's own search: it chooses among the term library's candidates
(``sparse``, ``stepwise``) and needs no engine object. Every other engine searches term
structure beyond the library, seeded by the sparse front, on the units the learner gives it,
and proposes term sets that the learner cross-validates beside the library's. An engine has:

* ``help``: one line for the CLI (its name is its key in ``ENGINES``);
* ``budget(population, generations, time_limit)``: the search's budget with the engine's
  defaults where a value is ``None``, checked (an ``OptionError`` names the first bad value);
* ``check_available()``: an ``EngineUnavailable`` error when it cannot run on this machine;
* ``keeps_locked_terms``: whether it fits around a fixed reward (a base artifact's locked terms,
  passed as ``offset``); the learner refuses locked terms, before any work, for one that
  cannot;
* ``propose(objective, matrix, names, *, offset, seeds, units, budget, settings)``: a
  ``Proposal``, the term sets and what the search spent (recorded in provenance).

A new engine is a class with these members and one entry in ``ENGINES``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np
    import sympy

    from symreward.objectives import Objective

# The engines' modules are imported when an engine runs: the CLI reads this registry to build
# its options, and must not pay for numba or the search to do so.


@dataclass(frozen=True)
class Settings:
    """The learner's options every engine reads."""

    seed: int = 0
    max_terms: int = 8
    rounding_tolerance: float = 1e-3
    progress: Callable[[str], None] | None = None
    # The bounds (lower, upper) the learner's constraints put on a term's weight, where an
    # engine can use them (``symreward.constraints.ShapeRules.bounds``).
    weight_bounds: Callable[[sympy.Expr], tuple[float, float]] | None = None


@dataclass
class Proposal:
    """Term sets (sympy over feature symbols) and what the search spent."""

    term_sets: list[list[sympy.Expr]]
    report: dict[str, Any] = field(default_factory=dict)


class StructureSearch(Protocol):
    help: str
    keeps_locked_terms: bool

    def budget(self, population: int | None, generations: int | None,
               time_limit: float | None) -> dict[str, Any]: ...

    def check_available(self) -> None: ...

    def propose(self, objective: Objective, matrix: np.ndarray, names: Sequence[str], *,
                offset: np.ndarray | None, seeds: Sequence[Sequence[sympy.Expr]],
                units: np.ndarray, budget: dict[str, Any], settings: Settings) -> Proposal: ...


class Evolve:
    """The evolutionary engine (``symreward.search.evolve``)."""

    help = "evolutionary search of term structure, seeded by sparse"
    keeps_locked_terms = True

    def budget(self, population: int | None, generations: int | None,
               time_limit: float | None) -> dict[str, Any]:
        from symreward.search.evolve import EvolutionarySearch

        defaults = EvolutionarySearch()
        chosen = replace(defaults,
                         population=defaults.population if population is None else population,
                         generations=defaults.generations if generations is None
                         else generations,
                         time_limit=defaults.time_limit if time_limit is None else time_limit)
        chosen.check()
        return {"population": chosen.population, "generations": chosen.generations,
                "time_limit": chosen.time_limit, "patience": chosen.patience,
                "operators": list(chosen.operators)}

    def check_available(self) -> None:
        return None

    def propose(self, objective: Objective, matrix: np.ndarray, names: Sequence[str], *,
                offset: np.ndarray | None, seeds: Sequence[Sequence[sympy.Expr]],
                units: np.ndarray, budget: dict[str, Any], settings: Settings) -> Proposal:
        from symreward.search.evolve import EvolutionarySearch

        search = EvolutionarySearch(
            population=budget["population"], generations=budget["generations"],
            time_limit=budget["time_limit"], max_terms=settings.max_terms,
            rounding_tolerance=settings.rounding_tolerance, seed=settings.seed,
            progress=settings.progress)
        result = search.run(objective, matrix, names, offset=offset, seeds=seeds, units=units,
                            weight_bounds=settings.weight_bounds)
        if settings.progress is not None:
            settings.progress(f"evolve: {result.generations} generations, {result.evaluations} "
                              f"terms evaluated in {result.seconds:.1f} s; stopped: "
                              f"{result.stopped}")
        return Proposal(result.term_sets, {
            "generations": result.generations, "stopped": result.stopped,
            "terms_evaluated": result.evaluations, "candidates_scored": result.candidates,
            "seconds": round(result.seconds, 3)})


class PySR:
    """PySR in a subprocess (``symreward.search.pysr``; needs Julia). Its Julia loss takes no
    fixed reward yet, so it cannot keep locked terms."""

    help = "PySR (needs Julia)"
    keeps_locked_terms = False

    def budget(self, population: int | None, generations: int | None,
               time_limit: float | None) -> dict[str, Any]:
        return {"population": population, "generations": generations,
                "time_limit": time_limit}

    def check_available(self) -> None:
        from symreward.search import pysr

        pysr.check_available()

    def propose(self, objective: Objective, matrix: np.ndarray, names: Sequence[str], *,
                offset: np.ndarray | None, seeds: Sequence[Sequence[sympy.Expr]],
                units: np.ndarray, budget: dict[str, Any], settings: Settings) -> Proposal:
        from symreward.search import pysr

        if offset is not None:
            raise ValueError("the pysr engine cannot keep locked terms")
        if settings.progress is not None:
            settings.progress("search: PySR (in a subprocess)")
        return Proposal(pysr.propose(objective, matrix, names, seed=settings.seed,
                                     time_limit=budget["time_limit"],
                                     population=budget["population"],
                                     generations=budget["generations"], units=units))


SPARSE = "sparse"
SPARSE_HELP = "convex path over a term library (fast, default)"
ENGINES: dict[str, StructureSearch | None] = {SPARSE: None, "evolve": Evolve(), "pysr": PySR()}
