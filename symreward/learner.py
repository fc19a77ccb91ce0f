"""``SymbolicRewardLearner``: from a dataset and named features to a reward artifact.

The pipeline: the rows the objective reads (``objectives.reduction``) → featurise them with the
compiled kernels → build the candidate-term library → the engine proposes supports → each
support is refit under the objective's exact loss and scored by cross-validation on folds of
segments or episodes (``objectives`` says why) → a Pareto front of complexity against held-out
loss → one model is selected, its constants rounded to the fewest significant digits that keep
the loss within tolerance → an artifact with provenance.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import sympy
from sklearn.base import BaseEstimator

from symreward import chunked, crossval, evaluate, formula, problems, validation
from symreward._version import __version__
from symreward.artifact import RewardArtifact, Term
from symreward.constraints import (
    CandidateConstraints,
    Constraints,
    FitConstraints,
    effective_support,
    fit_constraints,
    stated_invariants,
)
from symreward.data import Dataset
from symreward.errors import OptionError
from symreward.features import FeatureSet
from symreward.objectives import OBJECTIVES, LinearProblem, Objective, fitting, make_objective
from symreward.objectives.reduction import MAX_UNLABELED, Reduction, reduce_dataset
from symreward.objectives.rounding import round_significant, rounded_weights
from symreward.provenance import learned_history
from symreward.search import engines
from symreward.search.front import SELECTION_RULES, FrontEntry, ParetoFront
from symreward.search.library import Candidate, TermLibrary
from symreward.search.model import Model, coefficient
from symreward.search.proposals import unique_name, with_engine_terms
from symreward.search.sparse import l1_supports, simpler_variants, swapped_variants, threshold_forms
from symreward.search.stepwise import stepwise_supports

Progress = Callable[[str], None]


@dataclass
class _Outcome:
    """What one fit learned, handed to the artifact's construction and then to the fitted
    attributes (``objective_``, ``candidates_``, ...), so no step reads state an earlier one
    left on the learner."""

    objective: Objective
    candidates: list[Candidate]
    front: ParetoFront
    model: Model
    coefficients: list[float]
    intercept: float
    feature_ranges: dict[str, list[float]]
    metrics: dict[str, Any]
    folds: dict[str, Any]
    search: dict[str, Any]
    constraints: dict[str, Any] | None = None


class SymbolicRewardLearner(BaseEstimator):
    """Learn a sparse symbolic reward offline, from a fixed dataset.

    Options are set here (scikit-learn's ``get_params``, ``set_params`` and ``clone`` work);
    ``fit(dataset, features)`` learns, and the learned state appears with a trailing
    underscore. Every option is checked when ``fit`` starts (``check_options``): a bad value
    raises ``OptionError`` naming it.

    Parameters
    ----------
    objective : {"preferences", "rankings", "demonstrations", "rewards"}, default="preferences"
        What the data's labels are: preferences between segments (Bradley–Terry), ranked
        segments (T-REX), expert transitions beside unlabeled ones (positive-unlabeled
        classification), or a reward per transition (least squares).
    engine : {"sparse", "evolve", "pysr"}, default="sparse"
        How terms are found. ``"sparse"`` chooses among the term library's candidates (L1 path
        and score-test stepwise selection); ``"evolve"`` also searches term structure with the
        evolutionary engine, seeded by the sparse front; ``"pysr"`` uses PySR (needs Julia).
    max_terms : int, default=8
        The most terms a learned reward may have.
    n_folds : int, default=5
        Cross-validation folds of the objective's units (segments or episodes).
    library : TermLibrary or None, default=None
        The candidate-term library (``symreward.search.library.TermLibrary``): powers, abs,
        products, hinges and indicators at quantile knots, user terms. ``None``: the defaults.
    selection : {"1se", "best", "accuracy", "simplest"}, default="1se"
        How one model is chosen from the Pareto front of complexity against held-out loss
        (``symreward.search.front``). ``"simplest"`` also works where the data are too small
        to cross-validate (models are then compared by their training loss).
    noise : float in [0, 1), default=0.0
        Label-noise probability of the preference model (preferences only).
    discount : float in (0, 1], default=1.0
        Discount of segment returns (preferences and rankings).
    class_prior : float in (0, 1) or None, default=None
        Share of expert-like transitions among the unlabeled ones (demonstrations only);
        ``None``: estimated from the data.
    max_unlabeled : int, default=100_000
        Demonstrations only: above this many unlabeled transitions, a seeded uniform sample of
        this many is learned from, beside every expert one (``objectives.reduction`` says why).
    rounding_tolerance : float, default=1e-3
        How much (relative) rounding the weights to few significant digits may raise the
        training loss.
    population, generations : int or None, default=None
        The evolutionary or PySR engine's population size and generation budget; ``None``:
        the engine's defaults. Refused with the sparse engine.
    time_limit : float or None, default=None
        The structure search's time budget in seconds; ``None``: the engine's default.
        Refused with the sparse engine.
    seed : int, default=0
        Seeds every random choice: the same data, options and seed give the same artifact.
    constraints : Constraints or None, default=None
        What the reward must respect (``symreward.constraints``): invariants bound the signs of
        the weights of terms whose shape they prove; accepted findings add rows or preference
        pairs; ``base``'s ``[[invariants]]`` join them. The artifact lists the invariants, and
        provenance the constraints and any the chosen model breaks (a model that breaks a row
        is chosen only where every model does).
    name : str or None, default=None
        The learned artifact's name.
    progress : callable or None, default=None
        Called with one line of text at each step (the CLI prints them).

    Attributes
    ----------
    artifact_ : RewardArtifact
        The chosen reward, with its provenance (options, data hash, cross-validation, front).
    front_ : ParetoFront
        The non-dominated models, simplest first; ``front_.best`` is the chosen one.
    model_ : Model
        The chosen model before rounding: its fit over the library's candidates.
    coefficients_ : list of float
        The chosen model's weights after rounding, in the order of its terms.
    objective_ : Objective
        The objective the data defined, on the rows learned from (``objective_.dataset``).
    candidates_ : list of Candidate
        The term library after pruning (and any terms a structure search added).
    feature_ranges_ : dict of str to [float, float]
        Each feature's range on the rows learned from.
    metrics_ : dict
        The chosen model's held-out loss, its standard error and accuracy, its training loss,
        the learning time and the number of loss rows.
    folds_ : dict
        What cross-validation ran on: units, partitions, each fold's training and validation
        rows, and the rows no fold validated.
    search_ : dict
        The engine and, for a structure search, its budget spent and the units it held out.

    Examples
    --------
    >>> import numpy as np
    >>> from symreward.data import Dataset, bradley_terry_preferences
    >>> rng = np.random.default_rng(0)
    >>> obs = rng.normal(size=(2000, 2))
    >>> data = Dataset(observations=obs, actions=np.zeros((2000, 1)), next_observations=obs,
    ...                terminals=np.zeros(2000, bool), timeouts=np.arange(2000) % 50 == 49)
    >>> truth = -obs[:, 0] ** 2 + 0.5 * obs[:, 1]
    >>> data = data.replace(preferences=bradley_terry_preferences(data, truth, 300, 10, seed=1))
    >>> learner = SymbolicRewardLearner(seed=0).fit(data, {"x": "obs[0]", "y": "obs[1]"})
    >>> sorted(term.name for term in learner.artifact_.terms)
    ['x_pow2', 'y']
    >>> learner.metrics_["heldout_accuracy"] > 0.8
    True
    >>> learner.get_params()["n_folds"]
    5
    """

    def __init__(self, objective: str = "preferences", engine: str = "sparse", *,
                 max_terms: int = 8, n_folds: int = 5, library: TermLibrary | None = None,
                 selection: str = "1se", noise: float = 0.0, discount: float = 1.0,
                 class_prior: float | None = None, max_unlabeled: int = MAX_UNLABELED,
                 rounding_tolerance: float = 1e-3,
                 population: int | None = None, generations: int | None = None,
                 time_limit: float | None = None, seed: int = 0,
                 constraints: Constraints | None = None, name: str | None = None,
                 progress: Progress | None = None):
        self.objective = objective
        self.engine = engine
        self.max_terms = max_terms
        self.n_folds = n_folds
        self.library = library
        self.selection = selection
        self.noise = noise
        self.discount = discount
        self.class_prior = class_prior
        self.max_unlabeled = max_unlabeled
        self.rounding_tolerance = rounding_tolerance
        self.population = population
        self.generations = generations
        self.time_limit = time_limit
        self.seed = seed
        self.constraints = constraints
        self.name = name
        self.progress = progress

    def options(self) -> dict[str, Any]:
        """The options that shape the result, as recorded in provenance."""
        library = self.library or TermLibrary()
        options: dict[str, Any] = {
            "max_terms": self.max_terms, "n_folds": self.n_folds, "selection": self.selection,
            "noise": self.noise, "discount": self.discount,
            "rounding_tolerance": self.rounding_tolerance,
            "library": {"powers": list(library.powers), "abs": library.absolute,
                        "products": library.products, "hinges": library.hinges,
                        "indicators": library.indicators,
                        "knot_quantiles": list(library.knot_quantiles),
                        "user_terms": list(library.user_terms)},
        }
        if self.class_prior is not None:
            options["class_prior"] = self.class_prior
        if self.objective == "demonstrations":
            options["max_unlabeled"] = self.max_unlabeled
        if self.engine != engines.SPARSE:
            search = self._budget()
            options["search"] = {k: v for k, v in search.items() if v is not None}
        return options

    def check_options(self) -> None:
        """Every option's value, before any work: an ``OptionError`` names the first bad one.
        An option that would have no effect (label noise for rankings, a search budget for the
        sparse engine) is refused rather than silently ignored."""
        validation.choice("objective", self.objective, OBJECTIVES)
        validation.choice("engine", self.engine, tuple(engines.ENGINES))
        validation.choice("selection", self.selection, SELECTION_RULES)
        validation.whole("max_terms", self.max_terms, 1)
        validation.whole("n_folds", self.n_folds, 2)
        validation.whole("seed", self.seed, 0)
        validation.number("noise", self.noise, 0.0, 1.0, high_open=True)
        validation.number("discount", self.discount, 0.0, 1.0, low_open=True)
        validation.number("class_prior", self.class_prior, 0.0, 1.0, low_open=True,
                          high_open=True, optional=True)
        validation.whole("max_unlabeled", self.max_unlabeled, 1)
        validation.number("rounding_tolerance", self.rounding_tolerance, 0.0)
        validation.whole("population", self.population, 2, optional=True)
        validation.whole("generations", self.generations, 1, optional=True)
        validation.number("time_limit", self.time_limit, 0.0, low_open=True, optional=True)
        if self.library is not None and not isinstance(self.library, TermLibrary):
            raise OptionError("library", self.library, "must be a TermLibrary or None")
        if self.constraints is not None:
            if not isinstance(self.constraints, Constraints):
                raise OptionError("constraints", self.constraints,
                                  "must be a symreward.constraints.Constraints or None")
            self.constraints.check()
        if self.name is not None and not isinstance(self.name, str):
            raise OptionError("name", self.name, "must be a string or None")
        if self.progress is not None and not callable(self.progress):
            raise OptionError("progress", self.progress, "must be a callable or None")
        if self.objective != "preferences":
            validation.unused("noise", self.noise, 0.0, "unless the objective is preferences")
        if self.objective not in ("preferences", "rankings"):
            validation.unused("discount", self.discount, 1.0,
                              "unless the objective is preferences or rankings")
        if self.objective != "demonstrations":
            validation.unused("class_prior", self.class_prior, None,
                              "unless the objective is demonstrations")
            validation.unused("max_unlabeled", self.max_unlabeled, MAX_UNLABELED,
                              "unless the objective is demonstrations")
        if engines.ENGINES[self.engine] is None:
            for option in ("population", "generations", "time_limit"):
                validation.unused(option, getattr(self, option), None,
                                  "with the sparse engine (it is a structure search's budget)")
        else:
            self._budget()

    def _budget(self) -> dict[str, Any]:
        """The structure search's budget: the engine's defaults where an option is not set,
        checked by the engine."""
        engine = engines.ENGINES[self.engine]
        if engine is None:
            return {"population": self.population, "generations": self.generations,
                    "time_limit": self.time_limit}
        return engine.budget(self.population, self.generations, self.time_limit)

    def _say(self, message: str) -> None:
        if self.progress is not None:
            self.progress(message)

    def fit(self, dataset: Dataset | chunked.ChunkedDataset,
            features: FeatureSet | dict[str, str], *,
            base: RewardArtifact | None = None) -> SymbolicRewardLearner:
        """Learn from ``dataset``; ``base`` is an earlier artifact whose locked terms are kept
        exactly as written (their reward is a fixed offset), whose invariants constrain the fit
        and whose hash becomes the parent. Labelled rewards (the sparse engine) can also be
        learned from a dataset read chunk by chunk (``symreward.chunked``), as in memory."""
        self.check_options()
        engine = engines.ENGINES[self.engine]
        if engine is not None:
            engine.check_available()
        locked = [t for t in base.terms if t.locked] if base is not None else []
        if locked and engine is not None and not engine.keeps_locked_terms:
            raise OptionError("engine", self.engine,
                              f"cannot keep locked terms ({', '.join(t.name for t in locked)}"
                              f" in {base.source}): its search takes no fixed reward; unlock "
                              "them or use another engine (evolve keeps them)")
        features = features if isinstance(features, FeatureSet) else FeatureSet(features)
        library = self.library or TermLibrary()
        library.check_user_terms(features)
        started = time.perf_counter()
        if not (isinstance(dataset, Dataset) or hasattr(dataset, "take")):
            chunked.check_learnable(self.objective, self.engine)  # chunks that cannot gather
        reduction = reduce_dataset(self.objective, dataset, max_unlabeled=self.max_unlabeled,
                                   seed=self.seed)
        if reduction.summary:
            self._say(reduction.summary)
        dataset = reduction.dataset
        if isinstance(dataset, Dataset):
            objective = make_objective(self.objective, dataset, noise=self.noise,
                                       discount=self.discount, class_prior=self.class_prior,
                                       seed=self.seed)
            matrix, offset = self._featurise(reduction, features, locked)
            user_columns = (evaluate.text_columns(dataset, features, library.user_terms)
                            if library.user_terms else None)
            candidates, columns = library.build(features.names, matrix, user_columns,
                                                seed=self.seed)
            if objective.identifies_per_step_constant():
                candidates = [Candidate("per_step", "1", sympy.Integer(1), 1, "constant"),
                              *candidates]
                columns = np.column_stack([np.ones(dataset.n), columns])
            ranges = {name: (float(matrix[:, i].min()), float(matrix[:, i].max()))
                      for i, name in enumerate(features.names)}
            design = problems.column_problems(objective, columns, offset)
        else:  # read chunk by chunk: labelled rewards, no structure search (nor its columns)
            chunked.check_learnable(self.objective, self.engine)
            matrix = columns = offset = None
            objective, candidates, ranges, design = chunked.reward_problems(
                dataset, features, library, locked, self.seed)
        self._say(f"library: {len(candidates)} candidate terms over {len(features)} features, "
                  f"{dataset.n} transitions")
        bound = fit_constraints(self.constraints, base, features.names, ranges,
                                [t.sympy(features.names) for t in locked], kind=objective.kind,
                                intercept=objective.identifies_intercept)
        limits = bound.for_candidates(candidates) if bound is not None else None
        folds, folds_report = self._validation_folds(objective)
        full, splits, floor = self._problems(design, folds, limits)
        models = self._search(full, splits, folds, candidates, self._sparse_proposals(full),
                              floor)
        search: dict[str, Any] = {"engine": self.engine}
        if engine is not None:
            seeds = [[c.expr for c, _ in m.payload.terms()]
                     for m in self._front(models.values(), floor).entries]
            held, searched = crossval.selection_split(objective, self.n_folds, self.seed)
            term_sets, spent = self._structure_search(objective, matrix, features, offset,
                                                      seeds, searched, bound)
            search.update(spent, held_out_units=len(held) if len(held) < objective.n_units
                          else 0)
            candidates, columns, proposals = with_engine_terms(
                candidates, columns, term_sets, matrix, dataset, features)
            limits = bound.for_candidates(candidates) if bound is not None else None
            folds, folds_report = self._validation_folds(objective, held)
            full, splits, floor = self._problems(
                problems.column_problems(objective, columns, offset), folds, limits)
            models = self._search(full, splits, folds, candidates, [*models, *proposals], floor)
        front = self._front(models.values(), floor)
        chosen = front.best.payload
        coefficients, intercept = rounded_weights(full, chosen.fit, self.rounding_tolerance)
        constrained = None
        if bound is not None:
            kept = full.with_columns(np.asarray(chosen.fit.support, dtype=int)).constraints
            constrained = bound.summary() | {"unmet": kept.unmet(coefficients, intercept)}
        seconds = time.perf_counter() - started
        self._say(f"learned in {seconds:.2f} s")

        outcome = _Outcome(
            objective=objective, candidates=candidates, front=front, model=chosen,
            coefficients=coefficients, intercept=intercept,
            feature_ranges={name: list(extent) for name, extent in ranges.items()},
            metrics={"heldout_loss": front.best.loss, "heldout_loss_se": front.best.loss_se,
                     "heldout_accuracy": front.best.accuracy,
                     "train_loss": front.best.train_loss,
                     "learning_seconds": round(seconds, 3), "rows": full.n_rows},
            folds=folds_report, search=search, constraints=constrained)
        artifact = self._artifact(reduction.data, features, outcome, locked, base)
        self.objective_ = outcome.objective
        self.candidates_ = outcome.candidates
        self.front_ = outcome.front
        self.model_ = outcome.model
        self.coefficients_ = outcome.coefficients
        self.feature_ranges_ = outcome.feature_ranges
        self.metrics_ = outcome.metrics
        self.folds_ = outcome.folds
        self.search_ = outcome.search
        self.artifact_ = artifact
        return self

    # -- steps ---------------------------------------------------------------------------

    def _featurise(self, reduction: Reduction, features: FeatureSet, locked: list[Term]
                   ) -> tuple[np.ndarray, np.ndarray | None]:
        """The (N, F) feature matrix of the rows learned from, checked finite (a message
        names the input's row), and the locked terms' fixed reward."""
        dataset = reduction.dataset
        matrix = evaluate.finite_feature_columns(
            dataset, features, lambda row: f"row {reduction.input_row(row)}")
        if not locked:
            return matrix, None
        return matrix, evaluate.rewards(dataset, features,
                                        [(t.name, t.sympy(features.names)) for t in locked])

    def _problems(self, design: problems.ColumnProblems | problems.MomentProblems,
                  folds: crossval.Folds, limits: CandidateConstraints | None
                  ) -> tuple[LinearProblem, problems.Splits, float | None]:
        """The problem on all the data and each fold's (training, validation) pair, the
        constraints on those fitted; the folds' reachable loss (``problems_floor``)."""
        full, splits = design.problems(list(folds))
        floor = crossval.problems_floor([held for _, held in splits] if splits else [full])
        if limits is not None:
            full = limits.attach(full)
            splits = [(limits.attach(train), held) for train, held in splits]
        return full, splits, floor

    def _validation_folds(self, objective: Objective, units: np.ndarray | None = None
                          ) -> tuple[crossval.Folds, dict[str, Any]]:
        """``crossval.validation_folds`` with the learner's options, and its report."""
        folds = crossval.validation_folds(objective, self.n_folds, self.seed, units,
                                          allow_none=self.selection == "simplest")
        report = crossval.fold_report(objective, folds)
        if folds:
            partitions = (f" ({folds.partitions} partitions: {report['never_validated']} "
                          f"{objective.row_name} validated by none)"
                          if folds.partitions > 1 else "")
            self._say(f"cross-validation: {len(folds)} folds of {objective.unit_name}"
                      f"{partitions}; "
                      f"{objective.row_name} trained / validated on per fold: "
                      + ", ".join(f"{train}/{held}" for train, held in report["folds"]))
        else:
            self._say("too little data to cross-validate: models are compared by their "
                      "training loss (--selection simplest)")
        return folds, report

    def _front(self, models: Iterable[FrontEntry], floor: float | None) -> ParetoFront:
        """The front of the models whose fits meet the constraint rows (of all of them, where
        none does)."""
        models = list(models)
        feasible = [m for m in models if m.payload.fit.feasible]
        return ParetoFront.from_models(feasible or models, rule=self.selection, floor=floor)

    def _sparse_proposals(self, full: LinearProblem) -> list[tuple[int, ...]]:
        proposals: list[tuple[int, ...]] = [()]
        for support in (*l1_supports(full, max_terms=self.max_terms, seed=self.seed),
                        *stepwise_supports(full, max_terms=self.max_terms, seed=self.seed)):
            if support not in proposals:
                proposals.append(support)
        return proposals

    def _search(self, full: LinearProblem, splits: problems.Splits, folds: crossval.Folds,
                candidates: list[Candidate], proposals: list[tuple[int, ...]],
                floor: float | None) -> dict[tuple[int, ...], FrontEntry]:
        """Cross-validate the proposed supports, each fold's model fitted on all the other
        units (``splits``: the training and validation problems of each of ``folds``) and
        scored on the fold, then simpler variants of the front's members until the front
        stops changing (a look-alike term can be two simplifications away from the one it
        mimics: ``max(0, 0.31 - dist)`` beside an extra term, then ``dist``), then the chosen
        model's hinges and indicators swapped for their feature's others
        (``swapped_variants``), and so on until the chosen model has been swapped and the
        front stops changing; ``floor`` is the folds' reachable loss. Where ``full`` has
        constraints (and so each training problem), a support is first cut to the terms its
        constrained fit keeps (``effective_support``)."""
        proposals = list(dict.fromkeys(effective_support(full, p) for p in proposals))
        self._say(f"search: {len(proposals)} supports of up to {self.max_terms} terms; "
                  + (f"cross-validating on {len(folds)} folds" if folds else
                     "scored by their training loss"))
        index = {c.text: k for k, c in enumerate(candidates)}
        parents = [[index[p] for p in c.parents if p in index] for c in candidates]
        thresholds = threshold_forms(candidates)
        scored: dict[tuple[int, ...], FrontEntry] = {}
        cut: dict[tuple[int, ...], tuple[int, ...]] = {}

        def unscored(variants: list[tuple[int, ...]]) -> list[tuple[int, ...]]:
            # each variant is cut once: under constraints a cut refits, and every round
            # offers the front's simpler variants again
            for variant in variants:
                if variant not in cut:
                    cut[variant] = effective_support(full, variant)
            return list(dict.fromkeys(cut[v] for v in variants if cut[v] not in scored))

        while proposals:
            for support in proposals:
                scored[support] = self._cross_validate(support, full, splits, candidates,
                                                       folds.partitions)
            front = self._front(scored.values(), floor)
            proposals = (unscored([variant for entry in front.entries for variant in
                                   simpler_variants(entry.payload.fit.support, parents)])
                         or unscored(swapped_variants(front.best.payload.fit.support,
                                                      thresholds)))
        return scored

    def _structure_search(self, objective: Objective, matrix: np.ndarray, features: FeatureSet,
                          offset: np.ndarray | None, seeds: list[list[sympy.Expr]],
                          units: np.ndarray, bound: FitConstraints | None = None
                          ) -> tuple[list[list[sympy.Expr]], dict[str, Any]]:
        """Term sets from the structure-search engine, seeded by the sparse front, searched on
        the objective's ``units`` only, and what the search spent; the constraints' sign
        bounds of terms (``bound``) filter what it keeps."""
        engine = engines.ENGINES[self.engine]
        proposal = engine.propose(
            objective, matrix, features.names, offset=offset, seeds=seeds, units=units,
            budget=self._budget(),
            settings=engines.Settings(seed=self.seed, max_terms=self.max_terms,
                                      rounding_tolerance=self.rounding_tolerance,
                                      progress=self.progress,
                                      weight_bounds=(bound.shapes.bounds if bound is not None
                                                     else None)))
        return proposal.term_sets, proposal.report

    def _cross_validate(self, support: tuple[int, ...], full: LinearProblem,
                        splits: list[tuple[LinearProblem, LinearProblem]],
                        candidates: list[Candidate], partitions: int) -> FrontEntry:
        fitted = fitting.fit(full, support)
        fold_losses, fold_accuracies, weights = [], [], []
        for train, held in splits:
            if held.n_rows == 0 or train.n_rows == 0:
                continue
            fold_fit = fitting.fit(train, support)
            fold_losses.append(fitting.fit_loss(held, fold_fit))
            fold_accuracies.append(fitting.fit_accuracy(held, fold_fit))
            weights.append(held.n_rows)
        if not splits:
            fold_losses, weights = [fitting.fit_loss(full, fitted)], [full.n_rows]
            fold_accuracies = [fitting.fit_accuracy(full, fitted)]
        losses = np.asarray(fold_losses)
        loss = float(np.average(losses, weights=weights))
        se = (float(losses.std(ddof=1) * math.sqrt(max(partitions, 1) / len(losses)))
              if len(losses) > 1 else 0.0)
        accuracies = np.asarray(fold_accuracies)
        finite = np.isfinite(accuracies)
        accuracy = (float(np.average(accuracies[finite], weights=np.asarray(weights)[finite]))
                    if finite.any() else math.nan)
        model = Model(fitted, candidates)
        shown = model.expression([round_significant(c, 4) for c in fitted.coef])
        return FrontEntry(complexity=formula.complexity(model.expression()) if support else 0,
                          loss=loss, loss_se=se, fold_losses=tuple(fold_losses),
                          partitions=max(partitions, 1),
                          accuracy=accuracy,
                          formula=formula.to_text(shown) if support else "0",
                          train_loss=fitting.fit_loss(full, fitted), payload=model)

    def _artifact(self, data: dict[str, Any], features: FeatureSet, outcome: _Outcome,
                  locked: list[Term], base: RewardArtifact | None) -> RewardArtifact:
        """The learned reward: the locked terms, the chosen model's terms at their rounded
        weights, and the provenance of ``outcome`` and of the ``data`` learned from."""
        taken = {t.name for t in locked}
        terms = list(locked)
        intercept = outcome.intercept
        for (candidate, _), weight in zip(outcome.model.terms(), outcome.coefficients,
                                          strict=True):
            name = unique_name(candidate.name, taken)
            taken.add(name)
            expr = formula.to_text(coefficient(weight) * candidate.expr)
            terms.append(Term(name, expr))
        if outcome.objective.identifies_intercept and intercept != 0:
            terms.append(Term(unique_name("bias", taken),
                              formula.to_text(coefficient(intercept))))
        if not terms:
            terms.append(Term("zero", "0", note="no term explained the data better than none"))
        provenance: dict[str, Any] = {
            "created_by": f"symreward {__version__}",
            "objective": self.objective,
            "engine": self.engine,
            "seed": self.seed,
            "options": self.options(),
            "data": data,
            "metrics": {k: _finite(v) for k, v in outcome.metrics.items()
                        if k != "learning_seconds"},
            "feature_ranges": outcome.feature_ranges,
            "cross_validation": outcome.folds,
            **({"search": {k: v for k, v in outcome.search.items() if k != "seconds"}}
               if self.engine != engines.SPARSE else {}),
            "front": [e.as_dict() | ({"chosen": True} if i == outcome.front.chosen else {})
                      for i, e in enumerate(outcome.front.entries)],
            **({"constraints": outcome.constraints} if outcome.constraints is not None else {}),
        }
        if base is not None:
            provenance["parent"] = base.content_hash()
            provenance["history"] = learned_history(
                base, f"learned ({self.objective}, {self.engine}, seed {self.seed}); "
                      f"kept locked: {', '.join(t.name for t in locked) or 'none'}")
        name = self.name or (base.name if base is not None else f"learned-{self.objective}")
        return RewardArtifact(name=name, features=features, terms=terms,
                              invariants=stated_invariants(self.constraints, base),
                              provenance=provenance)


def learn(dataset: Dataset, features: FeatureSet | dict[str, str], *,
          objective: str = "preferences", engine: str = "sparse", seed: int = 0,
          base: RewardArtifact | None = None, **options: Any) -> RewardArtifact:
    """Learn a reward artifact in one call; see ``SymbolicRewardLearner`` for options."""
    learner = SymbolicRewardLearner(objective=objective, engine=engine, seed=seed, **options)
    return learner.fit(dataset, features, base=base).artifact_


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "nan"
    return round(value, 6) if isinstance(value, float) else value
