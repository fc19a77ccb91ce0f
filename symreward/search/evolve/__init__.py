"""The evolutionary engine: the structure of terms is searched, their weights are fitted.

An individual is a set of terms, each an expression tree over the features; its reward is the
weighted sum of its terms with the weights fitted by the objective's own convex loss (as in FEAT,
La Cava et al. 2019), so evolution searches structure only. The search is seeded with the sparse
engine's front; the learner then cross-validates what the archive proposes, exactly as it does
for the sparse engine's proposals.

Terms are trees (``symreward.search.trees``); every new term of a generation is evaluated in one
parallel call of its interpreter, every term set fitted and scored in one call of the compiled
solvers (``symreward.objectives.fitting``). With the same seed and a budget of generations (not
of seconds) a run is reproducible bit for bit on one machine.

The modules, one concern each:

* ``engine``: the options (``EvolutionarySearch``), a run and its generations, the result;
* ``columns``: term columns, evaluated once, screened and mapped to the objective's rows;
* ``fitness``: individuals scored by two-fold validation of their fitted weights;
* ``variation``: random terms, mutation, crossover, joins and merges of terms;
* ``tuning``: thresholds by pattern search, constants rounded to few digits;
* ``refinement``: Gauss–Newton on smooth constants (variable projection);
* ``dictionary``: the initial population (univariate shapes, seeds, random sets);
* ``selection``: NSGA-II, tournaments and the Pareto archive.
"""

from symreward.search.evolve.columns import map_rows, screen
from symreward.search.evolve.engine import EvolutionarySearch, EvolutionResult, Progress, Run
from symreward.search.evolve.fitness import Individual, constants_in

__all__ = ["EvolutionResult", "EvolutionarySearch", "Individual", "Progress", "Run",
           "constants_in", "map_rows", "screen"]
