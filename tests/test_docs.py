"""The examples in public docstrings run, and print what they say."""

import doctest

import symreward.learner


def test_the_learners_docstring_examples_run():
    results = doctest.testmod(symreward.learner, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert results.attempted >= 8
    assert results.failed == 0


def test_the_learner_clones_and_sets_params_as_scikit_learn_does():
    from sklearn.base import clone

    from symreward.search.library import TermLibrary

    learner = symreward.learner.SymbolicRewardLearner(
        objective="rewards", max_terms=3, library=TermLibrary(powers=(1, 2)), seed=4)
    copy = clone(learner)
    assert copy is not learner and copy.get_params()["library"] == learner.library
    assert copy.get_params()["library"] is not learner.library
    assert {k: v for k, v in copy.get_params().items() if k != "library"} == \
        {k: v for k, v in learner.get_params().items() if k != "library"}
    copy.set_params(max_terms=5, selection="accuracy")
    assert (copy.max_terms, copy.selection, learner.max_terms) == (5, "accuracy", 3)
    assert "max_terms=3" in repr(learner) and "objective='rewards'" in repr(learner)
