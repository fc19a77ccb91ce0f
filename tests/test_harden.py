"""Findings files, constraints of a fit, and ``harden``: counterexamples and accepted findings
turned into constraints, the reward re-learned and checked, its lineage recorded."""

import re
from pathlib import Path

import pytest
from sklearn.base import clone
from support import random_walk, true_reward

from symreward.artifact import RewardArtifact, Term
from symreward.cli import main
from symreward.constraints import Constraints, read_constraints
from symreward.data import bradley_terry_preferences, save_dataset
from symreward.errors import InvariantError, OptionError, SymrewardError
from symreward.features import FeatureSet
from symreward.findings import (
    SCHEMA,
    Finding,
    FindingsError,
    findings_from_check,
    findings_from_exploits,
    read_findings,
    write_findings,
)
from symreward.harden import harden, learner_from
from symreward.invariants import check
from symreward.invariants.points import Reward
from symreward.learner import SymbolicRewardLearner, learn

FEATURES = FeatureSet({"x": "obs[0]", "y": "obs[1]"})

HAND = """\
schema = "symreward/1"
name = "hand"

[features]
x = "obs[0]"
y = "obs[1]"

[[terms]]
name = "rise"
expr = "y"

[[terms]]
name = "bowl"
expr = "-x**2"

[[invariants]]
rule = "decreasing"
of = "y"

[[invariants]]
rule = "bounded"
hi = 0

[[invariants]]
rule = "independent"
of = "y"

[[invariants]]
rule = "increasing"
of = "x"
domain = { x = [0.5, 2] }
"""


@pytest.fixture(scope="module")
def data():
    """Preferences from ``-1.5 x**2 + 0.8 y`` over a random walk: the reward rises with y."""
    walk = random_walk(n=1200)
    return walk.replace(preferences=bradley_terry_preferences(walk, true_reward(walk), 300,
                                                              10, seed=1))


@pytest.fixture(scope="module")
def learned(data):
    return learn(data, FEATURES, seed=0)


@pytest.fixture
def hand(tmp_path):
    path = tmp_path / "hand.toml"
    path.write_text(HAND)
    return RewardArtifact.load(path)


def state(x, y):
    return {"x": float(x), "y": float(y)}


# ---------------------------------------------------------------------------- findings files


FINDINGS = [
    Finding("check-0", "check", "decreasing", "a pair", state(0.5, 1.25), "below",
            other=state(0.5, 1.0), margin=0.0),
    Finding("check-1", "check", "bounded", "too high", state(-1e-300, 3.0), "at_most",
            bound=0.0, accept=True),
    Finding("audit-max", "audit", "exploit-maximum", "", state(1e6, -2.5), "at_least",
            bound=-1.5),
    Finding("hand-1", "hand", "a person", "strict", state(0.1, 0.2), "below",
            other=state(0.3, 0.4), accept=True),
]


def test_findings_round_trip_and_tell_a_person_what_to_do(tmp_path, hand):
    path = tmp_path / "found.toml"
    write_findings(path, hand, FINDINGS)
    text = path.read_text()
    assert text.startswith("# Findings for ") and "accept = true" in text.split("schema")[0]
    read = read_findings(path, hand)
    assert read.findings == FINDINGS
    assert read.accepted == [FINDINGS[1], FINDINGS[3]]
    assert read.artifact == hand.source and read.artifact_hash == hand.content_hash()
    write_findings(path, hand, read.findings)  # written again: the same bytes
    assert path.read_text() == text


VALID = f"""\
schema = "{SCHEMA}"
artifact = "hand.toml"

[[findings]]
id = "a"
source = "check"
probe = "bounded"
state = {{ x = 1.0, y = 2.0 }}
want = "at_most"
bound = 0.0

[[findings]]
id = "b"
source = "audit"
probe = "exploit-maximum"
description = "far away"
state = {{ x = 1.0, y = 2.0 }}
other = {{ x = 0.0, y = 0.0 }}
want = "below"
accept = true
"""


@pytest.mark.parametrize("old, new, message", [
    ('schema = "symreward-findings/1"', 'schema = "other/2"',
     "schema: 'other/2' is not supported"),
    ('schema = "symreward-findings/1"\n', "", "schema: missing"),
    ('artifact = "hand.toml"', 'artifact = 3', "artifact: must be a string, not int"),
    ('artifact = "hand.toml"', 'extra = 1', "unknown top-level key 'extra'"),
    ('id = "b"', 'id = "a"', "findings[1].id: duplicate id 'a' (first at findings[0])"),
    ('id = "b"', 'id = 7', "findings[1].id: must be a string, not int"),
    ('id = "b"\n', '', "findings[1]: missing 'id'"),
    ('source = "audit"', 'source = "oracle"', "findings[1].source: 'oracle' is not one of"),
    ('probe = "exploit-maximum"', 'probe = ["x"]', "findings[1].probe: must be a string"),
    ('accept = true', 'accept = "yes"', "findings[1].accept: must be true or false, not 'yes'"),
    ('accept = true', 'accept = true\ncolour = "red"', "findings[1]: unknown key 'colour'"),
    ('want = "below"', 'want = "above"', "findings[1].want: 'above' is not one of below"),
    ('other = { x = 0.0, y = 0.0 }\n', '', "findings[1].other: needed for want = \"below\""),
    ('other = { x = 0.0, y = 0.0 }', 'other = { x = 0.0, y = 0.0 }\nbound = 1.0',
     "findings[1].bound: only for want = \"at_most\" or \"at_least\""),
    ('accept = true', 'accept = true\nmargin = -1.0', "findings[1].margin: must be a finite"),
    ('other = { x = 0.0, y = 0.0 }', 'other = { x = 0.0, z = 0.0 }',
     "findings[1].other.z: unknown feature 'z' (known: x, y)"),
    ('other = { x = 0.0, y = 0.0 }', 'other = { x = 0.0 }',
     "findings[1].other: missing a value for feature 'y'"),
    ('other = { x = 0.0, y = 0.0 }', 'other = { x = 0.0, y = "high" }',
     "findings[1].other.y: must be a finite number, not 'high'"),
    ('other = { x = 0.0, y = 0.0 }', 'other = { x = 0.0, y = nan }',
     "findings[1].other.y: must be a finite number, not nan"),
    ('other = { x = 0.0, y = 0.0 }', 'other = { x = 0.0, y = true }',
     "findings[1].other.y: must be a finite number, not True"),
    ('other = { x = 0.0, y = 0.0 }', 'other = 3', "findings[1].other: must be a table"),
    ('want = "at_most"\nbound = 0.0', 'want = "at_most"',
     "findings[0].bound: needed for want = 'at_most'"),
    ('bound = 0.0', 'bound = "zero"', "findings[0].bound: must be a finite number, not 'zero'"),
    ('bound = 0.0', 'bound = 0.0\nother = { x = 0.0, y = 0.0 }',
     "findings[0].other: only for want = \"below\""),
    ('bound = 0.0', 'bound = 0.0\nmargin = 0.0', "findings[0].margin: only for want"),
    ('schema', 'schema = [', "not valid TOML"),
])
def test_every_problem_names_the_file_the_finding_and_the_field(tmp_path, hand, old, new,
                                                               message):
    assert old in VALID
    path = tmp_path / "bad.toml"
    path.write_text(VALID.replace(old, new, 1))
    with pytest.raises(FindingsError) as raised:
        read_findings(path, hand)
    assert str(path) in str(raised.value)
    assert message in str(raised.value), str(raised.value)


def test_all_problems_are_listed_at_once_and_a_missing_file_is_named(tmp_path, hand):
    path = tmp_path / "bad.toml"
    path.write_text(VALID.replace('want = "below"', 'want = 1').replace('source = "check"',
                                                                       'source = "x"'))
    with pytest.raises(FindingsError, match="2 problems") as raised:
        read_findings(path, hand)
    assert "findings[0].source" in str(raised.value)
    assert "findings[1].want: must be a string" in str(raised.value)
    path.write_text(VALID.split("[[findings]]")[0] + "findings = 3\n")
    with pytest.raises(FindingsError, match="findings: must be an array of"):
        read_findings(path, hand)
    path.write_text(VALID.split("[[findings]]")[0] + "findings = [3]\n")
    with pytest.raises(FindingsError, match=r"findings\[0\]: must be a table"):
        read_findings(path, hand)
    with pytest.raises(FindingsError, match=re.escape(f"{tmp_path / 'none.toml'}: no such")):
        read_findings(tmp_path / "none.toml", hand)


# ------------------------------------------------------------------------- findings of check


def test_check_findings_hold_each_violated_counterexample_in_the_order_the_rule_wants(hand):
    results = check(hand, time_budget=2.0, examples=100)
    assert [r.status for r in results] == ["violated"] * 4
    findings = findings_from_check(hand, results)
    assert [f.id for f in findings] == ["check-0", "check-1", "check-3"]  # none for independent
    reward = Reward(hand)
    decreasing, bounded, increasing = findings
    assert decreasing.want == "below" and decreasing.margin == 0.0 and not decreasing.accept
    assert decreasing.state == results[0].counterexample
    assert decreasing.other == results[0].other["state"]
    assert decreasing.state["y"] > decreasing.other["y"]  # the higher y should score lower
    assert reward.at(decreasing.state) > reward.at(decreasing.other)
    assert bounded.want == "at_most" and bounded.bound == 0.0
    assert bounded.state == results[1].counterexample and reward.at(bounded.state) > 0
    # increasing: the state with the lower x is the one that should score below
    assert increasing.state == results[3].other["state"]
    assert increasing.other == results[3].counterexample
    assert increasing.state["x"] < increasing.other["x"]
    assert reward.at(increasing.state) > reward.at(increasing.other)


def test_check_findings_flag_writes_the_counterexamples_and_keeps_exit_1(tmp_path, hand,
                                                                         capsys):
    out = tmp_path / "found.toml"
    assert main(["check", hand.source, "--findings", str(out), "--examples", "50"]) == 1
    printed = capsys.readouterr().out
    assert f"wrote {out}: 3 findings" in printed and "independent" in printed
    findings = read_findings(out, hand).findings
    results = check(hand, time_budget=2.0, examples=50)
    assert findings[1].state == results[1].counterexample
    assert not any(f.accept for f in findings)
    (tmp_path / "ok.toml").write_text(HAND.split("[[invariants]]")[0]
                                      + '[[invariants]]\nrule = "bounded"\nhi = 100\n'
                                      + 'domain = { x = [-1, 1], y = [-1, 1] }\n')
    assert main(["check", str(tmp_path / "ok.toml"), "--findings", str(out)]) == 0
    assert read_findings(out, hand).findings == []


def test_an_exploit_far_from_the_data_above_its_best_is_a_finding(hand):
    exploits = {"maximum": {"value": 9.0, "bound": 9.0, "gap": 0.0, "certified": True,
                            "state": state(0.0, 9.0), "boxes": 12, "seconds": 0.1,
                            "distance_to_data": 4.2, "nearest_index": 7, "data_best": 2.0,
                            "above_data_best": 7.0},
                "minimum": None, "unbounded_terms": [], "out_of_distribution": None,
                "domain": {}}
    best = state(0.1, 2.0)
    (below,) = findings_from_exploits(hand, exploits, best_state=best)
    assert (below.id, below.source, below.want, below.other) == ("audit-max", "audit",
                                                                  "below", best)
    assert below.state == state(0.0, 9.0) and not below.accept
    (capped,) = findings_from_exploits(hand, exploits)
    assert (capped.want, capped.bound, capped.other) == ("at_most", 2.0, None)
    near = {"maximum": exploits["maximum"] | {"distance_to_data": 0.3}}
    inside = {"maximum": exploits["maximum"] | {"value": 1.5}}
    assert findings_from_exploits(hand, near) == findings_from_exploits(hand, inside) == []
    assert findings_from_exploits(hand, {"maximum": None}) == []
    wrong = {"maximum": exploits["maximum"] | {"state": {"x": 0.0, "speed": 9.0}}}
    with pytest.raises(FindingsError, match="exploits.maximum.state.speed: unknown feature"):
        findings_from_exploits(hand, wrong)


# ------------------------------------------------------------------------- constraints of a fit


def test_a_monotone_invariant_the_data_break_holds_once_it_constrains_the_fit(data, learned):
    invariant = {"rule": "decreasing", "of": "y"}
    unconstrained = RewardArtifact(learned.name, learned.features, learned.terms, [invariant],
                                   dict(learned.provenance))
    assert check(unconstrained, data)[0].status == "violated"
    learner = SymbolicRewardLearner(seed=0, constraints=Constraints(invariants=[invariant]))
    constrained = learner.fit(data, FEATURES).artifact_
    assert constrained.invariants == [invariant]
    assert constrained.provenance["constraints"] == {"invariants": 1, "findings": [],
                                                     "unmet": []}
    assert [r.status for r in check(constrained, data)] in (["proved"], ["held"])


def test_constraints_are_an_estimator_parameter(data):
    constraints = Constraints(invariants=[{"rule": "bounded", "hi": 0}], margin=0.01)
    learner = SymbolicRewardLearner(constraints=constraints, max_terms=3)
    copy = clone(learner)
    assert copy.get_params()["constraints"] == constraints
    assert copy.get_params()["constraints"] is not constraints
    copy.set_params(constraints=None)
    assert copy.constraints is None and learner.constraints is constraints
    with pytest.raises(OptionError, match="constraints"):
        SymbolicRewardLearner(constraints=[{"rule": "bounded"}]).fit(data, FEATURES)
    with pytest.raises(OptionError, match="finding_weight"):
        SymbolicRewardLearner(constraints=Constraints(finding_weight=-1.0)).fit(data, FEATURES)
    soft = Constraints(findings=[FINDINGS[1]], finding_weight=10.0)
    rewards = data.replace(rewards=true_reward(data))
    with pytest.raises(OptionError, match="only with the preferences and rankings"):
        SymbolicRewardLearner("rewards", constraints=soft).fit(rewards, FEATURES)
    with pytest.raises(InvariantError, match=r"invariants\[0\]\.of: must use exactly one"):
        SymbolicRewardLearner(constraints=Constraints(
            invariants=[{"rule": "decreasing", "of": "x*y"}])).fit(data, FEATURES)


def test_bounds_on_the_reward_at_a_state_hold_with_the_intercept(data):
    rewards = data.replace(rewards=true_reward(data) + 3.0)
    free = learn(rewards, FEATURES, objective="rewards")
    at = state(0.0, 2.0)
    assert Reward(free).at(at) > 4.0
    cap = Finding("cap", "hand", "a person", "", at, "at_most", bound=2.0, accept=True)
    floor = Finding("floor", "hand", "a person", "", state(2.0, 0.0), "at_least", bound=-1.0,
                    accept=True)
    capped = learn(rewards, FEATURES, objective="rewards",
                   constraints=Constraints(findings=[cap, floor]))
    reward = Reward(capped)
    assert reward.at(at) <= 2.0 + 1e-9 and reward.at(floor.state) >= -1.0 - 1e-9
    assert capped.provenance["constraints"]["unmet"] == []
    assert "bias" in capped.term_names  # the intercept is part of the bounded reward


def test_a_soft_finding_weighs_like_labelled_pairs(data):
    finding = Finding("flip", "hand", "a person", "", state(0.0, 1.0), "below",
                      other=state(0.5, 0.0), accept=True)

    def gap(weight):
        artifact = learn(data, FEATURES, constraints=Constraints(findings=[finding],
                                                                 finding_weight=weight))
        reward = Reward(artifact)
        return reward.at(finding.state) - reward.at(finding.other), artifact

    light, _ = gap(1.0)
    heavy, artifact = gap(1e4)
    assert light > 0 > heavy  # one pair of 300 does not flip the order; 10^4 pairs do
    assert artifact.provenance["constraints"]["findings_as"] == "pairs"


def test_constraints_file_holds_invariants_and_or_findings(tmp_path, hand):
    path = tmp_path / "c.toml"
    path.write_text('[[invariants]]\nrule = "decreasing"\nof = "y"\n')
    assert read_constraints(path, FEATURES).invariants == [{"rule": "decreasing", "of": "y"}]
    write_findings(path, hand, FINDINGS)
    with path.open("a") as fh:
        fh.write('\n[[invariants]]\nrule = "bounded"\nhi = 1\n')
    both = read_constraints(path, FEATURES)
    assert both.findings == FINDINGS and both.invariants == [{"rule": "bounded", "hi": 1}]
    assert both.accepted == [FINDINGS[1], FINDINGS[3]]
    for text, message in [
            ('[[invariants]]\nrule = "steep"\n', r"c.toml: invariants\[0\].rule: 'steep'"),
            ('[[invariants]]\nrule = "bounded"\nhi = 1\n[[invariants]]\nrule = "sign"\n'
             'is = "up"\n', r"c.toml: invariants\[1\].is: 'up' is not one of"),
            ('[[invariants]]\nrule = "decreasing"\nof = "speed"\n', r"invariants\[0\].of"),
            ('rules = 1\n', "unknown top-level key 'rules'"),
            ('', "no \\[\\[invariants\\]\\] or \\[\\[findings\\]\\]"),
            ('[[invariants\n', "not valid TOML")]:
        path.write_text(text)
        with pytest.raises(SymrewardError, match=message):
            read_constraints(path, FEATURES)


# --------------------------------------------------------------------------------- harden


@pytest.fixture(scope="module")
def base(data, learned, tmp_path_factory):
    """The learned reward with a locked term a person wrote, saved and loaded."""
    artifact = RewardArtifact(learned.name, learned.features,
                              [Term("effort", "-0.25 * abs(x)", locked=True, note="by hand"),
                               *learned.terms], [], dict(learned.provenance))
    path = tmp_path_factory.mktemp("base") / "base.toml"
    artifact.save(path)
    return RewardArtifact.load(path)


FLIP = Finding("hand-flip", "hand", "a person", "y up high is worse than x off centre",
               state(0.0, 1.0), "below", other=state(0.5, 0.0), accept=True)
IGNORED = Finding("check-9", "check", "bounded", "", state(0.0, 0.0), "at_most", bound=-50.0)


@pytest.fixture(scope="module")
def hardened(base, data):
    return harden(base, data, [FLIP, IGNORED], time_budget=1.0, examples=50)


def test_an_accepted_finding_flips_the_order_of_two_states(base, hardened):
    before = Reward(base)
    assert before.at(FLIP.state) > before.at(FLIP.other)
    after = Reward(hardened.artifact)
    assert after.at(FLIP.state) < after.at(FLIP.other)
    assert hardened.passed and hardened.unmet == [] and hardened.rounds == 1
    assert hardened.accepted == [FLIP]  # the finding not accepted is no constraint
    assert after.at(IGNORED.state) > IGNORED.bound


def test_harden_keeps_locked_terms_and_records_lineage(base, hardened):
    artifact = hardened.artifact
    assert artifact.terms[0] == base.terms[0]
    last = artifact.history[-1]
    assert last["parent"] == base.content_hash() == artifact.provenance["parent"]
    assert last["change"] == "harden: 1 accepted finding, 0 invariants as constraints (1 round)"
    assert (last["findings"], last["invariants"], last["rounds"]) == (1, 0, 1)
    assert artifact.provenance["harden"] == {
        "from": base.content_hash(), "findings_accepted": ["hand-flip"], "invariants": 0,
        "counterexamples": 0, "rounds": 1, "passed": True, "unmet": []}
    assert artifact.provenance["options"] == base.provenance["options"]


def test_harden_is_deterministic(base, data, hardened):
    again = harden(base, data, [FLIP, IGNORED], time_budget=1.0, examples=50)
    assert again.artifact.dumps() == hardened.artifact.dumps()


def test_harden_uses_the_invariants_adds_counterexamples_and_says_what_is_not_met(data,
                                                                                 learned):
    """``bounded hi = 0`` against data whose reward rises with y without bound: the sign rules
    cannot decide ``y``, so check finds counterexamples, each added as a constraint of the
    next round; what is still violated after the last round is named."""
    artifact = RewardArtifact(learned.name, learned.features, learned.terms,
                              [{"rule": "bounded", "hi": 0}], dict(learned.provenance))
    result = harden(artifact, data, rounds=2, time_budget=1.0, examples=50)
    assert result.rounds == 2 and len(result.counterexamples) == 1
    added = result.counterexamples[0]
    assert (added.id, added.want, added.bound, added.accept) == ("round1-check-0", "at_most",
                                                                 0.0, True)
    assert Reward(result.artifact).at(added.state) <= 1e-9
    assert result.artifact.provenance["constraints"]["findings"] == ["round1-check-0"]
    assert result.artifact.history[-1]["counterexamples"] == 1
    assert result.passed == (not any(r.status == "violated" for r in result.results))
    if not result.passed:
        assert result.unmet == ["invariant [0] bounded (hi = 0): violated"]


def test_learner_from_reads_the_options_in_provenance(data):
    artifact = learn(data, FEATURES, seed=4, max_terms=3, selection="best", n_folds=3,
                     library=None, rounding_tolerance=0.01)
    learner = learner_from(artifact)
    params = learner.get_params()
    assert (params["seed"], params["max_terms"], params["selection"], params["n_folds"],
            params["rounding_tolerance"], params["name"]) == (4, 3, "best", 3, 0.01,
                                                              artifact.name)
    assert learner.options() == artifact.provenance["options"]
    artifact.provenance["options"]["max_terms"] = 0
    with pytest.raises(SymrewardError, match="provenance.options: max_terms=0"):
        learner_from(artifact)


def test_learner_from_a_hand_written_artifact_takes_the_defaults(hand):
    defaults = SymbolicRewardLearner().get_params()
    assert learner_from(hand).get_params() == defaults | {"name": "hand"}


def test_learn_from_uses_the_old_invariants_as_constraints(data, learned, tmp_path):
    old = RewardArtifact(learned.name, learned.features, learned.terms,
                         [{"rule": "decreasing", "of": "y"}], dict(learned.provenance))
    new = learn(data, FEATURES, base=old)
    assert new.invariants == old.invariants
    assert new.provenance["constraints"]["invariants"] == 1
    assert not any(r.status == "violated" for r in check(new, data))


# ------------------------------------------------------------------------------------ CLI


def test_cli_learn_constraints_and_harden_end_to_end(tmp_path, data, cli):
    save_dataset(data, tmp_path / "walk.npz")
    (tmp_path / "f.toml").write_text('[features]\nx = "obs[0]"\ny = "obs[1]"\n')
    (tmp_path / "c.toml").write_text('[[invariants]]\nrule = "decreasing"\nof = "y"\n')
    done = cli("learn", "walk.npz", "--features", "f.toml", "--constraints", "c.toml",
               "-o", "r.toml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    learned_path = tmp_path / "r.toml"
    assert RewardArtifact.load(learned_path).invariants == [{"rule": "decreasing", "of": "y"}]
    write_findings(tmp_path / "found.toml", RewardArtifact.load(learned_path), [FLIP])
    done = cli("harden", "r.toml", "walk.npz", "--findings", "found.toml", "-o", "r2.toml",
               "--examples", "50", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "hardened with 1 accepted finding and 1 invariant in 1 round" in done.stdout
    assert "wrote r2.toml" in done.stdout
    hardened = RewardArtifact.load(tmp_path / "r2.toml")
    assert hardened.history[-1]["change"].startswith("harden: 1 accepted finding")
    done = cli("log", "r2.toml", cwd=tmp_path)
    assert "harden: 1 accepted finding, 1 invariant as constraints (1 round)" in done.stdout


def test_cli_harden_that_cannot_meet_a_constraint_exits_1_and_still_writes(tmp_path, data,
                                                                           learned, capsys):
    save_dataset(data, tmp_path / "walk.npz")
    artifact = RewardArtifact(learned.name, learned.features, learned.terms, [],
                              dict(learned.provenance))
    artifact.save(tmp_path / "r.toml")
    # the same state strictly below itself: no reward can
    impossible = Finding("self", "hand", "a person", "", state(0.0, 1.0), "below",
                         other=state(0.0, 1.0), accept=True)
    write_findings(tmp_path / "found.toml", artifact, [impossible])
    out = tmp_path / "r2.toml"
    code = main(["harden", str(tmp_path / "r.toml"), str(tmp_path / "walk.npz"), "--findings",
                 str(tmp_path / "found.toml"), "-o", str(out), "--examples", "20"])
    printed = capsys.readouterr().out
    assert code == 1
    assert "not met:\n  finding self: R(state) = " in printed and "is not below" in printed
    assert out.exists() and RewardArtifact.load(out).provenance["harden"]["passed"] is False


@pytest.mark.parametrize("extra, message", [
    (["--rounds", "0"], "--rounds 0: must be a whole number >= 1"),
    (["--margin", "-1"], "--margin -1.0: must be"),
    (["--finding-weight", "0"], "--finding-weight 0.0: must be"),
    (["--findings", "missing.toml"], "missing.toml: no such file"),
])
def test_cli_harden_bad_input_exit_2(tmp_path, data, learned, capsys, extra, message):
    save_dataset(data, tmp_path / "walk.npz")
    learned.save(tmp_path / "r.toml")
    code = main(["harden", str(tmp_path / "r.toml"), str(tmp_path / "walk.npz"), "-o",
                 str(tmp_path / "out.toml"), *[str(Path(tmp_path, e)) if e.endswith(".toml")
                                                else e for e in extra]])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out.toml").exists()


def test_cli_learn_bad_constraints_exit_2(tmp_path, data, capsys):
    save_dataset(data, tmp_path / "walk.npz")
    (tmp_path / "f.toml").write_text('[features]\nx = "obs[0]"\ny = "obs[1]"\n')
    (tmp_path / "c.toml").write_text('[[invariants]]\nrule = "decreasing"\nof = "z"\n')
    code = main(["learn", str(tmp_path / "walk.npz"), "--features", str(tmp_path / "f.toml"),
                 "--constraints", str(tmp_path / "c.toml"), "-o", str(tmp_path / "r.toml")])
    assert code == 2
    assert re.search(r"c\.toml: invariants\[0\]\.of: .*'z'", capsys.readouterr().err)
    assert not (tmp_path / "r.toml").exists()


def test_margin_is_the_least_gap_of_a_hard_below(data):
    finding = Finding("gap", "hand", "a person", "", state(0.0, 1.0), "below",
                      other=state(0.5, 0.0), accept=True)
    artifact = learn(data, FEATURES, constraints=Constraints(findings=[finding], margin=0.5))
    reward = Reward(artifact)
    assert reward.at(finding.other) - reward.at(finding.state) >= 0.5 - 1e-9
    assert artifact.provenance["constraints"] == {"invariants": 0, "findings": ["gap"],
                                                  "findings_as": "margins", "margin": 0.5,
                                                  "unmet": []}
