"""Choosing a model from the front: the paired one-standard-error rule and its margin."""

import itertools
import math
import statistics

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from symreward.errors import OptionError
from symreward.search.front import (
    DEVIANCE_TOLERANCE,
    FLOOR_FACTOR,
    TERM_COMPLEXITY,
    FrontEntry,
    ParetoFront,
)


def entry(complexity: int, fold_losses: list[float], name: str = "") -> FrontEntry:
    loss = sum(fold_losses) / len(fold_losses)
    spread = math.sqrt(sum((f - loss) ** 2 for f in fold_losses) / (len(fold_losses) - 1))
    return FrontEntry(complexity=complexity, loss=loss, accuracy=math.nan,
                      formula=name or f"model {complexity}",
                      loss_se=spread / math.sqrt(len(fold_losses)),
                      fold_losses=tuple(fold_losses))


# Folds of very different difficulty, as 200 pairs per fold give: every model's fold losses
# swing by 0.1, which dwarfs the 0.01 that separates the two models below.
HARD_AND_EASY = [0.45, 0.35, 0.30, 0.25, 0.40]
EMPTY = entry(0, [0.693] * 5, "0")


def test_a_gain_seen_in_every_fold_is_kept_though_fold_losses_swing_more() -> None:
    simple = entry(3, [f + 0.010 for f in HARD_AND_EASY], "simple")
    better = entry(7, [f + d for f, d in zip(HARD_AND_EASY, [0.0, 0.001, -0.001, 0.0005, 0.0],
                                             strict=True)], "better")
    assert simple.loss - better.loss < better.loss_se  # the unpaired rule would pick simple
    front = ParetoFront.from_models([EMPTY, simple, better])
    assert front.best.formula == "better"


def test_a_gain_the_folds_disagree_on_is_dropped() -> None:
    simple = entry(3, HARD_AND_EASY, "simple")
    noisy = entry(7, [f + d for f, d in zip(HARD_AND_EASY, [-0.06, 0.05, -0.04, 0.04, -0.03],
                                            strict=True)], "noisy")
    assert noisy.loss < simple.loss
    assert ParetoFront.from_models([EMPTY, simple, noisy]).best.formula == "simple"


def test_a_consistent_but_negligible_gain_is_dropped() -> None:
    """Near-separable labels: a term that lowers every fold's loss by a hundredth of a percent
    of the explained deviance is real but not worth a term."""
    simple = entry(3, [0.02, 0.03, 0.01, 0.02, 0.025], "simple")
    tiny_gain = (EMPTY.loss - simple.loss) * DEVIANCE_TOLERANCE / 10
    extra = entry(5, [f - tiny_gain for f in simple.fold_losses], "extra")
    assert ParetoFront.from_models([EMPTY, simple, extra]).best.formula == "simple"


def test_a_barely_simpler_model_earns_a_share_of_the_margin() -> None:
    """One complexity unit less (``abs(dx)`` for ``sqrt(dx**2 + dy**2)``) earns a third of the
    deviance margin; a whole term less earns all of it."""
    best = entry(23, [0.1358] * 4 + [0.1359], "norm")
    gap = 0.6 * DEVIANCE_TOLERANCE * (EMPTY.loss - best.loss)
    barely = entry(22, [f + gap for f in best.fold_losses], "barely simpler")
    assert ParetoFront.from_models([EMPTY, barely, best]).best.formula == "norm"
    a_term_less = entry(23 - TERM_COMPLEXITY, barely.fold_losses, "a term less")
    assert ParetoFront.from_models([EMPTY, a_term_less, best]).best.formula == "a term less"


@pytest.mark.parametrize(("gain_per_term", "chosen"), [(0.7, "simple"), (1.3, "two more terms")])
def test_every_term_pays_the_practical_margin_not_only_the_last(gain_per_term: float,
                                                                chosen: str) -> None:
    """Two more terms, each lowering every fold's loss by 0.7 of the practical margin: 1.4
    margins together, more than the one term's margin the simpler model earns from the lowest
    loss, yet neither term pays for itself. At 1.3 margins each, both do."""
    simple = entry(7, [0.34, 0.36, 0.35, 0.33, 0.37], "simple")
    # the margin is 1% of the deviance the richer model explains, which its own gain raises
    margin = DEVIANCE_TOLERANCE * (EMPTY.loss - simple.loss) / (
        1 - 2 * gain_per_term * DEVIANCE_TOLERANCE)
    richer = entry(7 + 2 * TERM_COMPLEXITY,
                   [f - 2 * gain_per_term * margin for f in simple.fold_losses], "two more terms")
    assert math.isclose(DEVIANCE_TOLERANCE * (EMPTY.loss - richer.loss), margin)
    assert ParetoFront.from_models([EMPTY, simple, richer]).best.formula == chosen


def test_a_restatement_of_the_best_model_does_not_join_the_front() -> None:
    """``a*sqrt(x) + b*sqrt(2*x)`` fits as well as ``sqrt(x)`` up to the ridge; were it on the
    front as the best model, every model would be measured against its complexity."""
    norm = entry(23, [0.1068, 0.1455, 0.1192, 0.1414, 0.1675], "norm")
    restated = entry(39, [f - 1e-9 for f in norm.fold_losses], "restated")
    barely = entry(22, [f + 0.0053 for f in norm.fold_losses], "barely simpler")
    front = ParetoFront.from_models([EMPTY, barely, norm, restated])
    assert [e.formula for e in front.entries] == ["0", "barely simpler", "norm"]
    assert front.best.formula == "norm"


def test_a_model_that_reproduces_the_labels_is_not_traded_for_an_approximation() -> None:
    """Soft labels on theta in [1, 3] (benchmarks/evolve.py, Feynman I.6.2a, seed 0): the true
    ``exp(-theta**2/2)`` is at the labels' entropy, ``1.67/theta`` 0.0025 above it, within 1%
    of the deviance. With the floor known the margin is at most 100 times the best model's
    own excess, so the truth is kept; without it the simpler formula wins."""
    floor = 0.157077
    empty = entry(0, [0.693147] * 5, "0")
    truth = entry(9, [floor + 1e-11] * 5, "gaussian")
    inverse = entry(3, [floor + d for d in (0.0025, 0.0032, 0.0020, 0.0019, 0.0029)], "1/theta")
    assert inverse.loss - truth.loss < DEVIANCE_TOLERANCE * (empty.loss - truth.loss)
    assert ParetoFront.from_models([empty, inverse, truth]).best.formula == "1/theta"
    assert ParetoFront.from_models([empty, inverse, truth],
                                   floor=floor).best.formula == "gaussian"


def test_a_floor_far_below_every_model_changes_nothing() -> None:
    """0/1 labels or noisy soft labels: the best model is far above any floor, so the 1% margin
    stands."""
    simple = entry(3, [0.30, 0.31, 0.29, 0.30, 0.30], "simple")
    gain = 0.5 * DEVIANCE_TOLERANCE * (EMPTY.loss - 0.30)
    extra = entry(6, [f - gain for f in simple.fold_losses], "extra")
    for floor in (None, 0.0, 0.1):
        assert ParetoFront.from_models([EMPTY, simple, extra],
                                       floor=floor).best.formula == "simple"


def test_without_fold_losses_the_best_models_own_standard_error_is_the_margin() -> None:
    simple = FrontEntry(3, 0.30, math.nan, "simple", loss_se=0.02)
    better = FrontEntry(7, 0.29, math.nan, "better", loss_se=0.02)
    assert ParetoFront.from_models([simple, better]).best.formula == "simple"
    better.loss_se = 0.001
    assert ParetoFront.from_models([simple, better]).best.formula == "better"


fold_sets = st.lists(st.floats(0.01, 1.0), min_size=5, max_size=5)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), fold_sets), min_size=1, max_size=8),
       st.sampled_from(["1se", "best", "accuracy", "simplest"]),
       st.one_of(st.none(), st.floats(0.0, 0.01)))
@example([(0, [1.0, 0.5, 0.7575503346875271, 0.5, 0.5]), (1, [1.0, 0.5, 0.01, 0.5, 0.5])], "1se",
         None)
def test_the_chosen_model_is_on_the_front_and_no_better_model_is_simpler(models, rule,
                                                                         floor) -> None:
    front = ParetoFront.from_models([entry(c, f) for c, f in models], rule=rule, floor=floor)
    losses = [e.loss for e in front.entries]
    assert all(b < a for a, b in itertools.pairwise(losses))
    complexities = [e.complexity for e in front.entries]
    assert complexities == sorted(set(complexities))
    if rule == "accuracy":
        assert front.best.loss == min(losses)
    if rule == "1se":
        lowest = min(losses)
        deviance = DEVIANCE_TOLERANCE * (front.entries[0].loss - lowest)
        if floor is not None:
            deviance = min(deviance, FLOOR_FACTOR * max(lowest - floor, 0.0))
        charged = [e.loss + deviance / TERM_COMPLEXITY * e.complexity for e in front.entries]
        reference = front.entries[charged.index(min(charged))]

        def within(e: FrontEntry, slack: float) -> bool:
            # ``slack`` absorbs rounding at exact ties (one differing fold: mean == its error)
            paired = 0.0 if e is reference else statistics.stdev(
                a - b for a, b in zip(e.fold_losses, reference.fold_losses, strict=True)
            ) / math.sqrt(5)
            saved = min(max(reference.complexity - e.complexity, 0) / TERM_COMPLEXITY, 1.0)
            return e.loss <= reference.loss + max(paired, saved * deviance) + slack

        assert within(front.best, 1e-12)
        assert not any(within(e, -1e-12) for e in front.entries[:front.chosen])


def test_unknown_rule_is_refused() -> None:
    with pytest.raises(OptionError, match="selection=.median.: choose from 1se"):
        ParetoFront.from_models([EMPTY], rule="median")
