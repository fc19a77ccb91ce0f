import os
from pathlib import Path

import numpy as np
import pytest

from symreward.artifact import RewardArtifact, Term
from symreward.data import Dataset
from symreward.errors import ArtifactError
from symreward.features import FeatureSet

EXAMPLE = Path(__file__).parent.parent / "examples" / "pendulum" / "reward.toml"

COMMENTED = """\
# A reward someone wrote by hand.
schema = "symreward/1"
name = "demo"   # inline comment on the name

[features]
x = "obs[0]"     # position
v = "obs[1]"

# the main term
[[terms]]
name = "stay"
expr = "-x**2"   # keep near zero

[[terms]]
name = "slow"
expr = "-0.1 * v**2"
locked = true
note = "written by a person"
"""


def test_comments_and_layout_survive_load_change_save(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text(COMMENTED)
    artifact = RewardArtifact.load(path)
    artifact.terms[1].expr = "-0.2 * v**2"
    artifact.terms.append(Term("bonus", "(x > 1)", note="new"))
    artifact.save(path)
    text = path.read_text()
    for kept in ("# A reward someone wrote by hand.", "# inline comment on the name",
                 "# position", "# the main term", "# keep near zero", 'expr = "-0.2 * v**2"',
                 'note = "written by a person"'):
        assert kept in text
    again = RewardArtifact.load(path)
    assert again.term_names == ["stay", "slow", "bonus"]
    assert again.terms[2] == Term("bonus", "(x > 1)", note="new")
    assert not again.edited_by_hand


def test_dropping_a_term_keeps_the_others_comments(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text(COMMENTED)
    artifact = RewardArtifact.load(path)
    del artifact.terms[0]
    artifact.save(path)
    text = path.read_text()
    assert "stay" not in text and "# inline comment on the name" in text
    assert RewardArtifact.load(path).term_names == ["slow"]


def test_hash_ignores_formatting_but_not_content():
    base = RewardArtifact.loads(COMMENTED)
    reformatted = RewardArtifact.loads(
        COMMENTED.replace('"-0.1 * v**2"', '"-0.1*v**2"').replace("# position", ""))
    assert base.content_hash() == reformatted.content_hash()
    changed = RewardArtifact.loads(COMMENTED.replace("-0.1 * v**2", "-0.2 * v**2"))
    assert changed.content_hash() != base.content_hash()


def test_hand_edit_is_detected(tmp_path):
    path = tmp_path / "r.toml"
    RewardArtifact.loads(COMMENTED).save(path)
    assert not RewardArtifact.load(path).edited_by_hand
    path.write_text(path.read_text().replace("-x**2", "-3*x**2"))
    edited = RewardArtifact.load(path)
    assert edited.edited_by_hand
    edited.save(path)
    assert not RewardArtifact.load(path).edited_by_hand


def test_every_problem_is_reported_with_its_line():
    bad = """\
schema = "symreward/9"
nam = "typo"

[features]
x = "obs[0]"
y = "obs[1] ^ 2"

[[terms]]
name = "a"
expr = "-x**2 + zz"

[[terms]]
name = "a"
expr = "x"
weight = 2

[[terms]]
expr = "x"

[[invariants]]
rule = "monotone"
"""
    with pytest.raises(ArtifactError) as caught:
        RewardArtifact.loads(bad, source="bad.toml")
    problems = caught.value.problems
    expected = [
        ("bad.toml:1:", "schema: 'symreward/9' is not supported"),
        ("bad.toml:2:", "unknown top-level key 'nam'"),
        ("bad.toml:6:", "features.y: '^' is not a power here: use ** for powers"),
        ("bad.toml:10:", "terms[0] 'a'.expr: unknown name 'zz'"),
        ("bad.toml:13:", "terms[1]: duplicate term name 'a'"),
        ("bad.toml:15:", "terms[1]: unknown key 'weight'"),
        ("bad.toml:17:", "terms[2]: missing 'name'"),
        ("bad.toml:21:", "invariants[0].rule: 'monotone'"),
    ]
    for location, message in expected:
        assert any(p.startswith(location) and message in p for p in problems), (message, problems)
    assert len(problems) == len(expected)


@pytest.mark.parametrize("field, text", [
    ("term", 'expr = "__import__(\'os\').system(\'touch PWNED\')"'),
    ("term", 'expr = "x.__class__.__bases__"'),
    ("term", 'expr = "(lambda: 1)()"'),
    ("term", 'expr = "x**10**10**10"'),
    ("feature", 'x = "__import__(\'os\').system(\'touch PWNED\')"'),
])
def test_code_in_an_artifact_is_refused_and_never_run(tmp_path, monkeypatch, field, text):
    monkeypatch.chdir(tmp_path)
    if field == "term":
        source = COMMENTED.replace('expr = "-x**2"', text)
    else:
        source = COMMENTED.replace('x = "obs[0]"', text)
    with pytest.raises(ArtifactError):
        RewardArtifact.loads(source)
    assert not (tmp_path / "PWNED").exists()


def test_malformed_files():
    with pytest.raises(ArtifactError, match="not valid TOML"):
        RewardArtifact.loads("schema = \n", source="x.toml")
    with pytest.raises(ArtifactError, match="missing the \\[features\\] table"):
        RewardArtifact.loads('schema = "symreward/1"\n[[terms]]\nname = "a"\nexpr = "1"\n')
    with pytest.raises(ArtifactError, match="no \\[\\[terms\\]\\]"):
        RewardArtifact.loads('schema = "symreward/1"\n[features]\nx = "obs[0]"\n')
    with pytest.raises(ArtifactError, match="terms\\[0\\].locked: must be a bool"):
        RewardArtifact.loads(COMMENTED.replace('expr = "-x**2"', 'expr = "-x**2"\nlocked = 1'))
    with pytest.raises(ArtifactError, match="no such file"):
        RewardArtifact.load("/nonexistent/reward.toml")


def test_save_is_atomic_when_the_rename_fails(tmp_path, monkeypatch):
    path = tmp_path / "r.toml"
    path.write_text(COMMENTED)
    before = path.read_bytes()
    artifact = RewardArtifact.load(path)
    artifact.terms[0].expr = "-5*x**2"

    def failing_replace(src, dst):
        raise OSError("simulated crash during rename")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="simulated crash"):
        artifact.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.toml"]


def test_artifact_built_in_code_round_trips(tmp_path):
    features = FeatureSet({"x": "obs[0]", "v": "obs[1]"})
    artifact = RewardArtifact(
        name="made", features=features, terms=[Term("a", "-x**2"), Term("b", "v", locked=True)],
        invariants=[{"rule": "bounded", "hi": 0, "domain": {"x": [-1, 1]}}],
        provenance={"objective": "preferences", "metrics": {"accuracy": 0.9}})
    path = tmp_path / "made.toml"
    artifact.save(path)
    loaded = RewardArtifact.load(path)
    assert loaded.content_hash() == artifact.content_hash()
    assert loaded.invariants == artifact.invariants
    assert loaded.provenance["metrics"] == {"accuracy": 0.9}
    assert path.read_text().startswith('schema = "symreward/1"\nname = "made"\n\n[features]\n')
    with pytest.raises(ArtifactError, match="duplicate term name 'a'"):
        RewardArtifact(name="d", features=features, terms=[Term("a", "x"), Term("a", "v")])


def test_evaluate_gives_rewards_and_term_columns():
    artifact = RewardArtifact.load(EXAMPLE)
    rng = np.random.default_rng(0)
    theta = rng.uniform(-np.pi, np.pi, 50)
    obs = np.column_stack([np.cos(theta), np.sin(theta), rng.normal(size=50)])
    act = rng.uniform(-3, 3, (50, 1))
    dataset = Dataset(observations=obs, actions=act, next_observations=obs,
                      terminals=np.zeros(50, bool), timeouts=np.zeros(50, bool))
    result = artifact.evaluate(dataset)
    expected = -(theta**2 + 0.1 * obs[:, 2] ** 2 + 0.001 * np.clip(act[:, 0], -2, 2) ** 2)
    np.testing.assert_allclose(result.rewards, expected, rtol=1e-12)
    np.testing.assert_allclose(result.term_columns.sum(axis=1), result.rewards, rtol=1e-12)
    assert result.term_names == ["upright", "spin", "effort"]
    assert result.non_finite == 0


def test_evaluate_adds_the_terms_as_the_rewards_kernel_does(recwarn):
    """Rewards come from the term columns, added left to right: the rewards kernel's bits,
    overflow and NaN included, and no numpy warning."""
    artifact = RewardArtifact(name="sums", features=FeatureSet({"x": "obs[0]", "y": "obs[1]"}),
                              terms=[Term("a", "1e300*x**2"), Term("b", "-1e300*y**2"),
                                     Term("c", "-0.5*y"), Term("d", "y**2")])
    obs = np.array([[1e5, 2.0], [1e5, 1e5], [-0.0, 0.0], [0.5, -3.0], [1e-300, 3.0]])
    dataset = Dataset(observations=obs, actions=np.zeros((5, 1)), next_observations=obs,
                      terminals=np.zeros(5, bool), timeouts=np.zeros(5, bool))
    result = artifact.evaluate(dataset)
    direct = artifact.compile().rewards(obs, np.zeros((5, 1)), obs)
    np.testing.assert_array_equal(np.isnan(result.rewards), np.isnan(direct))
    finite = ~np.isnan(direct)
    np.testing.assert_array_equal(result.rewards[finite].view(np.uint64),
                                  direct[finite].view(np.uint64))
    assert result.non_finite == 2 and not recwarn.list
