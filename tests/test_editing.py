import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from symreward.artifact import RewardArtifact
from symreward.cli import main
from symreward.data import Dataset, save_dataset
from symreward.editing import PatchError, diff, lineage, patch

COMMENTED = """\
# A reward someone wrote by hand.
schema = "symreward/1"
name = "demo"   # inline comment on the name

[features]
x = "obs[0]"     # position
v = "obs[1]"
torque = "act[0]"

# the main term
[[terms]]
name = "stay"
expr = "-x**2"   # keep near zero

[[terms]]
name = "effort"
expr = "-0.001*torque**2"
locked = true
note = "written by a person"
"""

COMMENTS = ("# A reward someone wrote by hand.", "# inline comment on the name", "# position",
            "# the main term", "# keep near zero")


def write(tmp_path, text=COMMENTED, name="r.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def write_data(tmp_path, n=200, pairs=40):
    rng = np.random.default_rng(3)
    obs = rng.normal(size=(n, 2))
    ends = np.zeros(n, bool)
    ends[19::20] = True
    starts = rng.integers(0, 15, size=(pairs, 2)) + 20 * rng.integers(0, n // 20, size=(pairs, 2))
    dataset = Dataset.from_arrays({
        "observations": obs, "actions": rng.normal(size=(n, 1)),
        "next_observations": obs + 0.1 * rng.normal(size=(n, 2)),
        "terminals": np.zeros(n, bool), "timeouts": ends,
        "pref_a": np.column_stack([starts[:, 0], starts[:, 0] + 5]),
        "pref_b": np.column_stack([starts[:, 1], starts[:, 1] + 5]),
        "pref_label": rng.uniform(size=pairs)})
    path = tmp_path / "data.npz"
    save_dataset(dataset, path)
    return path


# ----------------------------------------------------------------------------------- patch


def test_patch_keeps_comments_changes_values_and_records_lineage(tmp_path, capsys):
    path = write(tmp_path)
    before = RewardArtifact.load(path).content_hash()
    code = main(["patch", str(path), "--set", "effort=-0.002*torque**2", "--add", "bonus=(x > 1)",
                 "--note", "stay=keep it near", "--lock", "stay"])
    out = capsys.readouterr().out
    assert code == 0
    text = path.read_text()
    for comment in COMMENTS:
        assert comment in text
    assert 'expr = "-0.002*torque**2"' in text and 'expr = "(x > 1)"' in text
    assert text.index("# the main term") < text.index('name = "stay"') < text.index("effort")
    after = RewardArtifact.load(path)
    assert not after.edited_by_hand
    assert after.provenance["parent"] == before
    [entry] = after.provenance["history"]
    assert entry == {"change": "set effort: -0.001*torque**2 -> -0.002*torque**2; "
                               "add bonus = (x > 1); note stay: '' -> 'keep it near'; lock stay",
                     "parent": before}
    assert after.terms[0].locked and after.terms[0].note == "keep it near"
    assert "effort: coefficient -0.001 -> -0.002" in out
    assert "+ bonus = (x > 1)" in out and "stay: locked" in out
    assert "'effort' is locked" in out  # a person may edit a locked term, and is told


def test_patch_to_output_leaves_input_alone_and_chains_history(tmp_path, capsys):
    path = write(tmp_path)
    original = path.read_text()
    out = tmp_path / "v2.toml"
    assert main(["patch", str(path), "--drop", "stay", "-o", str(out)]) == 0
    assert path.read_text() == original
    assert main(["patch", str(out), "--unlock", "effort"]) == 0
    v2 = RewardArtifact.load(out)
    assert v2.term_names == ["effort"] and not v2.terms[0].locked
    changes = [e["change"] for e in v2.provenance["history"]]
    assert changes == ["drop stay (-x**2)", "unlock effort"]
    first, second = v2.provenance["history"]
    assert first["parent"] == RewardArtifact.load(path).content_hash()
    assert second["parent"] != first["parent"] and v2.provenance["parent"] == second["parent"]
    assert "# A reward someone wrote by hand." in out.read_text()


def test_patch_library_api_is_plain_data_and_does_not_touch_input():
    artifact = RewardArtifact.loads(COMMENTED)
    result = patch(artifact, [("set", "stay", "-2*x**2"), ("lock", "effort", None)])
    assert artifact.terms[0].expr == "-x**2"
    assert result.artifact.terms[0].expr == "-2*x**2" and result.changed
    assert result.changes == ["set stay: -x**2 -> -2*x**2"]
    assert any("already locked" in n for n in result.notices)
    assert [c.name for c in result.diff.changed] == ["stay"]
    unchanged = patch(artifact, [("lock", "effort", None)])
    assert not unchanged.changed and "history" not in unchanged.artifact.provenance


def test_hand_edit_is_recorded_on_the_next_save(tmp_path, capsys):
    path = write(tmp_path)
    RewardArtifact.load(path).save(path)
    recorded = RewardArtifact.load(path).content_hash()
    path.write_text(path.read_text().replace('"-x**2"', '"-3*x**2"'))
    edited = RewardArtifact.load(path)
    hand = edited.content_hash()
    assert main(["log", str(path)]) == 0
    assert "edited by hand since last save" in capsys.readouterr().out
    # any save records it (not only patch) ...
    plain = tmp_path / "plain.toml"
    RewardArtifact.load(path).save(plain)
    saved = RewardArtifact.load(plain)
    assert saved.provenance["history"] == [{"change": "edited by hand", "parent": recorded}]
    assert saved.provenance["parent"] == recorded and not saved.edited_by_hand
    # ... and patch records it before its own change
    assert main(["patch", str(path), "--set", "stay=-4*x**2"]) == 0
    history = RewardArtifact.load(path).provenance["history"]
    assert history == [{"change": "edited by hand", "parent": recorded},
                       {"change": "set stay: -3*x**2 -> -4*x**2", "parent": hand}]
    assert "# keep near zero" in path.read_text()


@pytest.mark.parametrize(("args", "message"), [
    (["--set", "nope=-x"], "--set nope=-x: no term named 'nope' (terms: stay, effort)"),
    (["--drop", "nope"], "--drop nope: no term named 'nope'"),
    (["--lock", "nope"], "--lock nope: no term named 'nope'"),
    (["--unlock", "nope"], "--unlock nope: no term named 'nope'"),
    (["--note", "nope=hi"], "--note nope=hi: no term named 'nope'"),
    (["--add", "stay=-x"], "a term named 'stay' already exists"),
    (["--add", "sqrt=-x"], "term name 'sqrt' must be an identifier"),
    (["--set", "stay=-x**2 + y"], "formula '-x**2 + y'"),
    (["--set", "stay=__import__('os')"], "(token"),
    (["--add", "new=x ^ 2"], "column"),
    (["--set", "stay"], "--set 'stay': malformed, expected NAME=EXPR"),
    (["--add", "=x"], "malformed, expected NAME=EXPR"),
    (["--note", "stay"], "malformed, expected NAME=TEXT"),
    ([], "nothing to patch"),
    (["--set", "stay=-2*x**2", "--drop", "stay", "--drop", "effort"], "cannot drop the only term"),
])
def test_patch_errors_exit_2_with_a_clear_message_and_leave_the_file(tmp_path, capsys, args,
                                                                     message):
    path = write(tmp_path)
    assert main(["patch", str(path), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and str(path) in err and "Traceback" not in err
    assert path.read_text() == COMMENTED


def test_patch_formula_error_shows_token_and_column(tmp_path, capsys):
    path = write(tmp_path)
    assert main(["patch", str(path), "--set", "stay=-x**2 + y"]) == 2
    err = capsys.readouterr().err
    assert "'y'" in err and "column" in err


def test_library_patch_errors():
    artifact = RewardArtifact.loads(COMMENTED)
    with pytest.raises(PatchError, match="unknown patch operation 'rename'"):
        patch(artifact, [("rename", "stay", "keep")])
    with pytest.raises(PatchError, match="needs a value"):
        patch(artifact, [("set", "stay", None)])


# ------------------------------------------------------------------------------------ diff


def variant(tmp_path, name, stay="-x**2", extra="", effort="-0.001*torque**2"):
    text = COMMENTED.replace('"-x**2"', f'"{stay}"').replace('"-0.001*torque**2"',
                                                             f'"{effort}"')
    return write(tmp_path, text + extra, name)


def test_diff_reports_changed_added_removed_and_the_symbolic_difference(tmp_path, capsys):
    a = variant(tmp_path, "a.toml")
    b = variant(tmp_path, "b.toml", stay="-2*x**2",
                extra='\n[[terms]]\nname = "bonus"\nexpr = "(x > 1)"\n')
    assert main(["diff", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "~ stay: coefficient -1 -> -2" in out
    assert "+ bonus = (x > 1)" in out
    assert "difference (B - A, over features)" in out
    assert "  -x**2 + (x > 1)\n" in out
    assert main(["diff", str(b), str(a)]) == 0
    out = capsys.readouterr().out
    assert "- bonus = (x > 1)" in out and "x**2 - (x > 1)" in out


def test_diff_simple_difference_and_expression_change():
    a = RewardArtifact.loads(COMMENTED)
    b = RewardArtifact.loads(COMMENTED.replace('"-x**2"', '"-2*x**2"'))
    result = diff(a, b)
    assert result.difference == "-x**2" and result.scale is None
    assert result.changed[0].details == ["coefficient -1 -> -2"]
    c = RewardArtifact.loads(COMMENTED.replace('"-x**2"', '"-abs(x)"'))
    assert diff(a, c).changed[0].details == ["expr -x**2 -> -abs(x)"]
    d = RewardArtifact.loads(COMMENTED.replace('"-0.001*torque**2"', '"-0.007*torque**2"'))
    assert diff(a, d).difference == "-0.006*torque**2"


def reward_of(*terms: str) -> RewardArtifact:
    text = 'schema = "symreward/1"\n[features]\nx = "obs[0]"\ny = "obs[1]"\n'
    for k, expr in enumerate(terms):
        text += f'[[terms]]\nname = "t{k}"\nexpr = "{expr}"\n'
    return RewardArtifact.loads(text)


@given(st.lists(st.sampled_from([0.25, -1.5, 2.0, 1e-3, 7.0]), min_size=3, max_size=3),
       st.sampled_from([0.5, 3.0, -2.0, 1e3]))
@settings(max_examples=25, deadline=None)
def test_diff_finds_a_common_rescaling_of_every_weight(weights, scale):
    shapes = ["tanh(x)", "exp(-y**2)", "max(0, x - 1)*y"]
    a = reward_of(*(f"{w}*{shape}" for w, shape in zip(weights, shapes, strict=True)))
    b = reward_of(*(f"{w * scale!r}*{shape}" for w, shape in zip(weights, shapes, strict=True)))
    assert diff(a, b).scale == pytest.approx(scale, rel=1e-9)
    one_weight = reward_of(*(f"{w * (scale if k == 0 else 1)!r}*{shape}"
                             for k, (w, shape) in enumerate(zip(weights, shapes, strict=True))))
    assert diff(a, one_weight).scale is None


def test_diff_cancels_a_term_written_another_way():
    a, b = reward_of("x*(y + 1)", "-x"), reward_of("x*y")
    assert diff(a, b).difference == "0"
    assert diff(reward_of("x*(y + 2)"), b).difference == "-2*x"


def test_diff_notices_a_renamed_term(tmp_path, capsys):
    a = variant(tmp_path, "a.toml")
    b = write(tmp_path, COMMENTED.replace('name = "stay"', 'name = "centre"')
              .replace('"-x**2"', '"-1.0 * x**2"'), "b.toml")
    assert main(["diff", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "renamed stay -> centre (same expression" in out
    assert "+ centre" not in out and "- stay" not in out
    assert "  0\n" in out and "same formula" in out


def test_diff_with_different_features_compares_raw_inputs(tmp_path):
    a = RewardArtifact.loads(COMMENTED)
    b = RewardArtifact.loads(COMMENTED.replace('x = "obs[0]"', 'pos = "obs[0]"')
                             .replace('"-x**2"', '"-pos**2"'))
    result = diff(a, b)
    assert result.features_added == {"pos": "obs[0]"} and result.features_removed == {"x":
                                                                                      "obs[0]"}
    assert result.difference_over == "raw inputs" and result.difference == "0"
    assert result.renamed == [] and [c.name for c in result.changed] == ["stay"]
    c = RewardArtifact.loads(COMMENTED.replace('x = "obs[0]"', 'x = "2*obs[0]"'))
    changed = diff(a, c)
    assert changed.features_changed == {"x": ("obs[0]", "2*obs[0]")}
    assert changed.difference == "-3*obs[0]**2" and not changed.changed


def test_diff_with_data_epic_agreement_and_gating(tmp_path, capsys):
    data = write_data(tmp_path)
    a = variant(tmp_path, "a.toml")
    scaled = variant(tmp_path, "b.toml", stay="-3*x**2", effort="-0.003*torque**2")
    assert main(["diff", str(a), str(scaled), "--data", str(data), "--max-epic", "0.01"]) == 0
    out = capsys.readouterr().out
    assert "EPIC distance 0.0000" in out
    assert "preference agreement 1.000 over 40 pairs" in out
    assert "B = 3 * A, a positive rescaling" in out
    assert "is within --max-epic 0.01" in out

    other = variant(tmp_path, "c.toml", stay="x**2 + v")
    assert main(["diff", str(a), str(other), "--data", str(data), "--max-epic", "0.01",
                 "--json"]) == 1
    payload = json.loads(capsys.readouterr().out)
    assert payload["epic"] > 0.01 and payload["exceeded"] is True
    assert 0 <= payload["agreement"] < 1 and payload["pairs"] == 40


def test_diff_max_epic_needs_data(tmp_path, capsys):
    a = variant(tmp_path, "a.toml")
    assert main(["diff", str(a), str(a), "--max-epic", "0.1"]) == 2
    assert "--max-epic needs --data" in capsys.readouterr().err


def test_diff_bad_input_exit_2(tmp_path, capsys):
    a = variant(tmp_path, "a.toml")
    assert main(["diff", str(a), str(tmp_path / "missing.toml")]) == 2
    assert "missing.toml: no such file" in capsys.readouterr().err


# ------------------------------------------------------------------------------------- log


def test_log_lists_entries_newest_first(tmp_path, capsys):
    path = write(tmp_path)
    assert main(["patch", str(path), "--set", "stay=-2*x**2"]) == 0
    assert main(["patch", str(path), "--drop", "effort"]) == 0
    capsys.readouterr()
    assert main(["log", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.index("drop effort") < out.index("set stay: -x**2 -> -2*x**2")
    artifact = RewardArtifact.load(path)
    assert f"hash: {artifact.content_hash()}" in out
    assert f"parent: {artifact.provenance['parent']}" in out
    entries = lineage(artifact)
    assert [e.change for e in entries] == ["drop effort (-0.001*torque**2)",
                                           "set stay: -x**2 -> -2*x**2"]
    assert entries[0].hash == artifact.content_hash() and entries[1].hash == entries[0].parent


def test_log_shows_learned_from_and_keeps_the_learning_parent():
    text = COMMENTED + """
[provenance]
objective = "preferences"
engine = "sparse"
seed = 3
parent = "sha256:base"
data = { source = "d.npz", sha256 = "abc123", transitions = 100 }
"""
    artifact = RewardArtifact.loads(text)
    assert [e.change for e in lineage(artifact)] == ["learned (preferences)"]
    result = patch(artifact, [("set", "stay", "-2*x**2")])
    history = result.artifact.provenance["history"]
    assert history[0] == {"change": "learned (preferences)", "parent": "sha256:base"}
    from symreward.editing import render_lineage
    out = render_lineage(result.artifact)
    assert "objective: preferences" in out and "engine: sparse" in out and "seed: 3" in out
    assert "data sha256: abc123" in out


def test_end_to_end_in_a_new_process(tmp_path, cli):
    path = write(tmp_path)
    run = cli("patch", path, "--set", "effort=-0.01*torque**2")
    assert run.returncode == 0, run.stderr
    assert "coefficient -0.001 -> -0.01" in run.stdout
    run = cli("patch", path, "--set", "effort=import os")
    assert run.returncode == 2 and "Traceback" not in run.stderr
    assert "--set effort=import os" in run.stderr
