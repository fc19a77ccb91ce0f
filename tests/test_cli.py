import json
from pathlib import Path

import numpy as np
import pytest
from support import run_cli

from symreward.cli import main
from symreward.data import Dataset, save_dataset

EXAMPLE = Path(__file__).parent.parent / "examples" / "pendulum" / "reward.toml"

ARTIFACT = """\
schema = "symreward/1"
name = "t"

[features]
x = "obs[0]"
a = "act[0]"

[[terms]]
name = "main"
expr = "{expr}"
"""


def write_artifact(tmp_path, expr="-x**2", name="r.toml"):
    path = tmp_path / name
    path.write_text(ARTIFACT.format(expr=expr))
    return path


def write_data(tmp_path, obs_dim=2, n=20):
    rng = np.random.default_rng(1)
    obs = rng.normal(size=(n, obs_dim))
    dataset = Dataset(observations=obs, actions=rng.normal(size=(n, 1)),
                      next_observations=obs + 0.1, terminals=np.zeros(n, bool),
                      timeouts=np.arange(n) == n - 1)
    path = tmp_path / "data.npz"
    save_dataset(dataset, path)
    return path, dataset


def test_show_prints_formula_terms_features(capsys):
    assert main(["show", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "reward = -theta**2 - 0.001*min(2, max(-2, torque))**2 - 0.1*theta_dot**2" in out
    assert "upright" in out and "atan2(obs[1], obs[0])" in out and "yes" in out


def test_show_json(capsys):
    assert main(["show", str(EXAMPLE), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["name"] == "pendulum-v1-true"
    assert payload["features"]["theta"] == "atan2(obs[1], obs[0])"
    assert payload["terms"][2] == {"name": "effort", "expr": "-0.001*clip(torque, -2, 2)**2",
                                   "locked": True,
                                   "note": "written by hand from the environment's source"}
    assert payload["formula"].startswith("-theta**2")


def test_show_notices_hand_edits(tmp_path, capsys):
    path = write_artifact(tmp_path)
    from symreward.artifact import RewardArtifact
    RewardArtifact.load(path).save(path)
    path.write_text(path.read_text().replace("-x**2", "-2*x**2"))
    assert main(["show", str(path)]) == 0
    assert "edited by hand since last save" in capsys.readouterr().out


def test_eval_writes_rewards_and_reports_stats(tmp_path):
    artifact = write_artifact(tmp_path)
    data, dataset = write_data(tmp_path)
    out = tmp_path / "r.npy"
    result = run_cli("eval", artifact, data, "-o", out)
    assert result.returncode == 0, result.stderr
    rewards = np.load(out)
    assert rewards.dtype == np.float64
    np.testing.assert_allclose(rewards, -dataset.observations[:, 0] ** 2, rtol=1e-12)
    assert "20 rewards" in result.stdout and "non-finite: 0" in result.stdout
    assert f"mean {rewards.mean():.6g}" in result.stdout


def test_eval_counts_non_finite_rewards(tmp_path, capsys):
    artifact = write_artifact(tmp_path, expr="log(x)")
    data, dataset = write_data(tmp_path)
    out = tmp_path / "r.npy"
    assert main(["eval", str(artifact), str(data), "-o", str(out)]) == 0
    rewards = np.load(out)
    negative = int((dataset.observations[:, 0] < 0).sum())
    assert negative > 0 and int(np.isnan(rewards).sum()) == negative
    assert f"non-finite: {negative}" in capsys.readouterr().out


@pytest.mark.parametrize("expr", [
    "__import__('os').system('touch PWNED')",
    "x.__class__",
    "(lambda: 0)()",
    "x**99",
    "9**9**9**9",
])
def test_code_in_a_term_gets_exit_2_and_runs_nothing(tmp_path, expr):
    artifact = write_artifact(tmp_path, expr=expr.replace('"', "'"))
    data, _ = write_data(tmp_path)
    result = run_cli("eval", artifact, data, "-o", "r.npy", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2
    assert str(artifact) in result.stderr
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "r.npy").exists()


def test_code_in_a_feature_gets_exit_2(tmp_path):
    path = tmp_path / "f.toml"
    path.write_text(ARTIFACT.format(expr="-x").replace('"obs[0]"', '"__import__(\'os\')"'))
    result = run_cli("show", path)
    assert result.returncode == 2
    assert "features.x" in result.stderr and "Traceback" not in result.stderr


def test_bad_input_is_one_line_without_traceback_unless_debug(tmp_path):
    result = run_cli("show", tmp_path / "missing.toml")
    assert result.returncode == 2
    missing = tmp_path / "missing.toml"
    assert result.stderr.strip() == f"symreward show: error: {missing}: no such file"
    debug = run_cli("show", tmp_path / "missing.toml", "--debug")
    assert debug.returncode == 2 and "Traceback" in debug.stderr


def test_eval_names_the_feature_that_does_not_fit_the_data(tmp_path):
    artifact = tmp_path / "wide.toml"
    artifact.write_text(ARTIFACT.format(expr="-x").replace('"obs[0]"', '"obs[5]"'))
    data, _ = write_data(tmp_path)
    result = run_cli("eval", artifact, data, "-o", tmp_path / "r.npy")
    assert result.returncode == 2
    assert "feature 'x' reads obs[5]" in result.stderr and "data.npz" in result.stderr


def test_eval_reports_bad_data(tmp_path):
    artifact = write_artifact(tmp_path)
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"not a zip file")
    result = run_cli("eval", artifact, broken, "-o", tmp_path / "r.npy")
    assert result.returncode == 2 and "broken.npz" in result.stderr
    assert "Traceback" not in result.stderr


def preference_data(tmp_path, n=2000, seed=0):
    from symreward.data import bradley_terry_preferences

    rng = np.random.default_rng(seed)
    obs = np.cumsum(rng.normal(scale=0.3, size=(n, 2)), axis=0) % 4 - 2
    dataset = Dataset(observations=obs, actions=rng.normal(size=(n, 1)),
                      next_observations=obs, terminals=np.zeros(n, bool),
                      timeouts=np.arange(n) % 50 == 49)
    truth = -obs[:, 0] ** 2 - 0.5 * obs[:, 1]
    dataset = dataset.replace(
        preferences=bradley_terry_preferences(dataset, truth, 400, 10, seed=seed))
    path = tmp_path / "prefs.npz"
    save_dataset(dataset, path)
    features = tmp_path / "features.toml"
    features.write_text('[features]\nx = "obs[0]"\ny = "obs[1]"\na = "act[0]"\n')
    return path, features


def test_learn_prints_the_front_and_writes_the_artifact(tmp_path):
    data, features = preference_data(tmp_path)
    out = tmp_path / "reward.toml"
    result = run_cli("learn", data, "--features", features, "--seed", "3", "-o", out)
    assert result.returncode == 0, result.stderr
    assert "Pareto front" in result.stdout and "complexity" in result.stdout
    chosen = [line for line in result.stdout.splitlines() if line.lstrip().startswith("*")]
    assert len(chosen) == 1
    assert "library:" in result.stderr  # progress goes to stderr
    from symreward.artifact import RewardArtifact

    artifact = RewardArtifact.load(out)
    assert {t.expr.split("*", 1)[1] for t in artifact.terms} == {"x**2", "y"}
    provenance = artifact.provenance
    assert provenance["objective"] == "preferences" and provenance["seed"] == 3
    assert provenance["data"]["sha256"].startswith("sha256:")
    assert set(provenance["feature_ranges"]) == {"x", "y", "a"}
    assert any(entry.get("chosen") for entry in provenance["front"])
    again = tmp_path / "again.toml"
    assert run_cli("learn", data, "--features", features, "--seed", "3", "-o",
                   again).returncode == 0
    assert again.read_bytes() == out.read_bytes()


def test_learn_from_reuses_features_and_records_parent(tmp_path):
    data, features = preference_data(tmp_path)
    first = tmp_path / "first.toml"
    assert run_cli("learn", data, "--features", features, "-o", first).returncode == 0
    text = first.read_text()
    first.write_text(text.replace('name = "x_pow2"', 'name = "x_pow2"\nlocked = true', 1))
    second = tmp_path / "second.toml"
    result = run_cli("learn", data, "--from", first, "-o", second)
    assert result.returncode == 0, result.stderr
    from symreward.artifact import RewardArtifact

    parent = RewardArtifact.load(first)
    child = RewardArtifact.load(second)
    assert child.provenance["parent"] == parent.content_hash()
    locked = [t for t in parent.terms if t.locked]
    assert [t.name for t in locked] == ["x_pow2"]
    assert child.terms[0] == locked[0]


@pytest.mark.parametrize("problem, message", [
    ("no-prefs", "no preferences (keys pref_a, pref_b, pref_label) for --objective preferences"),
    ("equal-labels", "every label is 1"),
    ("wide-features", "feature 'w' reads obs[7]"),
    ("nan-feature", "feature 'l' = 'log(obs[0])' is nan at row"),
    ("one-shared-segment", "too little data to cross-validate: 40 pairs over"),
])
def test_learn_bad_input_exit_2(tmp_path, problem, message):
    data, features = preference_data(tmp_path)
    if problem in ("no-prefs", "equal-labels", "one-shared-segment"):
        from symreward.data import Preferences, load_dataset

        dataset = load_dataset(data)
        if problem == "no-prefs":
            dataset = dataset.replace(preferences=None)
        elif problem == "one-shared-segment":  # every pair compares a clip with one reference
            prefs = dataset.preferences
            reference = np.repeat(prefs.a[:1], 40, axis=0)
            dataset = dataset.replace(preferences=Preferences(
                reference, prefs.b[:40], prefs.label[:40]))
        else:
            prefs = dataset.preferences
            dataset = dataset.replace(preferences=Preferences(prefs.a, prefs.b,
                                                              np.ones(len(prefs))))
        save_dataset(dataset, data)
    elif problem == "wide-features":
        features.write_text('[features]\nx = "obs[0]"\nw = "obs[7]"\n')
    else:
        features.write_text('[features]\nx = "obs[0]"\nl = "log(obs[0])"\n')
    result = run_cli("learn", data, "--features", features, "-o", tmp_path / "r.toml")
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "r.toml").exists()


def test_demo_runs_end_to_end(tmp_path):
    result = run_cli("demo", "-o", tmp_path / "demo")
    assert result.returncode == 0, result.stderr
    assert "true reward    = -theta**2" in result.stdout
    epic = float(result.stdout.split("EPIC distance to the true reward ")[1].split(",")[0])
    assert epic <= 0.05
    assert (tmp_path / "demo" / "reward.toml").exists()
    assert np.load(tmp_path / "demo" / "rewards.npy").shape == (12000,)


def test_check_help_lists_the_rules_of_the_registry(capsys):
    from symreward.invariants.rules import RULES

    with pytest.raises(SystemExit) as stop:
        main(["check", "--help"])
    assert stop.value.code == 0
    listed = capsys.readouterr().out.split("rule = NAME):\n")[1].splitlines()
    assert [line.split()[0] for line in listed] == list(RULES)
    assert "bounded [lo] [hi]: lo <= reward <= hi everywhere" in listed[0]
