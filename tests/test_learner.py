import re

import numpy as np
import pytest
import sympy

from symreward.artifact import RewardArtifact, Term
from symreward.audit import epic_distance
from symreward.crossval import (
    MAX_PARTITIONS,
    SELECTION_SHARE,
    Folds,
    folds_floor,
    selection_split,
    validation_folds,
)
from symreward.data import (
    Dataset,
    Preferences,
    bradley_terry_preferences,
    rankings_from_rewards,
)
from symreward.errors import DataError
from symreward.evaluate import text_columns
from symreward.features import FeatureSet
from symreward.learner import SymbolicRewardLearner, learn
from symreward.objectives import PreferenceObjective
from symreward.objectives.fitting import fit, fit_loss
from symreward.objectives.rounding import round_significant
from symreward.search.library import TermLibrary

FEATURES = FeatureSet({"x": "obs[0]", "y": "obs[1]", "z": "obs[2]"})
PLANTED = {"x**2": -1.5, "y": 0.8}


def walk(n=4000, episode=40, seed=0):
    """Episodes of a smooth random walk, so segment returns differ by where a segment goes."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(scale=0.3, size=(n, 3))
    starts = np.arange(n) % episode == 0
    obs = np.empty((n, 3))
    for t in range(n):
        obs[t] = rng.normal(size=3) if starts[t] else obs[t - 1] + steps[t]
    next_obs = np.vstack([obs[1:], obs[-1:]])
    return Dataset(observations=obs, actions=rng.normal(size=(n, 1)), next_observations=next_obs,
                   terminals=np.zeros(n, bool), timeouts=np.arange(n) % episode == episode - 1)


def planted(dataset):
    x, y = dataset.observations[:, 0], dataset.observations[:, 1]
    return -1.5 * x**2 + 0.8 * y


def expert_dataset(seed=0):
    """Unlabeled states from a base distribution, expert states drawn with weight exp(r): then
    the expert-vs-unlabeled logit is r plus a constant."""
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(20000, 3))
    r = -1.5 * base[:, 0] ** 2 + 0.8 * base[:, 1]
    weights = np.exp(r - r.max())
    expert = base[rng.choice(len(base), 3000, p=weights / weights.sum())]
    obs = np.vstack([base[:6000], expert])
    n = len(obs)
    return Dataset(observations=obs, actions=np.zeros((n, 1)), next_observations=obs,
                   terminals=np.zeros(n, bool), timeouts=np.arange(n) % 50 == 49,
                   expert=np.arange(n) >= 6000)


def learned_terms(learner):
    return {cand.text: coef for (cand, _), coef in
            zip(learner.model_.terms(), learner.coefficients_, strict=True)}


def assert_recovers_planted(learner, scale_free=True, rel=0.05):
    terms = learned_terms(learner)
    assert set(terms) == set(PLANTED), terms
    if scale_free:
        ratio = terms["y"] / terms["x**2"]
        assert ratio == pytest.approx(PLANTED["y"] / PLANTED["x**2"], rel=0.1)
    else:
        for text, value in PLANTED.items():
            assert terms[text] == pytest.approx(value, rel=rel)


def test_preferences_recover_a_planted_formula():
    dataset = walk()
    prefs = bradley_terry_preferences(dataset, planted(dataset), 1000, 10, seed=1)
    learner = SymbolicRewardLearner(seed=0).fit(dataset.replace(preferences=prefs), FEATURES)
    assert_recovers_planted(learner)
    assert learner.metrics_["heldout_accuracy"] > 0.8


def test_rankings_recover_a_planted_formula():
    dataset = walk()
    ranks = rankings_from_rewards(dataset, planted(dataset), 80, 10, noise=0.5, seed=2)
    learner = SymbolicRewardLearner("rankings").fit(dataset.replace(rankings=ranks), FEATURES)
    assert_recovers_planted(learner)


def test_demonstrations_recover_a_planted_formula():
    learner = SymbolicRewardLearner("demonstrations").fit(expert_dataset(), FEATURES)
    assert_recovers_planted(learner, scale_free=False, rel=0.1)
    assert not any(t.name == "bias" for t in learner.artifact_.terms)


def test_reward_labels_recover_formula_and_intercept():
    dataset = walk()
    noise = np.random.default_rng(3).normal(scale=0.05, size=dataset.n)
    dataset = dataset.replace(rewards=planted(dataset) + 2.0 + noise)
    learner = SymbolicRewardLearner("rewards").fit(dataset, FEATURES)
    assert_recovers_planted(learner, scale_free=False)
    bias = [t for t in learner.artifact_.terms if t.name == "bias"]
    assert len(bias) == 1 and float(bias[0].expr) == pytest.approx(2.0, abs=0.05)


def test_an_intercept_that_is_rounding_noise_is_no_term():
    dataset = walk()
    learner = SymbolicRewardLearner("rewards").fit(dataset.replace(rewards=planted(dataset)),
                                                   FEATURES)
    assert learner.model_.fit.intercept != 0
    assert_recovers_planted(learner, scale_free=False)
    assert not any(t.name == "bias" for t in learner.artifact_.terms)


def test_same_seed_same_artifact_bytes():
    dataset = walk(n=2000)
    dataset = dataset.replace(
        preferences=bradley_terry_preferences(dataset, planted(dataset), 300, 10, seed=4))
    first = learn(dataset, FEATURES, seed=5).dumps()
    second = learn(dataset, FEATURES, seed=5).dumps()
    assert first == second
    assert "sha256:" in first and "front" in first and "feature_ranges" in first


def test_from_keeps_locked_terms_byte_for_byte(tmp_path):
    dataset = walk(n=2000)
    effort = -0.3 * dataset.observations[:, 2] ** 2
    dataset = dataset.replace(preferences=bradley_terry_preferences(
        dataset, planted(dataset) + effort, 500, 10, seed=6))
    old = tmp_path / "old.toml"
    old.write_text(
        'schema = "symreward/1"\nname = "hand"\n\n[features]\nx = "obs[0]"\ny = "obs[1]"\n'
        'z = "obs[2]"\n\n[[terms]]\nname = "guess"\nexpr = "-x"\n\n'
        '[[terms]]\nname = "effort"\nexpr = "-0.3 * z**2"   # spaces kept as written\n'
        'locked = true\nnote = "a person wrote this"\n')
    base = RewardArtifact.load(old)
    artifact = learn(dataset, base.features, base=base, seed=0)
    new = tmp_path / "new.toml"
    artifact.save(new)
    saved = RewardArtifact.load(new)
    assert saved.terms[0] == Term("effort", "-0.3 * z**2", locked=True, note="a person wrote this")
    assert 'expr = "-0.3 * z**2"' in new.read_text()
    assert "guess" not in saved.term_names
    assert saved.provenance["parent"] == base.content_hash()
    assert not any("z" in t.expr for t in saved.terms[1:]), saved.term_names


def test_non_finite_feature_names_feature_and_row():
    dataset = walk(n=400)
    dataset = dataset.replace(preferences=bradley_terry_preferences(
        dataset, planted(dataset), 50, 10, seed=0), source="walk.npz")
    features = FeatureSet({"x": "obs[0]", "bad": "log(obs[1])"})
    row = int(np.argmax(dataset.observations[:, 1] < 0))
    with pytest.raises(DataError, match=f"walk.npz: feature 'bad' = 'log\\(obs\\[1\\]\\)' is "
                                        f"nan at row {row}"):
        SymbolicRewardLearner().fit(dataset, features)


def test_pendulum_end_to_end_epic():
    """Learn Pendulum-v1's reward from 400 synthetic preferences: EPIC to the truth <= 0.05 on
    most label draws. One draw is not a property: with 400 pairs the front sometimes prefers a
    near-equivalent (``11.7*height - 1.13*theta**2`` for ``-theta**2``; ``height`` is
    ``cos(theta)``), and a processor whose last bits differ can tip a close choice. Measured
    on these 12 draws: 9 within 0.05, median 0.019 (before the score-test stepwise, 8 and
    0.020); asserted: 7 and 0.05."""
    from symreward.demo import FEATURES as PENDULUM
    from symreward.demo import TRUE_TERMS, pendulum_dataset

    features = FeatureSet(PENDULUM)
    truth = RewardArtifact(name="true", features=features, terms=TRUE_TERMS)
    heldout = pendulum_dataset(500, seed=99)
    np.testing.assert_allclose(truth.evaluate(heldout).rewards, heldout.rewards, atol=2e-5)
    distances = {}
    for seed in range(11, 23):
        train = pendulum_dataset(1000, seed=seed)
        train = train.replace(preferences=bradley_terry_preferences(train, train.rewards, 400,
                                                                    25, seed=seed))
        artifact = learn(train, features, seed=0)
        distances[artifact.formula_text()] = epic_distance(
            artifact.batch_reward(), truth.batch_reward(), heldout, n_eval=2000, n_mean=256)
    values = list(distances.values())
    assert sum(d <= 0.05 for d in values) >= 7, distances
    assert np.median(values) <= 0.05, distances


def test_rounding_moves_the_other_weights_with_the_rounded_one():
    """Rounding the largest weight to one or two digits is paid for by refitting the rest, so
    the written formula is short and keeps the fitted ratio between terms (all preferences
    identify) to within 1%."""
    data = walk(seed=0)
    x, y = data.observations[:, 0], data.observations[:, 1]
    reward = 0.93 * x - 4.7 * (y < 0.3)
    data = data.replace(preferences=bradley_terry_preferences(
        data, reward, 1500, 10, temperature=0.5, seed=0, soft=True))
    learner = SymbolicRewardLearner(library=TermLibrary(user_terms=["(y < 0.3)"])).fit(
        data, FEATURES)
    names = [c.text for c, _ in learner.model_.terms()]
    assert sorted(names) == ["(y < 0.3)", "x"]
    fitted = dict(zip(names, learner.model_.fit.coef, strict=True))
    written = dict(zip(names, learner.coefficients_, strict=True))
    largest = max(written, key=lambda name: abs(written[name]))
    assert written[largest] == round_significant(written[largest], 2)
    assert written[largest] != pytest.approx(fitted[largest], rel=1e-3)
    ratio = written["(y < 0.3)"] / written["x"]
    assert ratio == pytest.approx(fitted["(y < 0.3)"] / fitted["x"], rel=0.01)


def test_a_structure_search_is_judged_on_units_it_never_saw():
    """A quarter of the units are held out of the evolutionary search and the final front is
    cross-validated on folds of those alone (models fitted on every other unit): a formula that
    fits the searched pairs' label noise gains nothing there. Too little data to spare: every
    unit does both."""
    data = walk(n=3000, seed=4)
    reward = planted(data)
    data = data.replace(preferences=bradley_terry_preferences(data, reward, 400, 10, seed=5))
    learner = SymbolicRewardLearner(engine="evolve", population=30, generations=4,
                                    time_limit=None, seed=0).fit(data, FEATURES)
    objective = learner.objective_
    held, searched = selection_split(objective, learner.n_folds, learner.seed)
    share = objective.n_rows(held) / objective.n_rows()
    assert SELECTION_SHARE - 0.05 <= share <= SELECTION_SHARE + 0.05, share
    assert np.intersect1d(held, searched).size == 0
    # No pair the search sees reads a held-out segment.
    seen = objective.members(searched)
    assert not np.isin(objective.segment_a[seen], held).any()
    assert not np.isin(objective.segment_b[seen], held).any()
    assert np.union1d(held, searched).tolist() == list(range(objective.n_units))
    assert learner.artifact_.provenance["search"]["held_out_units"] == len(held)
    chosen = learner.front_.best
    texts = [candidate.text for candidate, _ in learner.model_.terms()]
    columns = text_columns(objective.dataset, FEATURES, texts)
    support = tuple(range(len(texts)))
    units = np.arange(objective.n_units)
    losses = [fit_loss(objective.problem(columns, None, fold),
                       fit(objective.problem(columns, None, np.setdiff1d(units, fold)), support))
              for fold in objective.folds(learner.n_folds, learner.seed, held)]
    np.testing.assert_allclose(chosen.fold_losses, losses, rtol=1e-6)
    tiny = data.replace(preferences=bradley_terry_preferences(data, reward, 6, 10, seed=5))
    tiny_objective = SymbolicRewardLearner().fit(tiny, FEATURES).objective_
    held, searched = selection_split(tiny_objective, 5, 0)
    assert held.tolist() == searched.tolist() == list(range(tiny_objective.n_units))


def test_soft_labels_from_a_library_reward_give_back_its_small_terms():
    """Soft labels are the Bradley–Terry probabilities of ``-1.5*x**2 + 0.8*y + 0.02*z``: the
    true support reaches the labels' entropy, so the small ``z`` term (inside 1% of the
    deviance: without the floor the rule drops it) is kept rather than traded for a simpler
    formula the labels contradict. The floor is taken on the cross-validation folds' own
    rows."""
    data = walk(seed=6)
    x, y, z = data.observations.T
    reward = -1.5 * x**2 + 0.8 * y + 0.02 * z
    data = data.replace(preferences=bradley_terry_preferences(data, reward, 1500, 10,
                                                              temperature=0.5, seed=7,
                                                              soft=True))
    learner = SymbolicRewardLearner(seed=0).fit(data, FEATURES)
    terms = learned_terms(learner)
    assert set(terms) == {"x**2", "y", "z"}, terms
    assert terms["z"] / terms["x**2"] == pytest.approx(0.02 / -1.5, rel=0.05)
    objective = learner.objective_
    folds = Folds(tuple(objective.folds(5, 0, np.arange(0, objective.n_units, 4))), 1)
    learned_from = np.zeros((objective.dataset.n, 0))  # the labelled rows
    problems = [objective.problem(learned_from, None, fold) for fold in folds]
    expected = np.average([p.loss_floor() for p in problems], weights=[p.n_rows for p in problems])
    assert folds_floor(objective, None, folds) == pytest.approx(expected, rel=1e-12)
    assert folds_floor(objective, None, folds) != pytest.approx(
        objective.problem(learned_from).loss_floor(), rel=1e-6)


def one_reference(n_pairs: int = 40) -> Dataset:
    """Every pair compares a clip with the same reference clip: any fold that validates a pair
    holds the reference, so no pair is left to train on."""
    data = walk(n=2000)
    prefs = bradley_terry_preferences(data, planted(data), n_pairs, 10, seed=1)
    return data.replace(preferences=Preferences(np.repeat(prefs.a[:1], n_pairs, axis=0),
                                                prefs.b, prefs.label))


def test_data_that_cannot_be_cross_validated_is_a_data_error_that_says_what_to_do():
    data = one_reference()
    with pytest.raises(DataError) as raised:
        SymbolicRewardLearner(seed=0).fit(data, FEATURES)
    message = str(raised.value)
    assert "\n" not in message
    assert re.match(r"<in-memory dataset>: too little data to cross-validate: 40 pairs over "
                    r"\d+ segments give 0 of 5 folds", message), message
    assert "--folds 2" in message and "--selection simplest" in message


def test_the_simplest_rule_learns_without_cross_validation_and_says_so():
    learner = SymbolicRewardLearner(seed=0, selection="simplest").fit(one_reference(),
                                                                      FEATURES)
    report = learner.artifact_.provenance["cross_validation"]
    assert report["scored_by"] == "training loss" and report["folds"] == []
    entry = learner.front_.best
    assert entry.loss == pytest.approx(entry.train_loss, rel=1e-12)


def test_folds_report_what_each_trains_and_validates_on():
    """A pool where each segment is in about five pairs: one partition of the segments
    validates about half the pairs, so further partitions are cut until nine in ten are
    validated by some fold (three at most). The report gives each fold's training and
    validation pairs, and the pairs no fold of any partition validates."""
    data = walk()
    prefs = bradley_terry_preferences(data, planted(data), 300, 10, seed=2, pairs_per_segment=5)
    objective = PreferenceObjective(data.replace(preferences=prefs))
    learner = SymbolicRewardLearner(seed=0).fit(objective.dataset, FEATURES)
    report = learner.artifact_.provenance["cross_validation"]
    assert report["scored_by"] == "cross-validation" and report["units"] == "segments"
    assert report["partitions"] == MAX_PARTITIONS and len(report["folds"]) == 5 * MAX_PARTITIONS
    assert all(train + held <= 300 and held > 0 for train, held in report["folds"])
    first = report["folds"][:5]
    assert 0.4 < sum(held for _, held in first) / 300 < 0.9, report
    seen = np.zeros(300, dtype=bool)
    for fold in validation_folds(objective, 5, 0):
        seen[objective.members(fold)] = True
    assert report["never_validated"] == 300 - seen.sum() < 0.3 * 300


def test_one_partition_where_it_validates_every_pair():
    """Fresh segments: every pair sits inside one fold, and a second partition would only
    repeat the same pairs."""
    data = walk()
    prefs = bradley_terry_preferences(data, planted(data), 200, 10, seed=2)
    folds = validation_folds(PreferenceObjective(data.replace(preferences=prefs)), 5, 0)
    assert folds.partitions == 1 and len(folds) == 5


def test_a_reward_for_every_step_is_learned_from_episodes_of_different_lengths():
    """Comparing whole episodes of different lengths, a constant paid each step is what tells
    a long episode from a short one (an alive bonus): it is offered as a candidate and chosen.
    With segments of one length it changes no return difference and is not offered."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 60, size=200)
    n = int(lengths.sum())
    obs = rng.normal(size=(n, 3))
    timeouts = np.zeros(n, dtype=bool)
    timeouts[np.cumsum(lengths) - 1] = True
    data = Dataset(observations=obs, actions=rng.normal(size=(n, 1)), next_observations=obs,
                   terminals=np.zeros(n, dtype=bool), timeouts=timeouts)
    alive = np.ones(n)
    whole = data.replace(preferences=bradley_terry_preferences(data, alive, 400, None, seed=1,
                                                               temperature=2.0))
    learner = SymbolicRewardLearner(seed=0).fit(whole, FEATURES)
    assert learner.objective_.identifies_per_step_constant()
    terms = learned_terms(learner)
    assert "1" in terms and terms["1"] > 0, terms
    windows = data.replace(preferences=bradley_terry_preferences(data, alive + obs[:, 0], 400,
                                                                 5, seed=1))
    learner = SymbolicRewardLearner(seed=0).fit(windows, FEATURES)
    assert not learner.objective_.identifies_per_step_constant()
    assert "1" not in {c.text for c in learner.candidates_}


class FixedTerms:
    """A structure-search engine that proposes given term sets: the registry's protocol is all
    a new engine needs."""

    help = "proposes given term sets"

    def __init__(self, term_sets, keeps_locked_terms=True):
        self.term_sets = term_sets
        self.keeps_locked_terms = keeps_locked_terms
        self.offsets = []

    def budget(self, population, generations, time_limit):
        return {"time_limit": time_limit}

    def check_available(self):
        return None

    def propose(self, objective, matrix, names, *, offset, seeds, units, budget, settings):
        from symreward.search.engines import Proposal

        self.offsets.append(offset)
        symbols = {n: sympy.Symbol(n, real=True) for n in names}
        return Proposal([[sympy.sympify(t, locals=symbols) for t in terms]
                         for terms in self.term_sets], {"proposed": len(self.term_sets)})


def test_an_engine_in_the_registry_is_used_by_the_learner(monkeypatch):
    """A term the library lacks (``sin(3*x)``) reaches the front and the artifact through a
    registered engine, its report reaches provenance, and locked terms reach it as a fixed
    reward per transition learned from (those inside labelled segments)."""
    from symreward.search import engines

    data = walk()
    x, y, _ = data.observations.T
    data = data.replace(preferences=bradley_terry_preferences(
        data, np.sin(3 * x) + 0.8 * y, 600, 10, seed=3, temperature=0.3))
    engine = FixedTerms([["sin(3*x)", "y"]])
    monkeypatch.setitem(engines.ENGINES, "fixed", engine)
    base = RewardArtifact(name="b", features=FEATURES,
                          terms=[Term("y_term", "0.8*y", locked=True)])
    learner = SymbolicRewardLearner(engine="fixed", seed=0).fit(data, FEATURES, base=base)
    assert "sin(3*x)" in learner.artifact_.formula_text()
    assert learner.artifact_.provenance["search"]["proposed"] == 1
    assert len(engine.offsets) == 1
    assert np.allclose(engine.offsets[0], 0.8 * learner.objective_.dataset.observations[:, 1])


def test_an_engine_that_cannot_keep_locked_terms_refuses_them_before_any_work(monkeypatch):
    from symreward.errors import OptionError
    from symreward.search import engines

    engine = FixedTerms([["x"]], keeps_locked_terms=False)
    monkeypatch.setitem(engines.ENGINES, "fixed", engine)
    base = RewardArtifact(name="b", features=FEATURES,
                          terms=[Term("y_term", "0.8*y", locked=True)])
    with pytest.raises(OptionError, match=r"engine='fixed': cannot keep locked terms \(y_term"):
        SymbolicRewardLearner(engine="fixed").fit(walk(n=400), FEATURES, base=base)
    assert engine.offsets == []
